//! Kernels: the CUDA C++ sources of `kernels/` (embedded in the binary), compiled by NVRTC
//! for the device's own architecture on first use, cached on disk, loaded as modules.
//!
//! ```text
//! source  = kernels/common.cuh + kernels/<module>.cu        (one module per op family)
//! options = --gpu-architecture=sm_XY (read off the device) --std=c++17 -I<cuda include> ...
//! cache   = $TESSERA_KERNEL_CACHE or ~/.cache/tessera/kernels
//!           /<module>-sm_XY-<fnv64(source, options, nvrtc version)>.cubin
//! ```
//! NVRTC emits a CUBIN for the real architecture, so the driver loads it without a JIT step.
//! Headers: `cuda_fp16.h` / `cuda_bf16.h` from `$TESSERA_CUDA_INCLUDE` (colon-separated),
//! `$CUDA_HOME/include`, `$CUDA_PATH/include` or `/usr/local/cuda/include`.

use std::collections::HashMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{result as nres, sys as nsys, Ptx};
use tessera_core::backend::Result;

use super::device::setup_err;

/// The shared header prepended to every module.
pub const COMMON: &str = include_str!("../../../kernels/common.cuh");

/// Every module: (name, source). One per op family; entry points are `<op>_<dtype>`.
pub const SOURCES: &[(&str, &str)] = &[
    ("embedding", include_str!("../../../kernels/embedding.cu")),
    ("rms_norm", include_str!("../../../kernels/rms_norm.cu")),
    ("rope", include_str!("../../../kernels/rope.cu")),
    ("act", include_str!("../../../kernels/act.cu")),
    ("elementwise", include_str!("../../../kernels/elementwise.cu")),
    ("kv_cache", include_str!("../../../kernels/kv_cache.cu")),
    ("attention", include_str!("../../../kernels/attention.cu")),
    ("attention_decode", include_str!("../../../kernels/attention_decode.cu")),
    ("attention_prefill", include_str!("../../../kernels/attention_prefill.cu")),
    ("sampling", include_str!("../../../kernels/sampling.cu")),
    ("gemv", include_str!("../../../kernels/gemv.cu")),
    ("prefetch", include_str!("../../../kernels/prefetch.cu")),
];

/// The full text NVRTC compiles for `module`.
pub fn full_source(module: &str) -> Option<String> {
    let (_, src) = SOURCES.iter().find(|(m, _)| *m == module)?;
    Some(format!("{COMMON}\n#line 1 \"{module}.cu\"\n{src}"))
}

/// Directories searched for `cuda_fp16.h` / `cuda_bf16.h`, in order, that exist.
pub fn include_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(v) = std::env::var("TESSERA_CUDA_INCLUDE") {
        dirs.extend(std::env::split_paths(&v));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Ok(v) = std::env::var(var) {
            dirs.push(Path::new(&v).join("include"));
        }
    }
    dirs.push("/usr/local/cuda/include".into());
    dirs.push("/usr/local/cuda/targets/x86_64-linux/include".into());
    dirs.retain(|d| d.join("cuda_bf16.h").is_file());
    dirs.dedup();
    dirs
}

/// Whether libnvrtc can be loaded (compiling needs no GPU).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library by name.
    unsafe { nsys::is_culib_present() }
}

/// NVRTC's version, e.g. (13, 0).
pub fn nvrtc_version() -> Result<(i32, i32)> {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: plain out-pointers.
    let r = unsafe { nsys::nvrtcVersion(&mut major, &mut minor) };
    if r != nsys::nvrtcResult::NVRTC_SUCCESS {
        return Err(setup_err(format!("nvrtcVersion failed: {r:?}")));
    }
    Ok((major, minor))
}

/// The options used for `arch` (e.g. "sm_90") with headers from `include`.
pub fn options(arch: &str, include: &[PathBuf]) -> Vec<String> {
    let mut o = vec![
        format!("--gpu-architecture={arch}"),
        "--std=c++17".to_string(),
        "--generate-line-info".to_string(),
        "--ptxas-options=-v".to_string(),
    ];
    o.extend(include.iter().map(|d| format!("--include-path={}", d.display())));
    o
}

