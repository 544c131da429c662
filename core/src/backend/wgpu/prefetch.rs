//! `Backend::prefetch` on wgpu: the weights named are held until the decode attention after
//! them, whose dispatch gets extra workgroups that read them into the GPU's L2 cache
//! (`shaders/attention_pf.wgsl`). A Vulkan dispatch waits for the one before it, so a weight
//! read by a dependent matvec costs that matvec an HBM round trip; the attention is latency
//! bound and leaves HBM idle, so the bytes move there instead. Native GPUs only, where the
//! binding limit allows (`WgpuOptions::prefetch`, `TESSERA_WGPU_PREFETCH=0`: off;
//! `TESSERA_WGPU_PREFETCH=N`: the first N weights named at most, for comparisons).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::device::{Gpu, WgpuOptions};
use super::encoder::Binding;
use super::kernels::Kernel;
use super::tensor::DeviceBuffer;
use super::{WgpuBackend, WgpuTensor};
use crate::backend::Result;

/// Weights a dispatch prefetches at most (bindings 14 .. 21).
const MAX_WEIGHTS: usize = 8;
/// Workgroups the prefetch adds to the attention's.
const WORKGROUPS: u32 = 128;
/// Storage bindings the prefetch adds (8 weights, the sink).
pub(super) const BINDINGS: u32 = MAX_WEIGHTS as u32 + 1;

/// The backend's prefetch state: whether hints are taken, the weights the last one named.
pub(crate) struct PrefetchState {
    /// Whether hints are taken (`WgpuOptions::prefetch`).
    on: bool,
    /// Most weights a decode attention reads (`TESSERA_WGPU_PREFETCH=N`; default 8).
    max_weights: usize,
    /// The weights named by the last hint: buffers and the bytes to read of each.
    held: Mutex<Vec<(Arc<DeviceBuffer>, u64)>>,
    /// Attention dispatches that took a prefetch on.
    taken: AtomicU64,
    /// Written by the prefetch workgroups only if their loads XOR to all ones.
    sink: wgpu::Buffer,
}

impl PrefetchState {
    /// On for real GPUs natively (a software adapter has no HBM to hide), unless `opts` or
    /// `TESSERA_WGPU_PREFETCH=0` say otherwise.
    pub fn new(gpu: &Gpu, opts: &WgpuOptions) -> Self {
        let env = std::env::var("TESSERA_WGPU_PREFETCH").ok().and_then(|v| v.parse::<usize>().ok());
        let on = opts.prefetch.unwrap_or_else(|| {
            cfg!(not(target_arch = "wasm32")) && gpu.info.device_type != wgpu::DeviceType::Cpu && env != Some(0)
        });
        let sink = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tessera prefetch sink"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        PrefetchState {
            on,
            max_weights: env.filter(|&n| n > 0).unwrap_or(MAX_WEIGHTS).min(MAX_WEIGHTS),
            held: Mutex::default(),
            taken: AtomicU64::new(0),
            sink,
        }
    }
}

impl WgpuBackend {
    /// Holds `weights` for the next decode attention (replacing any not taken).
    pub(super) fn defer_prefetch(&self, weights: &[(&WgpuTensor, usize)]) -> Result<()> {
        let pf = &self.prefetch;
        let mut held = pf.held.lock().map_err(|_| super::tensor::device_err("prefetch list poisoned"))?;
        held.clear();
        if !pf.on {
            return Ok(());
        }
        let max = self.sizes().max_binding;
        for (t, bytes) in weights.iter().take(pf.max_weights) {
            // Whole words within one binding.
            let b = (*bytes as u64).min(t.byte_len()).min(max) / 4 * 4;
            if b >= 32 {
                held.push((t.buffer.clone(), b));
            }
        }
        Ok(())
    }

    /// Decode attention dispatches so far that also read the weights a `prefetch` named.
    pub fn prefetch_dispatches(&self) -> u64 {
        self.prefetch.taken.load(Ordering::Relaxed)
    }

    /// The held weights, now the caller's (empty when none).
    fn take_prefetch(&self) -> Vec<(Arc<DeviceBuffer>, u64)> {
        self.prefetch.held.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }
}

/// The prefetch a decode attention dispatch takes on, when it has room for its bindings
/// (`used`: the storage bindings it has already).
pub(super) struct Prefetch {
    weights: Vec<(Arc<DeviceBuffer>, u64)>,
}

impl Prefetch {
    /// Takes the held weights for a decode attention (dropped when it cannot bind them).
    pub fn take(be: &WgpuBackend, decode: bool, used: u32) -> Result<Option<Prefetch>> {
        let weights = be.take_prefetch();
        if weights.is_empty() || !decode || be.sizes().storage_buffers < used + BINDINGS {
            return Ok(None);
        }
        be.prefetch.taken.fetch_add(1, Ordering::Relaxed);
        Ok(Some(Prefetch { weights }))
    }

    /// `kern` with the prefetch constants (sectors of each weight).
    pub fn kernel(&self, kern: Kernel) -> Kernel {
        const NAMES: [&str; MAX_WEIGHTS] = ["PFS0", "PFS1", "PFS2", "PFS3", "PFS4", "PFS5", "PFS6", "PFS7"];
        let mut k = kern.konst("PFN", self.weights.len() as u32).konst("PFW", WORKGROUPS);
        for (i, name) in NAMES.iter().enumerate() {
            let sectors = self.weights.get(i).map_or(0, |(_, b)| b.div_ceil(32) as u32);
            k = k.konst(name, sectors);
        }
        for i in 0..BINDINGS {
            k = if i < MAX_WEIGHTS as u32 { k.read(14 + i) } else { k.rw(14 + i) };
        }
        k
    }

    /// The bindings (unused weight slots get the dummy buffer, which they do not read).
    pub fn bindings<'a>(&'a self, be: &'a WgpuBackend, out: &mut Vec<Binding<'a>>) {
        for i in 0..MAX_WEIGHTS {
            out.push(match self.weights.get(i) {
                Some((b, bytes)) => Binding { index: 14 + i as u32, buffer: b, offset: 0, size: Some(*bytes) },
                None => Binding::whole(14 + i as u32, &be.dummy),
            });
        }
        out.push(Binding::whole(14 + MAX_WEIGHTS as u32, &be.prefetch.sink));
    }

    /// Workgroups the prefetch adds.
    pub fn workgroups(&self) -> u32 {
        WORKGROUPS
    }
}
