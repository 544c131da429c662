//! Opening a wgpu device: adapter choice, features (shader-f16), limits, the sizes the
//! kernels derive from those limits, and the sink that collects device errors.
//!
//! wgpu reports validation and out-of-memory errors through a callback, not through return
//! values; the sink stores them and every synchronization point (`to_host`, pipeline
//! creation) turns them into `BackendError::Device`, so nothing panics.

use std::sync::{Arc, Mutex};

use super::tensor::device_err;
use crate::backend::Result;
use crate::tensor::DType;

/// How to open the backend. `Default` = the best adapter, f16 where it exists.
#[derive(Clone, Debug, Default)]
pub struct WgpuOptions {
    /// Dtype of activations and KV pages: `Some(F32)`, `Some(F16)` (an error without
    /// shader-f16), or `None` = f16 where the adapter has shader-f16, else f32.
    pub dtype: Option<DType>,
    /// Fill every op's freshly allocated output with NaN before the op runs, so elements a
    /// kernel forgets to write show up (op-parity tests).
    pub poison_outputs: bool,
    /// Lower the largest storage binding below the adapter's (tests of weight splitting).
    pub max_binding_bytes: Option<u64>,
    /// Accept only a fallback (software) adapter.
    pub force_fallback_adapter: bool,
    /// Lower the invocations per workgroup below the adapter's (tests of the sizes a small
    /// adapter gets, e.g. 64; browsers' fallback adapters allow 256).
    pub max_workgroup_invocations: Option<u32>,
    /// Lower the storage buffers per shader stage below the adapter's (tests of the fused
    /// matmuls on adapters with WebGPU's minimum of 8, as browsers' fallback adapters).
    pub max_storage_buffers: Option<u32>,
    /// `Some(false)`: no subgroup reductions even where the adapter has them (tests of both
    /// paths; `TESSERA_WGPU_SUBGROUPS=0` does the same).
    pub subgroups: Option<bool>,
    /// Lanes per output column of the matrix-vector kernels (a power of two; default 32, or
    /// `TESSERA_WGPU_VEC_LANES`).
    pub vec_lanes: Option<u32>,
    /// Most key splits of paged attention (1: none; default 16 on GPUs, 1 on software
    /// adapters, or `TESSERA_WGPU_ATTN_SPLIT`).
    pub attn_splits: Option<u32>,
    /// Values per workgroup of `argmax`'s first pass over a long row (0: one workgroup per
    /// row; default 4 x the workgroup size, or `TESSERA_WGPU_ARGMAX_CHUNK`).
    pub argmax_chunk: Option<u32>,
    /// `Some(false)`: a split attention's merge is always its own dispatch, never folded
    /// into the matvec after it (default on, or `TESSERA_WGPU_FUSE_MERGE`).
    pub fuse_merge: Option<bool>,
    /// `Some(false)`: paged attention loads every key after staging q, none before its
    /// barrier (default on for head_dim <= 128, or `TESSERA_WGPU_EARLY_KV`).
    pub early_kv: Option<bool>,
    /// `prefetch` hints: the decode attention reads the weights named into L2 (`prefetch`;
    /// default on for native GPUs, off for software adapters and in the browser, or
    /// `TESSERA_WGPU_PREFETCH`).
    pub prefetch: Option<bool>,
}

