//! The device half of the CUDA backend: finding the libraries (a clear error when there is no
//! GPU), the context and its one stream, the stream-ordered memory pool, raw allocations,
//! checked kernel launches, and the device error word that kernels report bad indices into.
//!
//! ```text
//! Device ── ctx (primary context, event tracking off: one stream orders everything)
//!        ── stream (a created stream, so CUDA graphs can capture it later)
//!        ── err_word [4] u32   written by kernels (first error wins), read at every sync
//! ```

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
use cudarc::driver::{
    result as dres, sys as dsys, CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use tessera_core::backend::{BackendError, Op, Result};

use super::NAME;

/// A `BackendError::Device` naming the op.
pub(crate) fn dev_err(op: Op, what: impl std::fmt::Display) -> BackendError {
    BackendError::Device { backend: NAME, message: format!("op {op:?}: {what}") }
}

/// A `BackendError::Device` not tied to an op (setup, compilation, synchronisation).
pub(crate) fn setup_err(what: impl std::fmt::Display) -> BackendError {
    BackendError::Device { backend: NAME, message: what.to_string() }
}

/// What the device is, read once at start.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    /// Compute capability (major, minor), e.g. (9, 0) for H100/H200.
    pub compute_capability: (i32, i32),
    pub multiprocessors: u32,
    pub total_memory: usize,
    /// Largest dynamic shared memory one block may opt in to.
    pub max_shared_per_block: u32,
}

/// One kernel argument. Device pointers are passed as raw u64 addresses.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg {
    Ptr(u64),
    U32(u32),
    U64(u64),
    F32(f32),
}

pub(crate) struct Device {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub info: DeviceInfo,
    err_word: CudaSlice<u32>,
    pub err_ptr: u64,
    /// `TESSERA_CUDA_PROFILE=1`: per-kernel (calls, seconds), each launch timed alone.
    profile: Option<std::sync::Mutex<std::collections::HashMap<String, (u64, f64)>>>,
    /// The kernels that wait for their predecessor launch with PDL (pdl.rs).
    pub pdl: AtomicBool,
}

/// The message for a missing shared library.
fn missing(lib: &str, what: &str) -> BackendError {
    setup_err(format!(
        "{lib} was not found: {what}. The CUDA backend loads the NVIDIA driver and the CUDA 13 libraries at run \
         time; on a machine with an NVIDIA GPU, put the directories holding them on LD_LIBRARY_PATH (e.g. \
         /usr/local/cuda/lib64 and /usr/local/cuda/targets/x86_64-linux/lib), or use --device cpu"
    ))
}

/// Checks that libcuda, libnvrtc and libcublas can be loaded, without touching a device.
pub fn check_libraries() -> Result<()> {
    // SAFETY: these only try to dlopen the libraries by name.
    unsafe {
        if !dsys::is_culib_present() {
            return Err(missing("libcuda.so (the NVIDIA driver)", "this machine has no NVIDIA GPU driver"));
        }
        if !cudarc::nvrtc::sys::is_culib_present() {
            return Err(missing("libnvrtc.so.13 (NVRTC)", "kernels cannot be compiled"));
        }
        if !cudarc::cublas::sys::is_culib_present() {
            return Err(missing("libcublas.so.13 (cuBLAS)", "matrix products cannot run"));
        }
    }
    Ok(())
}

/// Whether an NVIDIA GPU is usable here: the driver and CUDA libraries load and at least one
/// device is visible (for `--device auto`). Never panics.
pub fn gpu_present() -> bool {
    check_libraries().is_ok()
        && guarded("CUDA probe", || {
            dres::init().map_err(|e| setup_err(format!("cuInit: {e}")))?;
            CudaContext::device_count().map_err(|e| setup_err(format!("counting devices: {e}")))
        })
        .is_ok_and(|n| n > 0)
}

/// Runs `f`, turning a panic inside cudarc (e.g. a missing symbol) into an error.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(setup_err(format!("{what}: {msg}")))
        }
    }
}

