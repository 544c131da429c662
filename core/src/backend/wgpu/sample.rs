//! `sample` on the device (`sample.wgsl`): one token per logits row under each row's
//! temperature / top-k / top-p / min-p and uniform draw; only the `[M]` u32 ids are read back.
//!
//! ```text
//! rows: &[RowSampling] ─▶ args buffer [M] x 32 B ─▶ sample (one workgroup per row) ─▶ ids [M]
//! ```
//! The dispatch is recorded into the step's pending encoder like every op, so a step that
//! samples on the device is still one submission (forward + sample + the ids' copy).

use super::kernels::{Kernel, Shader};
use super::tensor::{dims2, float, shape_err, u32_of, WgpuTensor};
use super::{bits, WgpuBackend};
use crate::backend::{Op, Result};
use crate::sample::RowSampling;
use crate::tensor::DType;

/// Records the sampling of every row of `logits` `[M, V]`; returns the ids `[M]` u32.
pub(super) fn sample(be: &WgpuBackend, logits: &WgpuTensor, rows: &[RowSampling]) -> Result<WgpuTensor> {
    // Sampling errors are reported under the argmax op (the trait's sampling op family).
    let op = Op::Argmax;
    let dl = float(op, logits, be.f16_ok())?;
    let (m, vocab) = dims2(op, "logits", logits)?;
    if rows.len() != m {
        return Err(shape_err(op, format!("{} sampling rows for logits {:?}", rows.len(), logits.shape)));
    }
    if vocab == 0 {
        return Err(shape_err(op, format!("logits {:?} have empty rows", logits.shape)));
    }
    let out = be.output(op, DType::U32, vec![m])?;
    if m == 0 {
        return Ok(out);
    }
    let mut words = Vec::with_capacity(m * 8);
    for r in rows {
        // The draw in f32, kept below 1 (f64 -> f32 rounding could reach 1.0).
        let u = (r.uniform as f32).min(1.0 - f32::EPSILON / 2.0).max(0.0);
        words.extend_from_slice(&[bits(r.temperature), r.top_k, bits(r.top_p), bits(r.min_p), bits(u), 0, 0, 0]);
    }
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let args = be.buffer(op, bytes.len() as u64, Some(&bytes))?;
    let wg = be.sizes().wg;
    let k = Kernel::new(Shader::Sample, "sample").ty("L", dl).konst("WG", wg).read(1).read(2).rw(3);
    let params = [u32_of(op, "rows", m)?, u32_of(op, "vocab", vocab)?, 0, 0];
    let bindings = [be.bind(op, 1, logits)?, super::encoder::Binding::whole(2, &args), be.bind(op, 3, &out)?];
    be.run(k, &params, &bindings, be.grid_groups(op, m as u32)?)?;
    Ok(out)
}
