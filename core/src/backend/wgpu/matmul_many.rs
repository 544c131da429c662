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
//!
//! norm_matmul_many / norm_gated_matmul (`norm_matmul.wgsl`): the same dispatch with the
//!   RMSNorm (and residual add) of x in its prologue, when all weights fit one dispatch
//!   (3 more bindings: norm weight, residual, sum) and a row of K f32 fits workgroup memory;
//!   otherwise (and with TESSERA_WGPU_FUSE_NORM=0) rms_norm / add_rms_norm first
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
use crate::backend::{normalize, Activation, Backend, Normed, Op, Result, Tensor};
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
/// `TESSERA_WGPU_FUSE_MATMUL=0`), `extra` storage bindings besides x and the slots.
fn slots_per_dispatch(be: &WgpuBackend, extra: u32) -> usize {
    if !be.fuse_matmul {
        return 1;
    }
    ((be.sizes().storage_buffers.saturating_sub(1 + extra) / 3) as usize).min(MAX_SLOTS)
}

/// Fewest weights a dispatch of `entry` is worth it for (`matmul_many` of one weight is
/// `matmul`; with the norm it still saves the norm's dispatch).
fn min_weights(entry: &str) -> usize {
    if entry.starts_with("norm_") {
        1
    } else {
        2
    }
}