impl Device {
    pub fn new(ordinal: usize) -> Result<Device> {
        check_libraries()?;
        guarded("CUDA initialisation", || {
            dres::init().map_err(|e| setup_err(format!("cuInit failed ({e}): is the NVIDIA driver loaded?")))?;
            let count = CudaContext::device_count().map_err(|e| setup_err(format!("counting CUDA devices: {e}")))?;
            if count <= 0 {
                return Err(setup_err("no CUDA device is visible (check CUDA_VISIBLE_DEVICES); use --device cpu"));
            }
            if ordinal >= count as usize {
                return Err(setup_err(format!("CUDA device {ordinal} does not exist ({count} visible)")));
            }
            let ctx = CudaContext::new(ordinal).map_err(|e| setup_err(format!("creating a context on device {ordinal}: {e}")))?;
            // One stream orders all work, so per-buffer events are not needed.
            // SAFETY: no CudaSlice exists yet; everything runs on `stream`.
            unsafe { ctx.disable_event_tracking() };
            let stream = ctx.new_stream().map_err(|e| setup_err(format!("creating a stream: {e}")))?;
            let attr = |a: CUdevice_attribute| ctx.attribute(a).map_err(|e| setup_err(format!("reading {a:?}: {e}")));
            let info = DeviceInfo {
                ordinal,
                name: ctx.name().map_err(|e| setup_err(format!("device name: {e}")))?,
                compute_capability: ctx.compute_capability().map_err(|e| setup_err(format!("compute capability: {e}")))?,
                multiprocessors: attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?.max(1) as u32,
                total_memory: ctx.total_mem().map_err(|e| setup_err(format!("total memory: {e}")))?,
                max_shared_per_block: attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?
                    .max(0) as u32,
            };
            keep_pool_memory(&ctx);
            let err_word = stream.alloc_zeros::<u32>(4).map_err(|e| setup_err(format!("allocating the error word: {e}")))?;
            let err_ptr = {
                use cudarc::driver::DevicePtr;
                err_word.device_ptr(&stream).0
            };
            let profile = (std::env::var("TESSERA_CUDA_PROFILE").as_deref() == Ok("1")).then(Default::default);
            let pdl = AtomicBool::new(super::pdl::default_on(info.compute_capability));
            Ok(Device { ctx, stream, info, err_word, err_ptr, profile, pdl })
        })
    }

    /// Uninitialised device memory of `bytes` bytes (rounded up to 16, at least 16).
    pub fn alloc(&self, op: Op, bytes: usize) -> Result<(CudaSlice<u8>, u64)> {
        let len = bytes.max(16).div_ceil(16) * 16;
        // SAFETY: every caller writes the buffer (or memsets it) before reading it.
        let buf = unsafe { self.stream.alloc::<u8>(len) }
            .map_err(|e| dev_err(op, format!("allocating {len} bytes of device memory: {e}")))?;
        let ptr = {
            use cudarc::driver::DevicePtr;
            buf.device_ptr(&self.stream).0
        };
        Ok((buf, ptr))
    }

