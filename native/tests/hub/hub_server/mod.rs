//! A loopback HTTP/1.1 server speaking the slice of the Hugging Face hub protocol that model
//! downloads use, for `tests/hub.rs`. Nothing here ever talks to the real hub.
//!
//! ```text
//! HEAD|GET /{owner}/{name}/resolve/{revision}/{file}
//!   small file -> 200/206  x-repo-commit, etag: "<hash>", content-length[, content-range]
//!   LFS file   -> 302      x-repo-commit, x-linked-etag, x-linked-size, location: /cdn/...
//!   missing    -> 404      x-error-code: EntryNotFound (RepoNotFound / RevisionNotFound)
//!   no token   -> 401      x-error-code: GatedRepo (gated) or RepoNotFound (private)
//!   bad token  -> 401      (no error code, like the hub's "Invalid credentials")
//!   renamed    -> 307      location: /{new owner}/{new name}/resolve/... (relative)
//! GET /cdn/{repo}/{file}   the "CDN": content with Range support, no hub headers
//! ```
//! Every request is logged (method, path, headers) so tests can count what was asked.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct FakeFile {
    pub content: Vec<u8>,
    /// Served as the hub serves LFS/Xet files: a 302 to the CDN.
    pub lfs: bool,
}

#[derive(Clone, Default)]
pub struct FakeRepo {
    /// 40 lowercase hex digits; `main` points at it.
    pub commit: String,
    pub files: HashMap<String, FakeFile>,
    /// Required bearer token (private or gated repo).
    pub token: Option<String>,
    pub gated: bool,
}

impl FakeRepo {
    pub fn new(commit_seed: u8) -> Self {
        Self {
            commit: format!("{:02x}", commit_seed).repeat(20),
            ..Self::default()
        }
    }

    pub fn file(mut self, name: &str, content: impl Into<Vec<u8>>) -> Self {
        self.files.insert(
            name.to_string(),
            FakeFile {
                content: content.into(),
                lfs: false,
            },
        );
        self
    }

    pub fn lfs_file(mut self, name: &str, content: impl Into<Vec<u8>>) -> Self {
        self.files.insert(
            name.to_string(),
            FakeFile {
                content: content.into(),
                lfs: true,
            },
        );
        self
    }
}

#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    repos: HashMap<String, FakeRepo>,
    /// Renamed repos: old id -> new id.
    renamed: HashMap<String, String>,
    log: Vec<Request>,
}

pub struct HubServer {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl HubServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &state);
                });
            }
        });
        Self { port, state }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn add_repo(&self, id: &str, repo: FakeRepo) {
        self.state
            .lock()
            .unwrap()
            .repos
            .insert(id.to_string(), repo);
    }

    pub fn rename(&self, old: &str, new: &str) {
        self.state
            .lock()
            .unwrap()
            .renamed
            .insert(old.to_string(), new.to_string());
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn clear_requests(&self) {
        self.state.lock().unwrap().log.clear();
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let request = Request {
        method,
        path,
        headers,
    };
    let response = {
        let mut state = state.lock().unwrap();
        state.log.push(request.clone());
        route(&request, &state)
    };
    response.write(stream, request.method == "HEAD")
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }

    fn error(status: u16, code: Option<&str>, message: &str) -> Self {
        let mut r = Self::new(status).header("x-error-message", message);
        if let Some(code) = code {
            r = r.header("x-error-code", code);
        }
        r.body = format!("{{\"error\":\"{message}\"}}").into_bytes();
        r.header("content-type", "application/json")
    }

    fn write(self, mut stream: TcpStream, head: bool) -> std::io::Result<()> {
        let reason = match self.status {
            200 => "OK",
            206 => "Partial Content",
            302 => "Found",
            307 => "Temporary Redirect",
            401 => "Unauthorized",
            404 => "Not Found",
            416 => "Range Not Satisfiable",
            _ => "Other",
        };
        let mut out = format!("HTTP/1.1 {} {reason}\r\n", self.status);
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            self.body.len()
        ));
        stream.write_all(out.as_bytes())?;
        if !head {
            stream.write_all(&self.body)?;
        }
        stream.flush()
    }
}

