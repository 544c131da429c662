//! `matmul_many` (q/k/v on one x) and `gated_matmul` (`act(x · gateᵀ) * (x · upᵀ)`) at decode
//! size: one dispatch of `matmul_many.wgsl` covers all the weights.
//!
//! ```text
//! M < 8 (the matrix-vector kernel's range), same weight dtype, each weight in one binding:
//!   matmul_many   workgroups over the concatenated column groups of up to S weights, with
//!                 S = (maxStorageBuffersPerShaderStage - 1) / 3 capped at 3 (x + w, bias,
//!                 out per weight: 3 on native adapters, 2 on WebGPU's minimum of 8)
//!   gated_matmul  gate and up dots of a column side by side in one workgroup (VR / 2
//!                 columns each), act(g) * u in the epilogue
//!                 (6 storage bindings)
//! otherwise: the trait's defaults (one `matmul` per weight, then `act_mul`); so too with
//!   TESSERA_WGPU_FUSE_MATMUL=0 (for comparisons)
//! ```
//! The fused kernels are the matrix-vector kernels' `vec_dot` with the weight slot picked
//! per workgroup (`kernels::Kernel::slots`), so every weight format the single matmul
//! decodes on the GPU (f32, f16, the GGUF blocks of `qmatmul.wgsl`) works here too.

use super::encoder::Binding;
use super::kernels::{Kernel, Shader};
use super::matmul::{chunk_range, row_chunks, PARAM_WORDS, VEC_MAX_ROWS};
use super::quant::decodes;
use super::tensor::{dims1, dims2, float, WgpuTensor};
use super::WgpuBackend;
use crate::backend::{Activation, Backend, Op, Result};
use crate::tensor::DType;

type Weight<'a> = (&'a WgpuTensor, Option<&'a WgpuTensor>);

/// Most weights one `matmul_many` dispatch binds.
const MAX_SLOTS: usize = 3;

/// What a fused dispatch is specialized with, when the weights allow one.
struct Plan {
    shader: Shader,
    entry: &'static str,
    /// Aliases: X, BT and W (float weights).
    dx: DType,
    db: DType,
    dw: Option<DType>,
    /// GGUF block format code.
    qt: Option<u32>,
    m: usize,
    k: usize,
    row_bytes: u64,
}

/// Weights per `matmul_many` dispatch on this adapter (1: no fusion; also with
/// `TESSERA_WGPU_FUSE_MATMUL=0`).
fn slots_per_dispatch(be: &WgpuBackend) -> usize {
    if !be.fuse_matmul {
        return 1;
    }
    ((be.sizes().storage_buffers.saturating_sub(1) / 3) as usize).min(MAX_SLOTS)
}