    /// `bytes` bytes at `ptr` set to `value`, stream-ordered.
    pub fn memset(&self, op: Op, ptr: u64, value: u8, bytes: usize) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        self.bind(op)?;
        // SAFETY: callers pass a pointer into a live allocation of at least `bytes` bytes.
        unsafe { dres::memset_d8_async(ptr, value, bytes, self.stream.cu_stream()) }.map_err(|e| dev_err(op, format!("memset: {e}")))
    }

    /// Makes the context current on this thread (raw driver and cuBLAS calls need it; the
    /// backend may be used from another thread than the one that made it).
    pub fn bind(&self, op: Op) -> Result<()> {
        self.ctx.bind_to_thread().map_err(|e| dev_err(op, format!("binding the CUDA context to this thread: {e}")))
    }

    /// Launches `f` with `args` on the stream; the launch's own error is checked, and with
    /// `sync` the stream is synchronised so a fault is blamed on this op.
    pub fn launch(&self, op: Op, f: &CudaFunction, name: &str, cfg: LaunchConfig, args: &[Arg], sync: bool) -> Result<()> {
        self.launch_cluster(op, f, name, cfg, args, sync, 1)
    }

    /// [`Device::launch`] in thread block clusters of `cluster` blocks along x (1 = none).
    #[allow(clippy::too_many_arguments)]
    pub fn launch_cluster(&self, op: Op, f: &CudaFunction, name: &str, cfg: LaunchConfig, args: &[Arg], sync: bool, cluster: u32) -> Result<()> {
        if cfg.grid_dim.0 == 0 || cfg.grid_dim.1 == 0 || cfg.grid_dim.2 == 0 {
            return Ok(());
        }
        if cfg.grid_dim.1 > 65535 || cfg.grid_dim.2 > 65535 {
            return Err(dev_err(op, format!("{name}: grid {:?} exceeds the device limits", cfg.grid_dim)));
        }
        let t0 = self.profile_start(op)?;
        let pdl = self.pdl.load(Ordering::Relaxed) && super::pdl::waits(name);
        if pdl || cluster > 1 {
            // SAFETY: as below; the kernel calls pdl_wait before it reads what an earlier
            // kernel wrote (kernels/common.cuh); the caller's grid x is a multiple of `cluster`.
            unsafe { super::pdl::launch(&self.stream, f, cfg, args, pdl, cluster) }
                .map_err(|e| dev_err(op, format!("launching {name} (programmatic dependent launch): {e:?}")))?;
        } else {
            let mut b = self.stream.launch_builder(f);
            for a in args {
                match a {
                    Arg::Ptr(p) | Arg::U64(p) => b.arg(p),
                    Arg::U32(v) => b.arg(v),
                    Arg::F32(v) => b.arg(v),
                };
            }
            // SAFETY: each kernel's argument list is written next to its launch and matches the
            // kernel's C signature; buffers are live allocations sized by the checks before it.
            unsafe { b.launch(cfg) }.map_err(|e| dev_err(op, format!("launching {name}: {e}")))?;
        }
        self.profile_end(op, name, t0)?;
        if sync {
            self.stream.synchronize().map_err(|e| dev_err(op, format!("{name} failed on the device: {e}")))?;
            self.check_error_word()?;
        }
        Ok(())
    }

    /// With profiling on: waits for earlier work and returns the start time of the next launch.
    pub fn profile_start(&self, op: Op) -> Result<Option<std::time::Instant>> {
        if self.profile.is_none() {
            return Ok(None);
        }
        self.stream.synchronize().map_err(|e| dev_err(op, format!("profiling sync: {e}")))?;
        Ok(Some(std::time::Instant::now()))
    }

    /// With profiling on: waits for the launch and adds its time to `name`'s row.
    pub fn profile_end(&self, op: Op, name: &str, t0: Option<std::time::Instant>) -> Result<()> {
        let (Some(p), Some(t0)) = (&self.profile, t0) else { return Ok(()) };
        self.stream.synchronize().map_err(|e| dev_err(op, format!("{name} failed on the device: {e}")))?;
        let dt = t0.elapsed().as_secs_f64();
        if let Ok(mut m) = p.lock() {
            let e = m.entry(name.to_string()).or_insert((0, 0.0));
            e.0 += 1;
            e.1 += dt;
        }
        Ok(())
    }

    /// Whether `TESSERA_CUDA_PROFILE=1` times every launch (graphs are off then).
    pub fn profiling(&self) -> bool {
        self.profile.is_some()
    }

    /// The profile table (kernels by total time), when profiling is on.
    pub fn profile_report(&self) -> Option<String> {
        let m = self.profile.as_ref()?.lock().ok()?;
        let total: f64 = m.values().map(|v| v.1).sum();
        let mut rows: Vec<_> = m.iter().collect();
        rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        let mut out = format!("PROFILE {:<40}{:>10}{:>12}{:>11}{:>8}\n", "kernel (each launch timed alone)", "calls", "total ms", "avg us", "share");
        for (name, (n, t)) in rows {
            out += &format!(
                "PROFILE {name:<40}{n:>10}{:>12.1}{:>11.1}{:>7.1}%\n",
                t * 1e3,
                t / *n as f64 * 1e6,
                100.0 * t / total.max(1e-12)
            );
        }
        Some(out)
    }

    /// Raises a function's dynamic shared memory limit to `bytes` when it needs more than 48 KB.
    pub fn allow_shared(&self, op: Op, f: &CudaFunction, name: &str, bytes: u32) -> Result<()> {
        if bytes <= 48 * 1024 {
            return Ok(());
        }
        if bytes > self.info.max_shared_per_block {
            return Err(dev_err(
                op,
                format!("{name} needs {bytes} bytes of shared memory, the device allows {}", self.info.max_shared_per_block),
            ));
        }
        f.set_attribute(CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes as i32)
            .map_err(|e| dev_err(op, format!("{name}: raising the shared memory limit to {bytes}: {e}")))
    }

    /// Asks for the largest shared-memory carveout of the SM's L1 for `f` (a kernel whose
    /// occupancy is set by its shared memory, e.g. 4 blocks of 48 KB an SM).
    pub fn prefer_shared(&self, op: Op, f: &CudaFunction, name: &str) -> Result<()> {
        f.set_attribute(CUfunction_attribute::CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT, 100)
            .map_err(|e| dev_err(op, format!("{name}: preferring the shared-memory carveout: {e}")))
    }

    /// Waits for all queued work, then reports (and clears) an error a kernel recorded.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(|e| setup_err(format!("device work failed: {e}")))?;
        self.check_error_word()
    }

    fn check_error_word(&self) -> Result<()> {
        let mut word = [0u32; 4];
        self.stream
            .memcpy_dtoh(&self.err_word, &mut word[..])
            .and_then(|_| self.stream.synchronize())
            .map_err(|e| setup_err(format!("reading the device error word: {e}")))?;
        if word[0] == 0 {
            return Ok(());
        }
        self.memset(Op::ToHost, self.err_ptr, 0, 16)?;
        Err(super::error::decode(word))
    }
}