/// 64-bit FNV-1a: a stable, dependency-free content hash for cache keys.
fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.iter().chain(&[0xffu8]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Compiles `module` for `arch`; returns the CUBIN and NVRTC's log (warnings, and the
/// register/spill report of ptxas). Needs only libnvrtc, no GPU.
pub fn compile_module(module: &str, arch: &str, include: &[PathBuf]) -> Result<(Vec<u8>, String)> {
    let src = full_source(module).ok_or_else(|| setup_err(format!("no kernel module named {module}")))?;
    let opts = options(arch, include);
    let c_src = CString::new(src).map_err(|_| setup_err(format!("{module}.cu contains a NUL byte")))?;
    let c_name = CString::new(format!("{module}.cu")).map_err(|_| setup_err("bad module name"))?;
    let prog = nres::create_program(c_src.as_c_str(), Some(c_name.as_c_str())).map_err(|e| setup_err(format!("NVRTC: creating {module}: {e:?}")))?;
    struct Guard(nsys::nvrtcProgram);
    impl Drop for Guard {
        fn drop(&mut self) {
            // SAFETY: the program was created above and is destroyed once.
            let _ = unsafe { nres::destroy_program(self.0) };
        }
    }
    let guard = Guard(prog);
    // SAFETY: `prog` is a live program; options are plain strings.
    let compiled = unsafe { nres::compile_program(guard.0, &opts) };
    // SAFETY: as above.
    let log = unsafe { nres::get_program_log(guard.0) }
        .map(|raw| {
            let bytes: Vec<u8> = raw.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .unwrap_or_default();
    if let Err(e) = compiled {
        return Err(setup_err(format!(
            "NVRTC failed to compile kernels/{module}.cu for {arch} ({e:?}); options {opts:?}; log:\n{log}"
        )));
    }
    let mut size = 0usize;
    // SAFETY: out-pointer, then a buffer of exactly that size.
    let cubin = unsafe {
        let r = nsys::nvrtcGetCUBINSize(guard.0, &mut size);
        if r != nsys::nvrtcResult::NVRTC_SUCCESS || size == 0 {
            return Err(setup_err(format!("NVRTC: no CUBIN for {module} ({r:?}, {size} bytes)")));
        }
        let mut buf = vec![0u8; size];
        let r = nsys::nvrtcGetCUBIN(guard.0, buf.as_mut_ptr() as *mut std::ffi::c_char);
        if r != nsys::nvrtcResult::NVRTC_SUCCESS {
            return Err(setup_err(format!("NVRTC: reading the CUBIN of {module}: {r:?}")));
        }
        buf
    };
    Ok((cubin, log))
}

/// Where compiled kernels are cached, or `None` when caching is off (`TESSERA_KERNEL_CACHE=off`).
pub fn cache_dir() -> Option<PathBuf> {
    match std::env::var("TESSERA_KERNEL_CACHE") {
        Ok(v) if v == "off" || v == "0" || v.is_empty() => None,
        Ok(v) => Some(PathBuf::from(v)),
        Err(_) => dirs::cache_dir().map(|d| d.join("tessera").join("kernels")),
    }
}

/// Loaded modules and functions of one context, compiled lazily.
pub(crate) struct Kernels {
    ctx: Arc<CudaContext>,
    pub arch: String,
    include: Vec<PathBuf>,
    cache: Option<PathBuf>,
    nvrtc: (i32, i32),
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    /// Seconds spent compiling (cache misses) and loading.
    pub compile_secs: Mutex<f64>,
}

impl Kernels {
    pub fn new(ctx: Arc<CudaContext>, cc: (i32, i32)) -> Result<Kernels> {
        let include = include_dirs();
        if include.is_empty() {
            return Err(setup_err(
                "cuda_bf16.h was not found: set TESSERA_CUDA_INCLUDE (or CUDA_HOME) to the CUDA include directory, \
                 e.g. /usr/local/cuda/include",
            ));
        }
        Ok(Kernels {
            ctx,
            arch: format!("sm_{}{}", cc.0, cc.1),
            include,
            cache: cache_dir(),
            nvrtc: nvrtc_version()?,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            compile_secs: Mutex::new(0.0),
        })
    }

    /// The function `name` of `module`, compiling and loading the module on first use.
    pub fn function(&self, module: &'static str, name: &str) -> Result<CudaFunction> {
        if let Some(f) = self.functions.lock().map_err(|_| setup_err("kernel table poisoned"))?.get(name) {
            return Ok(f.clone());
        }
        let m = self.module(module)?;
        let f = m
            .load_function(name)
            .map_err(|e| setup_err(format!("kernel {name} not found in {module}.cu: {e}")))?;
        self.functions.lock().map_err(|_| setup_err("kernel table poisoned"))?.insert(name.to_string(), f.clone());
        Ok(f)
    }

    /// Compiles (or reads from the cache) and loads every module; returns the seconds taken.
    pub fn load_all(&self) -> Result<f64> {
        let t0 = Instant::now();
        for (m, _) in SOURCES {
            self.module(m)?;
        }
        Ok(t0.elapsed().as_secs_f64())
    }

    fn module(&self, module: &'static str) -> Result<Arc<CudaModule>> {
        let mut modules = self.modules.lock().map_err(|_| setup_err("kernel table poisoned"))?;
        if let Some(m) = modules.get(module) {
            return Ok(m.clone());
        }
        let t0 = Instant::now();
        let cubin = self.cubin(module)?;
        let m = self
            .ctx
            .load_module(Ptx::from_binary(cubin))
            .map_err(|e| setup_err(format!("loading the compiled kernels/{module}.cu for {}: {e}", self.arch)))?;
        if let Ok(mut s) = self.compile_secs.lock() {
            *s += t0.elapsed().as_secs_f64();
        }
        modules.insert(module, m.clone());
        Ok(m)
    }

    /// The CUBIN of `module` from the disk cache, or compiled now (and cached).
    fn cubin(&self, module: &str) -> Result<Vec<u8>> {
        let src = full_source(module).ok_or_else(|| setup_err(format!("no kernel module named {module}")))?;
        let opts = options(&self.arch, &self.include).join(" ");
        let version = format!("nvrtc {}.{}", self.nvrtc.0, self.nvrtc.1);
        let key = fnv64(&[src.as_bytes(), opts.as_bytes(), version.as_bytes()]);
        let path = self.cache.as_ref().map(|d| d.join(format!("{module}-{}-{key:016x}.cubin", self.arch)));
        if let Some(p) = &path {
            if let Ok(bytes) = std::fs::read(p) {
                if !bytes.is_empty() {
                    tracing::debug!(module, path = %p.display(), "kernel cache hit");
                    return Ok(bytes);
                }
            }
        }
        let t0 = Instant::now();
        let (cubin, log) = compile_module(module, &self.arch, &self.include)?;
        tracing::debug!(module, arch = %self.arch, secs = t0.elapsed().as_secs_f32(), log = %log.trim(), "kernels compiled");
        if let Some(p) = &path {
            if let Err(e) = write_atomic(p, &cubin) {
                tracing::warn!(path = %p.display(), error = %e, "could not cache compiled kernels");
            }
        }
        Ok(cubin)
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers never see a
/// partial file even when several processes compile at once.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("kernel"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