/// The fused plan for `ws` on `x`, or `None` where the defaults must run (large M, mixed
/// dtypes, a weight over one binding, anything the single matmul would reject: it then
/// reports the error).
fn plan(be: &WgpuBackend, x: &WgpuTensor, ws: &[Weight<'_>], entry: &'static str) -> Option<Plan> {
    let op = Op::Matmul;
    let dx = float(op, x, be.f16_ok()).ok()?;
    let (m, k) = dims2(op, "x", x).ok()?;
    if m == 0 || m >= VEC_MAX_ROWS || ws.len() < 2 {
        return None;
    }
    let wdt = ws[0].0.dtype;
    let mut db = None;
    for (w, b) in ws {
        let (n, wk) = dims2(op, "w", w).ok()?;
        if w.dtype != wdt || wk != k || n == 0 || m.checked_mul(n)? > u32::MAX as usize {
            return None;
        }
        if let Some(b) = b {
            let d = float(op, b, be.f16_ok()).ok()?;
            if dims1(op, "bias", b).ok()? != n || db.is_some_and(|e| e != d) {
                return None;
            }
            db = Some(d);
        }
    }
    let (shader, dw, qt, row_bytes) = match wdt {
        DType::F32 | DType::F16 => (Shader::Matmul, Some(float(op, ws[0].0, be.f16_ok()).ok()?), None, (k * wdt.size()) as u64),
        d if decodes(d) && k.is_multiple_of(d.block_len()) => {
            (Shader::QMatmul, None, super::kernels::block_code(d), (k / d.block_len() * d.block_bytes()) as u64)
        }
        _ => return None,
    };
    for (w, _) in ws {
        let n = w.shape[0];
        // One binding per weight, and u32 indexing of its elements / bytes.
        if row_chunks(be.sizes(), n, row_bytes)?.len() != 1 || n as u64 * row_bytes.max(k as u64) > u64::from(u32::MAX) {
            return None;
        }
    }
    if m * k > u32::MAX as usize {
        return None;
    }
    Some(Plan { shader, entry, dx, db: db.unwrap_or(DType::F32), dw, qt, m, k, row_bytes })
}

/// Records one fused dispatch of `plan` over `ws`: `outs` are slot s's outputs (one per
/// weight for `matmul_many`, one for `gated_matmul`), `groups_of` the column groups.
fn dispatch(be: &WgpuBackend, plan: &Plan, x: &WgpuTensor, ws: &[Weight<'_>], outs: &[&WgpuTensor], act: u32) -> Result<()> {
    let op = Op::Matmul;
    let s = be.sizes();
    let vr = s.wg / 32;
    let mut kernel = Kernel::new(plan.shader, plan.entry)
        .ty("X", plan.dx)
        .ty("BT", plan.db)
        .ty("O", be.dtype)
        .konst("WG", s.wg)
        .konst("TS", s.matmul_ts)
        .konst("VR", vr)
        .konst("NW", ws.len() as u32)
        .konst("NO", outs.len() as u32);
    if let Some(dw) = plan.dw {
        kernel = kernel.ty("W", dw);
    }
    if let Some(qt) = plan.qt {
        kernel = kernel.konst("QT", qt);
    }
    kernel = kernel.read(1);
    let mut params = [0u32; PARAM_WORDS];
    params[0] = plan.m as u32;
    params[2] = plan.k as u32;
    params[6] = plan.row_bytes as u32;
    params[7] = act;
    let mut bindings = vec![be.bind(op, 1, x)?];
    let mut group = 0u32;
    for (i, (w, b)) in ws.iter().enumerate() {
        let n = w.shape[0];
        be.settle(w)?;
        let base = 2 + 3 * i as u32;
        kernel = kernel.read(base).read(base + 1);
        if i < outs.len() {
            kernel = kernel.rw(base + 2);
        }
        let (_, size) = chunk_range(0, n, plan.row_bytes);
        bindings.push(Binding { index: base, buffer: &w.buffer, offset: 0, size: Some(size) });
        let bias_buf = match b {
            Some(b) => be.bind(op, base + 1, b)?.buffer,
            None => &be.dummy,
        };
        bindings.push(Binding::whole(base + 1, bias_buf));
        if let Some(o) = outs.get(i) {
            bindings.push(be.bind(op, base + 2, o)?);
        }
        params[8 + i] = n as u32;
        params[12 + i] = u32::from(b.is_some());
        params[16 + i] = group;
        group += (n as u32).div_ceil(vr);
    }
    // gated_matmul: a workgroup covers VR / 2 columns of gate and of up (VR >= 2: the 1-D
    // workgroup has at least 64 threads).
    let groups = if plan.entry == "gated_matmul" { (ws[0].0.shape[0] as u32).div_ceil(vr / 2) } else { group };
    let mut g = be.grid_groups(op, groups)?;
    g[2] = plan.m as u32;
    be.run(kernel, &params, &bindings, g)
}

/// `x · w_iᵀ (+ b_i)` for each weight; see the module header for when it is one dispatch.
pub(super) fn matmul_many(be: &WgpuBackend, x: &WgpuTensor, ws: &[Weight<'_>]) -> Result<Vec<WgpuTensor>> {
    let mut outs = Vec::with_capacity(ws.len());
    for part in ws.chunks(slots_per_dispatch(be).max(1)) {
        match plan(be, x, part, "matmul_many") {
            Some(p) => {
                let made = part.iter().map(|(w, _)| be.output(Op::Matmul, be.dtype, vec![p.m, w.shape[0]])).collect::<Result<Vec<_>>>()?;
                dispatch(be, &p, x, part, &made.iter().collect::<Vec<_>>(), 0)?;
                outs.extend(made);
            }
            None => {
                for (w, b) in part {
                    outs.push(be.matmul(x, w, *b)?);
                }
            }
        }
    }
    Ok(outs)
}

/// `act(x · gateᵀ (+ bg)) * (x · upᵀ (+ bu))`, gate and up rounded to the activation dtype
/// before the activation, as the default computes it.
pub(super) fn gated_matmul(be: &WgpuBackend, x: &WgpuTensor, gate: Weight<'_>, up: Weight<'_>, act: Activation) -> Result<WgpuTensor> {
    let fused = slots_per_dispatch(be) >= 2 && gate.0.shape == up.0.shape;
    match plan(be, x, &[gate, up], "gated_matmul").filter(|_| fused) {
        Some(p) => {
            let out = be.output(Op::Matmul, be.dtype, vec![p.m, gate.0.shape[0]])?;
            dispatch(be, &p, x, &[gate, up], &[&out], super::ops::act_code(act))?;
            Ok(out)
        }
        None => {
            let g = be.matmul(x, gate.0, gate.1)?;
            let u = be.matmul(x, up.0, up.1)?;
            be.act_mul(&g, &u, act)
        }
    }
}