impl Device {
    /// Waits for queued work, then hands the pool's unused memory back to the driver (after
    /// loading, so free-memory readings show what the weights really hold).
    pub fn release_pool_memory(&self) -> Result<()> {
        self.synchronize()?;
        self.bind(Op::Upload)?;
        let mut pool: dsys::CUmemoryPool = std::ptr::null_mut();
        // SAFETY: plain driver calls on the context's own device with a valid out-pointer.
        unsafe {
            if dsys::cuDeviceGetDefaultMemPool(&mut pool, self.ctx.cu_device()) == dsys::CUresult::CUDA_SUCCESS && !pool.is_null() {
                let r = dsys::cuMemPoolTrimTo(pool, 0);
                if r != dsys::CUresult::CUDA_SUCCESS {
                    tracing::debug!(?r, "could not trim the memory pool");
                }
            }
        }
        Ok(())
    }
}

/// Freed memory stays in the stream-ordered pool instead of going back to the driver at every
/// synchronisation (a failure here only costs speed).
fn keep_pool_memory(ctx: &CudaContext) {
    let mut pool: dsys::CUmemoryPool = std::ptr::null_mut();
    // SAFETY: plain driver calls on the context's own device with valid out-pointers.
    unsafe {
        if dsys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) == dsys::CUresult::CUDA_SUCCESS && !pool.is_null() {
            let mut threshold: u64 = u64::MAX;
            let r = dsys::cuMemPoolSetAttribute(
                pool,
                dsys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                &mut threshold as *mut u64 as *mut std::ffi::c_void,
            );
            if r != dsys::CUresult::CUDA_SUCCESS {
                tracing::debug!(?r, "could not keep freed device memory in the pool");
            }
        }
    }
}