/// A stable content hash standing in for the hub's git/LFS sha (FNV-1a, 64 bit, twice).
pub fn etag_of(content: &[u8]) -> String {
    let fnv = |seed: u64| {
        content
            .iter()
            .fold(seed, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3))
    };
    format!(
        "{:016x}{:016x}{:08x}",
        fnv(0xcbf29ce484222325),
        fnv(0x84222325cbf29ce4),
        content.len()
    )
}

fn route(req: &Request, state: &State) -> Response {
    if let Some(rest) = req.path.strip_prefix("/cdn/") {
        // /cdn/{owner}/{name}/{file...}
        let mut it = rest.splitn(3, '/');
        let (owner, name, file) = (
            it.next().unwrap_or(""),
            it.next().unwrap_or(""),
            it.next().unwrap_or(""),
        );
        return match state
            .repos
            .get(&format!("{owner}/{name}"))
            .and_then(|r| r.files.get(file))
        {
            Some(f) => content(req, &f.content),
            None => Response::error(404, None, "no such object"),
        };
    }
    // /{owner}/{name}/resolve/{revision}/{file...}
    let mut it = req.path.trim_start_matches('/').splitn(5, '/');
    let (owner, name, resolve, revision, file) = (
        it.next().unwrap_or(""),
        it.next().unwrap_or(""),
        it.next(),
        it.next().unwrap_or(""),
        it.next().unwrap_or(""),
    );
    if resolve != Some("resolve") {
        return Response::error(404, None, "not a resolve url");
    }
    let id = format!("{owner}/{name}");
    if let Some(new) = state.renamed.get(&id) {
        return Response::new(307).header("location", format!("/{new}/resolve/{revision}/{file}"));
    }
    let auth = req.header("authorization");
    let Some(repo) = state.repos.get(&id) else {
        // The hub answers 401 without a token, so as not to reveal private repos.
        let status = if auth.is_some() { 404 } else { 401 };
        return Response::error(status, Some("RepoNotFound"), "Repository not found");
    };
    if let Some(token) = &repo.token {
        match auth {
            None if repo.gated => {
                return Response::error(
                    401,
                    Some("GatedRepo"),
                    "Access to this model is restricted.",
                )
            }
            None => return Response::error(401, Some("RepoNotFound"), "Repository not found"),
            Some(a) if a != format!("Bearer {token}") => {
                return Response::error(401, None, "Invalid credentials in Authorization header")
            }
            Some(_) => {}
        }
    }
    if revision != "main" && revision != repo.commit {
        return Response::error(404, Some("RevisionNotFound"), "Invalid rev id");
    }
    let Some(f) = repo.files.get(file) else {
        return Response::error(404, Some("EntryNotFound"), "Entry not found")
            .header("x-repo-commit", &repo.commit);
    };
    let etag = format!("\"{}\"", etag_of(&f.content));
    if f.lfs {
        return Response::new(302)
            .header(
                "location",
                format!(
                    "http://{}/cdn/{id}/{file}",
                    req.header("host").unwrap_or("")
                ),
            )
            .header("x-repo-commit", &repo.commit)
            .header("x-linked-etag", &etag)
            .header("x-linked-size", f.content.len().to_string())
            .header("etag", "\"pointer-file-etag\"");
    }
    content(req, &f.content)
        .header("x-repo-commit", &repo.commit)
        .header("etag", &etag)
}

/// 200 with the body, or 206 for `Range: bytes=a-[b]`.
fn content(req: &Request, body: &[u8]) -> Response {
    let total = body.len();
    let range = req
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| {
            let (a, b) = r.split_once('-')?;
            let a: usize = a.parse().ok()?;
            let b: usize = if b.is_empty() {
                total.saturating_sub(1)
            } else {
                b.parse().ok()?
            };
            Some((a, b.min(total.saturating_sub(1))))
        });
    let mut response = match range {
        None => {
            let mut r = Response::new(200);
            r.body = body.to_vec();
            r
        }
        Some((a, _)) if a >= total => {
            return Response::new(416).header("content-range", format!("bytes */{total}"))
        }
        Some((a, b)) => {
            let mut r =
                Response::new(206).header("content-range", format!("bytes {a}-{b}/{total}"));
            r.body = body[a..=b].to_vec();
            r
        }
    };
    response = response.header("accept-ranges", "bytes");
    response
}
