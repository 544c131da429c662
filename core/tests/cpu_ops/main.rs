//! CPU reference backend, op by op: each op against an independent naive reference (f64
//! where it matters) on seeded random inputs with odd shapes, hand-checked small cases, and
//! errors (never panics) for bad shapes, dtypes and ids.

use tessera_core::backend::cpu::{CpuBackend, CpuTensor};
use tessera_core::backend::{
    Activation, AttentionMetadata, AttentionParams, Backend, BackendError, Op, RopeParams,
    RopeStyle, Tensor,
};
use tessera_core::tensor::{DType, HostTensor};

// ---- helpers --------------------------------------------------------------------------------

/// xorshift64*: a tiny seeded PRNG.
struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    pub(crate) fn f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub(crate) fn vec(&mut self, n: usize, amp: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32() * amp).collect()
    }
}

pub(crate) fn up(be: &CpuBackend, data: &[f32], shape: &[usize]) -> CpuTensor {
    be.upload(&HostTensor::from_f32(data, shape))
        .expect("upload")
}

pub(crate) fn up_u32(be: &CpuBackend, data: &[u32], shape: &[usize]) -> CpuTensor {
    be.upload_u32(data, shape).expect("upload_u32")
}

pub(crate) fn host(be: &CpuBackend, t: &CpuTensor) -> Vec<f32> {
    let h = pollster::block_on(be.to_host(t)).expect("to_host");
    assert_eq!(h.dtype, DType::F32);
    assert_eq!(h.shape, t.shape());
    h.to_f32()
}

pub(crate) fn host_u32(be: &CpuBackend, t: &CpuTensor) -> Vec<u32> {
    pollster::block_on(be.to_host(t)).expect("to_host").to_u32()
}

/// ‖out − ref‖∞ / ‖ref‖∞.
pub(crate) fn rel_err(out: &[f32], reference: &[f64]) -> f64 {
    assert_eq!(out.len(), reference.len(), "length");
    let diff = out
        .iter()
        .zip(reference)
        .map(|(&o, &r)| (o as f64 - r).abs())
        .fold(0.0, f64::max);
    let norm = reference.iter().map(|r| r.abs()).fold(0.0, f64::max);
    if norm == 0.0 {
        diff
    } else {
        diff / norm
    }
}

pub(crate) fn assert_close(out: &[f32], reference: &[f64], tol: f64, what: &str) {
    let e = rel_err(out, reference);
    assert!(e < tol, "{what}: relative error {e:e} >= {tol:e}");
}

pub(crate) fn is_shape_err<T: std::fmt::Debug>(r: Result<T, BackendError>, op: Op) {
    match r {
        Err(BackendError::Shape { op: got, detail }) => {
            assert_eq!(got, op, "{detail}");
            assert!(!detail.is_empty());
        }
        other => panic!("expected a Shape error for {op:?}, got {other:?}"),
    }
}

pub(crate) fn is_unsupported<T: std::fmt::Debug>(r: Result<T, BackendError>, op: Op, dtype: DType) {
    match r {
        Err(e @ BackendError::Unsupported { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("{op:?}"))
                    && msg.contains(dtype.hf_name())
                    && msg.contains("cpu"),
                "{msg}"
            );
        }
        other => panic!("expected Unsupported for {op:?}, got {other:?}"),
    }
}


mod attention;
mod norm_rope;
mod ops;