/// The fused plan for `ws` on `x`, or `None` where the defaults must run (large M, mixed
/// dtypes, a weight over one binding, anything the single matmul would reject: it then
/// reports the error).
fn plan(be: &WgpuBackend, x: &WgpuTensor, ws: &[Weight<'_>], entry: &'static str) -> Option<Plan> {
    let op = Op::Matmul;
    let dx = float(op, x, be.f16_ok()).ok()?;
    let (m, k) = dims2(op, "x", x).ok()?;
    if m == 0 || m >= VEC_MAX_ROWS || ws.len() < min_weights(entry) {
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
fn dispatch(
    be: &WgpuBackend,
    plan: &Plan,
    x: &WgpuTensor,
    ws: &[Weight<'_>],
    outs: &[&WgpuTensor],
    act: u32,
    norm: Option<NormArgs<'_>>,
) -> Result<()> {
    let op = Op::Matmul;
    let s = be.sizes();
    let vr = s.wg / s.vec_lanes;
    let mut kernel = Kernel::new(plan.shader, plan.entry)
        .ty("X", plan.dx)
        .ty("BT", plan.db)
        .ty("O", be.dtype)
        .konst("WG", s.wg)
        .konst("TS", s.matmul_ts)
        .konst("VR", vr)
        .konst("SG", s.subgroup)
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
    if let Some(n) = &norm {
        kernel = kernel
            .konst("NORM", 1)
            .konst("HR", u32::from(n.residual.is_some()))
            .konst("NK", plan.k as u32)
            .konst("NWG", super::ops::row_wg(be, plan.k))
            .konst("NSG", super::ops::norm_subgroup(be, super::ops::row_wg(be, plan.k)))
            .ty("NWT", n.weight.dtype)
            .read(20);
        bindings.push(be.bind(op, 20, n.weight)?);
        if let Some((r, sum)) = n.residual {
            kernel = kernel.ty("R", r.dtype).read(21).rw(22);
            bindings.push(be.bind(op, 21, r)?);
            bindings.push(be.bind(op, 22, sum)?);
        }
        params[20] = n.eps.to_bits();
        params[21] = n.offset.to_bits();
    }
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
    // gated_matmul: a workgroup covers VR / 2 columns of gate and of up (VR >= 2: lanes are
    // at most half the workgroup).
    let groups = if plan.entry.ends_with("gated_matmul") { (ws[0].0.shape[0] as u32).div_ceil(vr / 2) } else { group };
    let mut g = be.grid_groups(op, groups)?;
    g[2] = plan.m as u32;
    be.run(kernel, &params, &bindings, g)
}

/// `x · w_iᵀ (+ b_i)` for each weight; see the module header for when it is one dispatch.
pub(super) fn matmul_many(be: &WgpuBackend, x: &WgpuTensor, ws: &[Weight<'_>]) -> Result<Vec<WgpuTensor>> {
    let mut outs = Vec::with_capacity(ws.len());
    for part in ws.chunks(slots_per_dispatch(be, 0).max(1)) {
        match plan(be, x, part, "matmul_many") {
            Some(p) => {
                let made = part.iter().map(|(w, _)| be.output(Op::Matmul, be.dtype, vec![p.m, w.shape[0]])).collect::<Result<Vec<_>>>()?;
                dispatch(be, &p, x, part, &made.iter().collect::<Vec<_>>(), 0, None)?;
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
    let fused = slots_per_dispatch(be, 0) >= 2 && gate.0.shape == up.0.shape;
    match plan(be, x, &[gate, up], "gated_matmul").filter(|_| fused) {
        Some(p) => {
            let out = be.output(Op::Matmul, be.dtype, vec![p.m, gate.0.shape[0]])?;
            dispatch(be, &p, x, &[gate, up], &[&out], super::ops::act_code(act), None)?;
            Ok(out)
        }
        None => {
            let g = be.matmul(x, gate.0, gate.1)?;
            let u = be.matmul(x, up.0, up.1)?;
            be.act_mul(&g, &u, act)
        }
    }
}

/// The norm of a fused `norm_*` dispatch: its weight, the residual and the sum's output.
struct NormArgs<'a> {
    weight: &'a WgpuTensor,
    residual: Option<(&'a WgpuTensor, &'a WgpuTensor)>,
    eps: f32,
    offset: f32,
}

/// The fused plan of `entry` over `ws` on the normalized `n.x`, or `None` where the norm
/// must run first: `TESSERA_WGPU_FUSE_NORM=0`, more weights than one dispatch binds, a norm
/// that is not one row of x, a row over the workgroup memory, or no fused plan at all.
fn norm_plan(be: &WgpuBackend, n: &Normed<'_, WgpuTensor>, ws: &[Weight<'_>], entry: &'static str) -> Option<Plan> {
    let op = Op::Matmul;
    if !be.fuse_norm || ws.len() > slots_per_dispatch(be, 3) {
        return None;
    }
    let (_, k) = dims2(op, "x", n.x).ok()?;
    float(op, n.weight, be.f16_ok()).ok()?;
    if n.weight.numel() != k || n.residual.is_some_and(|r| r.shape != n.x.shape || float(op, r, be.f16_ok()).is_err()) {
        return None;
    }
    // xn [K] and the reduction's partial [WG], f32.
    if (k as u64 + u64::from(be.sizes().wg)) * 4 > u64::from(be.sizes().wg_storage) {
        return None;
    }
    plan(be, n.x, ws, entry)
}

/// Runs `entry` of `p` with the norm of `n` in its prologue; returns the sum output.
fn norm_dispatch(be: &WgpuBackend, p: &Plan, n: &Normed<'_, WgpuTensor>, ws: &[Weight<'_>], outs: &[&WgpuTensor], act: u32) -> Result<Option<WgpuTensor>> {
    let sum = n.residual.map(|_| be.output(Op::AddRmsNorm, be.dtype, n.x.shape.clone())).transpose()?;
    let args = NormArgs { weight: n.weight, residual: n.residual.zip(sum.as_ref()), eps: n.eps, offset: n.offset };
    dispatch(be, p, n.x, ws, outs, act, Some(args))?;
    Ok(sum)
}

/// `matmul_many` of `rms_norm(x (+ residual))`, and `x + residual`; one dispatch at decode.
pub(super) fn norm_matmul_many(be: &WgpuBackend, n: Normed<'_, WgpuTensor>, ws: &[Weight<'_>]) -> Result<(Vec<WgpuTensor>, Option<WgpuTensor>)> {
    match norm_plan(be, &n, ws, "norm_matmul_many") {
        Some(p) => {
            let made = ws.iter().map(|(w, _)| be.output(Op::Matmul, be.dtype, vec![p.m, w.shape[0]])).collect::<Result<Vec<_>>>()?;
            let sum = norm_dispatch(be, &p, &n, ws, &made.iter().collect::<Vec<_>>(), 0)?;
            Ok((made, sum))
        }
        None => {
            let (h, sum) = normalize(be, n)?;
            Ok((matmul_many(be, &h, ws)?, sum))
        }
    }
}

/// `gated_matmul` of `rms_norm(x (+ residual))`, and `x + residual`; one dispatch at decode.
pub(super) fn norm_gated_matmul(
    be: &WgpuBackend,
    n: Normed<'_, WgpuTensor>,
    gate: Weight<'_>,
    up: Weight<'_>,
    act: Activation,
) -> Result<(WgpuTensor, Option<WgpuTensor>)> {
    let plan = norm_plan(be, &n, &[gate, up], "norm_gated_matmul").filter(|_| gate.0.shape == up.0.shape);
    match plan {
        Some(p) => {
            let out = be.output(Op::Matmul, be.dtype, vec![p.m, gate.0.shape[0]])?;
            let sum = norm_dispatch(be, &p, &n, &[gate, up], &[&out], super::ops::act_code(act))?;
            Ok((out, sum))
        }
        None => {
            let (h, sum) = normalize(be, n)?;
            Ok((gated_matmul(be, &h, gate, up, act)?, sum))
        }
    }
}