/// Sizes the kernels are specialized with, derived from the device limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizes {
    /// Workgroup size of 1-D kernels: a power of two <= 256 and <= the device's limits.
    pub wg: u32,
    /// Threads per side of the tiled matmul (16 if 256 invocations fit, else 8).
    pub matmul_ts: u32,
    /// Workgroup size of paged attention (the 1-D size; <= 64 on software adapters).
    pub attn_wg: u32,
    /// Bytes of workgroup memory a workgroup may use.
    pub wg_storage: u32,
    /// Largest storage binding in bytes.
    pub max_binding: u64,
    /// Largest buffer in bytes.
    pub max_buffer: u64,
    /// Storage binding offsets are multiples of this.
    pub storage_align: u64,
    /// Uniform binding offsets are multiples of this.
    pub uniform_align: u64,
    /// Workgroups per grid dimension.
    pub max_groups: u32,
    /// Storage buffers one kernel may bind (`maxStorageBuffersPerShaderStage`).
    pub storage_buffers: u32,
    /// The adapter's subgroup size where the device has wgpu's `SUBGROUP` feature and the
    /// size is fixed (min = max, a power of two <= 128); 0: no subgroup operations (the
    /// browser, adapters without them, `TESSERA_WGPU_SUBGROUPS=0`). Kernels get it as `SG`.
    pub subgroup: u32,
    /// Lanes that reduce one output column of the matrix-vector kernels (a power of two,
    /// 32 unless `TESSERA_WGPU_VEC_LANES` asks for another; at most wg / 2).
    pub vec_lanes: u32,
    /// Most workgroups one (row, head) of paged attention is split over (`attention`).
    pub attn_splits: u32,
    /// Values per workgroup of `argmax_part` (0: `argmax`, one workgroup per row).
    pub argmax_chunk: u32,
}

/// A power-of-two setting from the environment (`None` where unset or not a power of two).
fn env_pow2(name: &str) -> Option<u32> {
    std::env::var(name).ok()?.parse::<u32>().ok().filter(|v| v.is_power_of_two())
}

/// Device errors reported by wgpu's callback, waiting to be returned.
#[derive(Clone, Default)]
pub(crate) struct ErrorSink(Arc<Mutex<Vec<String>>>);

impl ErrorSink {
    fn push(&self, message: String) {
        if let Ok(mut v) = self.0.lock() {
            v.push(message);
        }
    }

    /// `Err` with every collected message (then cleared), or `Ok`.
    pub fn check(&self, context: &str) -> Result<()> {
        let messages = match self.0.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(_) => vec!["error sink poisoned".into()],
        };
        if messages.is_empty() {
            Ok(())
        } else {
            Err(device_err(format!("{context}: {}", messages.join("; "))))
        }
    }
}

/// The opened device.
pub(crate) struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub has_f16: bool,
    pub sizes: Sizes,
    pub errors: ErrorSink,
    /// `TESSERA_WGPU_PROFILE` asked for step timings (`profile`; native only).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub profile: bool,
}

fn pow2_floor(x: u32) -> u32 {
    if x == 0 {
        0
    } else {
        1 << (31 - x.leading_zeros())
    }
}

