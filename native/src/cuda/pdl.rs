//! Programmatic dependent launch (PDL, sm_90+): the decode chain's kernels launched with
//! `CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION`, so each one's blocks start while
//! the kernel before it finishes (captured into the decode graphs as programmatic edges).
//!
//! ```text
//! kernel N      ── pdl_wait ── pdl_trigger ── its work ──────────────┐ completes
//! kernel N + 1             (launches here) ── W / metadata loads ── pdl_wait ── its work
//! ```
//! What runs before `pdl_wait` may read only what no kernel of the step writes (weights, the
//! step's metadata), so a GEMV's first W batch, the decode attention's metadata and block-table
//! lines and write_kv's RoPE angles overlap the tail of the kernel before (kernels/common.cuh
//! has the rules). Only the entry points in [`PDL_KERNELS`] call `pdl_wait`; every other
//! kernel launches as before. `TESSERA_CUDA_PDL=0` (or [`super::CudaBackend::set_pdl`])
//! launches everything plainly: the same kernels, the same results bit for bit. [`launch`]
//! also takes a thread block cluster (the decode attention's splits, attention.rs).

use std::ffi::c_void;

use cudarc::driver::sys as dsys;
use cudarc::driver::{CudaFunction, CudaStream, LaunchConfig};

use super::device::Arg;

/// Name prefixes of the entry points that call `pdl_wait` (kernels/gemv.cu, kv_cache.cu,
/// attention_decode.cu).
const PDL_KERNELS: [&str; 4] = ["gemv_", "write_kv_", "paged_attention_decode_", "attention_decode_combine_"];


/// Whether the kernel named `name` (its entry point, maybe followed by a description) waits
/// with `pdl_wait`, so it may be launched with PDL.
pub(crate) fn waits(name: &str) -> bool {
    PDL_KERNELS.iter().any(|p| name.starts_with(p))
}

/// PDL on unless `TESSERA_CUDA_PDL=0`, on devices of compute capability 9.0 and up.
pub(crate) fn default_on(cc: (i32, i32)) -> bool {
    cc.0 >= 9 && std::env::var("TESSERA_CUDA_PDL").as_deref() != Ok("0")
}

/// Launches `f` on `stream` with `cuLaunchKernelEx`: programmatic stream serialization allowed
/// when `pdl`, thread block clusters of `cluster` blocks along x when > 1.
///
/// # Safety
/// As `LaunchArgs::launch`: `args` match the kernel's C signature and point into live
/// allocations; with `pdl` the kernel calls `pdl_wait` before it touches anything an earlier
/// kernel writes; with a cluster, grid x is a multiple of it.
pub(crate) unsafe fn launch(stream: &CudaStream, f: &CudaFunction, cfg: LaunchConfig, args: &[Arg], pdl: bool, cluster: u32) -> Result<(), dsys::CUresult> {
    // The values, then pointers to them (cuLaunchKernelEx reads each through its pointer).
    let mut vals: Vec<u64> = args
        .iter()
        .map(|a| match *a {
            Arg::Ptr(p) | Arg::U64(p) => p,
            Arg::U32(v) => v as u64,
            Arg::F32(v) => v.to_bits() as u64,
        })
        .collect();
    // Little-endian: a u32 / f32 argument is the low 4 bytes of its u64 slot.
    let mut params: Vec<*mut c_void> = vals.iter_mut().map(|v| v as *mut u64 as *mut c_void).collect();
    let mut attrs: Vec<dsys::CUlaunchAttribute> = Vec::with_capacity(2);
    if pdl {
        let mut a: dsys::CUlaunchAttribute = std::mem::zeroed();
        a.id = dsys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        a.value.programmaticStreamSerializationAllowed = 1;
        attrs.push(a);
    }
    if cluster > 1 {
        let mut a: dsys::CUlaunchAttribute = std::mem::zeroed();
        a.id = dsys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
        a.value.clusterDim.x = cluster;
        a.value.clusterDim.y = 1;
        a.value.clusterDim.z = 1;
        attrs.push(a);
    }
    let config = dsys::CUlaunchConfig {
        gridDimX: cfg.grid_dim.0,
        gridDimY: cfg.grid_dim.1,
        gridDimZ: cfg.grid_dim.2,
        blockDimX: cfg.block_dim.0,
        blockDimY: cfg.block_dim.1,
        blockDimZ: cfg.block_dim.2,
        sharedMemBytes: cfg.shared_mem_bytes,
        hStream: stream.cu_stream(),
        attrs: attrs.as_mut_ptr(),
        numAttrs: attrs.len() as u32,
    };
    let r = dsys::cuLaunchKernelEx(&config, f.cu_function(), params.as_mut_ptr(), std::ptr::null_mut());
    if r == dsys::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(r)
    }
}
