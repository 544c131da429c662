//! Router and engine-loop tests with a scripted engine (no model): error mapping of every
//! layer (404/405/401/413/503/400 JSON), a whole completion, and abort-on-drop.

use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::engine::{self, EngineCore, EngineRequest, EngineStats, Finish, RequestUpdate, SeqDelta};
use super::error::ApiError;
use super::metrics::Metrics;
use super::params::GenDefaults;
use super::state::{AppState, ModelInfo, ServerConfig};

/// Generates token `7` once per step until `max_tokens`; records aborts.
#[derive(Default)]
struct Scripted {
    running: Vec<(EngineRequest, usize)>,
    aborted: Arc<Mutex<Vec<String>>>,
}

impl EngineCore for Scripted {
    fn add_request(&mut self, req: EngineRequest) -> Result<(), ApiError> {
        self.running.push((req, 0));
        Ok(())
    }
    fn step(&mut self) -> Result<Vec<RequestUpdate>, String> {
        let mut out = Vec::new();
        for (req, done) in &mut self.running {
            *done += 1;
            let finished = *done >= req.max_tokens;
            let deltas = (0..req.params.n)
                .map(|index| SeqDelta {
                    index,
                    token_ids: vec![7],
                    text: "x".into(),
                    logprobs: Vec::new(),
                    finish_reason: finished.then_some(Finish::Length),
                    stop_reason: None,
                })
                .collect();
            out.push(RequestUpdate { request_id: req.request_id.clone(), deltas, finished });
        }
        self.running.retain(|(r, d)| *d < r.max_tokens);
        std::thread::sleep(std::time::Duration::from_millis(2));
        Ok(out)
    }
    fn abort(&mut self, id: &str) {
        self.aborted.lock().unwrap().push(id.to_string());
        self.running.retain(|(r, _)| r.request_id != id);
    }
    fn has_unfinished(&self) -> bool {
        !self.running.is_empty()
    }
    fn stats(&self) -> EngineStats {
        EngineStats { num_running: self.running.len(), ..Default::default() }
    }
}

fn info() -> ModelInfo {
    ModelInfo {
        names: vec!["m".into()],
        root: "/m".into(),
        created: 0,
        max_model_len: 64,
        vocab_size: 100,
        tokenizer: None,
        chat_template: None,
        bos_token: None,
        eos_token: None,
        defaults: GenDefaults::default(),
    }
}

fn app(ready: bool, api_key: Option<&str>) -> (axum::Router, Arc<Mutex<Vec<String>>>) {
    let aborted = Arc::new(Mutex::new(Vec::new()));
    let core = Scripted { aborted: aborted.clone(), ..Default::default() };
    let slot = Arc::new(OnceLock::new());
    if ready {
        let _ = slot.set(Arc::new(info()));
    }
    let (client, _join) = engine::spawn(move || Ok((core, ())), Arc::new(Metrics::default()), |_| {}, |_| {}).unwrap();
    let config = ServerConfig { max_body_bytes: 1024, api_key: api_key.map(str::to_string), allowed_origins: vec!["*".into()] };
    let state = AppState::new(config, slot, client, Arc::new(Metrics::default()));
    (super::router(state), aborted)
}

async fn call(app: &axum::Router, method: &str, path: &str, body: &str, auth: Option<&str>) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder().method(method).uri(path).header("content-type", "application/json");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = app.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

fn assert_error(got: (StatusCode, serde_json::Value), status: u16, etype: &str) {
    assert_eq!(got.0.as_u16(), status, "{}", got.1);
    assert_eq!(got.1["error"]["type"], etype, "{}", got.1);
    assert_eq!(got.1["error"]["code"], status);
    assert!(got.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn every_layer_answers_openai_json() {
    let (a, _) = app(true, None);
    let ok = r#"{"prompt": [1, 2], "max_tokens": 3}"#;
    assert_error(call(&a, "GET", "/nope", "", None).await, 404, "NotFoundError");
    assert_error(call(&a, "GET", "/v1/completions", "", None).await, 405, "MethodNotAllowedError");
    assert_error(call(&a, "POST", "/v1/completions", "{", None).await, 400, "BadRequestError");
    assert_error(call(&a, "POST", "/v1/completions", &"x".repeat(2000), None).await, 413, "PayloadTooLargeError");
    assert_error(call(&a, "POST", "/v1/completions", r#"{"prompt": [1], "model": "z"}"#, None).await, 404, "NotFoundError");
    assert_error(call(&a, "POST", "/v1/completions", r#"{"prompt": [1], "max_tokens": 64}"#, None).await, 400, "BadRequestError");
    assert_error(call(&a, "POST", "/v1/completions", r#"{"prompt": "text"}"#, None).await, 400, "BadRequestError");
    let (status, body) = call(&a, "POST", "/v1/completions", ok, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["usage"], serde_json::json!({"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}));
    assert_eq!(body["choices"][0]["text"], "xxx");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn api_key_and_loading() {
    let (a, _) = app(true, Some("k"));
    let body = r#"{"prompt": [1], "max_tokens": 1}"#;
    assert_error(call(&a, "POST", "/v1/completions", body, None).await, 401, "AuthenticationError");
    assert_error(call(&a, "POST", "/v1/completions", body, Some("Bearer x")).await, 401, "AuthenticationError");
    assert_eq!(call(&a, "POST", "/v1/completions", body, Some("Bearer k")).await.0, StatusCode::OK);
    assert_eq!(call(&a, "GET", "/health", "", None).await.0, StatusCode::OK);
    let (loading, _) = app(false, None);
    assert_error(call(&loading, "GET", "/health", "", None).await, 503, "ServiceUnavailableError");
    assert_error(call(&loading, "POST", "/v1/completions", body, None).await, 503, "ServiceUnavailableError");
    assert_error(call(&loading, "GET", "/v1/models", "", None).await, 503, "ServiceUnavailableError");
}

#[tokio::test]
async fn dropping_a_stream_aborts_its_request() {
    let (a, aborted) = app(true, None);
    let req = Request::post("/v1/completions")
        .body(Body::from(r#"{"prompt": [1], "max_tokens": 60, "stream": true}"#))
        .unwrap();
    let resp = a.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.data_ref().is_some_and(|d| d.starts_with(b"data: {")));
    drop(body);
    for _ in 0..200 {
        if !aborted.lock().unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("the request was not aborted after its stream was dropped");
}