/// Opens the adapter and device `opts` ask for, with every limit the adapter offers.
pub(crate) async fn open(opts: &WgpuOptions) -> Result<(Gpu, DType)> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::from_env().unwrap_or(wgpu::PowerPreference::HighPerformance),
            force_fallback_adapter: opts.force_fallback_adapter,
            compatible_surface: None,
            apply_limit_buckets: false,
        })
        .await
        .map_err(|e| {
            device_err(format!(
                "no GPU adapter ({e}); natively install a Vulkan driver (Debian: mesa-vulkan-drivers libvulkan1), \
                 in a browser enable WebGPU"
            ))
        })?;
    let info = adapter.get_info();
    let adapter_f16 = adapter.features().contains(wgpu::Features::SHADER_F16);
    let dtype = match opts.dtype {
        None => {
            if adapter_f16 {
                DType::F16
            } else {
                DType::F32
            }
        }
        Some(DType::F32) => DType::F32,
        Some(DType::F16) if adapter_f16 => DType::F16,
        Some(d) => {
            return Err(device_err(format!(
                "adapter {:?} cannot compute in {d} (shader-f16: {adapter_f16}); use float32",
                info.name
            )))
        }
    };
    let mut features = if adapter_f16 { wgpu::Features::SHADER_F16 } else { wgpu::Features::empty() };
    let profile = super::profile::requested();
    let timestamps = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
    if super::profile::timestamps_requested() && adapter.features().contains(timestamps) {
        features |= timestamps;
    }
    // `TESSERA_WGPU_PROFILE=step`: a timestamp at each submission's start and end.
    let step_ts = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
    if super::profile::step_requested() && adapter.features().contains(step_ts) {
        features |= step_ts;
    }
    // Subgroup reductions where the size is fixed, so a kernel can rely on it (native only:
    // browsers need WGSL's `enable subgroups`, which naga does not parse).
    let subgroup_size = info.subgroup_min_size;
    let subgroups = cfg!(not(target_arch = "wasm32"))
        && opts.subgroups.unwrap_or_else(|| std::env::var("TESSERA_WGPU_SUBGROUPS").map_or(true, |v| v != "0"))
        && adapter.features().contains(wgpu::Features::SUBGROUP)
        && subgroup_size == info.subgroup_max_size
        && subgroup_size.is_power_of_two()
        && (4..=128).contains(&subgroup_size);
    if subgroups {
        features |= wgpu::Features::SUBGROUP;
    }
    let limits = adapter.limits();
    let (device, queue) = adapter
        .request_device(&wgpu::DeviceDescriptor {
            label: Some("tessera"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        })
        .await
        .map_err(|e| device_err(format!("requesting a device from {:?}: {e}", info.name)))?;
    let errors = ErrorSink::default();
    let sink = errors.clone();
    device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| sink.push(e.to_string())));

    let l = device.limits();
    let max_invocations = l.max_compute_invocations_per_workgroup.min(opts.max_workgroup_invocations.unwrap_or(u32::MAX));
    let invocations = max_invocations.min(l.max_compute_workgroup_size_x);
    let wg = pow2_floor(invocations.min(256));
    if wg < 32 || max_invocations < 64 {
        return Err(device_err(format!("adapter {:?} allows only {invocations} invocations per workgroup", info.name)));
    }
    let ts = if max_invocations >= 256 && l.max_compute_workgroup_size_y >= 16 { 16 } else { 8 };
    let mut max_binding = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
    if let Some(cap) = opts.max_binding_bytes {
        max_binding = max_binding.min(cap.max(256));
    }
    // Attention: TESSERA_WGPU_ATTN_WG (a power of two up to the adapter's invocations) or wg.
    let attn_max = pow2_floor(max_invocations.min(l.max_compute_workgroup_size_x).min(1024));
    let attn_wg = env_pow2("TESSERA_WGPU_ATTN_WG").map_or(wg, |v| v.clamp(32, attn_max.max(32)));
    let sizes = Sizes {
        wg,
        matmul_ts: ts,
        // Software adapters run a workgroup's threads one after another between barriers.
        attn_wg: if info.device_type == wgpu::DeviceType::Cpu { wg.min(64) } else { attn_wg },
        wg_storage: l.max_compute_workgroup_storage_size,
        max_binding,
        max_buffer: l.max_buffer_size,
        storage_align: u64::from(l.min_storage_buffer_offset_alignment.max(4)),
        uniform_align: u64::from(l.min_uniform_buffer_offset_alignment.max(16)),
        max_groups: l.max_compute_workgroups_per_dimension.max(1),
        storage_buffers: l.max_storage_buffers_per_shader_stage.min(opts.max_storage_buffers.unwrap_or(u32::MAX)),
        subgroup: if subgroups && subgroup_size <= wg { subgroup_size } else { 0 },
        attn_splits: opts
            .attn_splits
            .or_else(|| std::env::var("TESSERA_WGPU_ATTN_SPLIT").ok().and_then(|v| v.parse().ok()))
            .unwrap_or(if info.device_type == wgpu::DeviceType::Cpu { 1 } else { 16 })
            .clamp(1, 64),
        argmax_chunk: opts
            .argmax_chunk
            .or_else(|| std::env::var("TESSERA_WGPU_ARGMAX_CHUNK").ok().and_then(|v| v.parse().ok()))
            .unwrap_or(4 * wg),
        vec_lanes: opts.vec_lanes.filter(|v| v.is_power_of_two()).or_else(|| env_pow2("TESSERA_WGPU_VEC_LANES")).unwrap_or(32).clamp(4, wg / 2),
    };
    tracing::info!(adapter = %info.name, backend = ?info.backend, %dtype, ?sizes, "wgpu device opened");
    Ok((Gpu { device, queue, info, has_f16: adapter_f16, sizes, errors, profile }, dtype))
}
