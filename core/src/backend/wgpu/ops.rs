//! Row-wise and elementwise ops of the wgpu backend: embedding / gather_rows
//! (`embedding.wgsl`), add / softcap (`elementwise.wgsl`), rms_norm / add_rms_norm
//! (`rms_norm.wgsl`), rope (`rope.wgsl`), act_mul (`act.wgsl`), argmax (`argmax.wgsl`: rows longer
//! than `Sizes::argmax_chunk` over several workgroups a row, then `argmax_merge`).
//!
//! Each op checks dtypes and shapes as the CPU reference does (same error kinds), validates
//! index tensors against their host copy when they came from the host, allocates its output
//! in the activation dtype and records its dispatches; nothing waits on the device.

use super::encoder::Binding;
use super::kernels::{Kernel, Shader};
use super::tensor::{dims1, dims2, float, index, shape_err, u32_of, PendingRope, WgpuTensor};
use super::{bits, WgpuBackend};
use crate::backend::{Activation, Op, Result, RopeParams, RopeStyle, Tensor};
use crate::tensor::DType;

/// Workgroup size for one workgroup per row of `len` elements: a power of two in
/// [32, the 1-D size], not much larger than the row.
pub(super) fn row_wg(be: &WgpuBackend, len: usize) -> u32 {
    let want = (len.max(1) as u64).next_power_of_two().clamp(32, u64::from(be.sizes().wg));
    want as u32
}

/// The subgroup size a row reduction of `nwg` threads adds with (`rms_norm.wgsl`'s and the
/// norm prologue's sums of squares, which must agree bit for bit): the adapter's, where it
/// divides `nwg`; else 0, a tree in workgroup memory.
pub(super) fn norm_subgroup(be: &WgpuBackend, nwg: u32) -> u32 {
    let sg = be.sizes().subgroup;
    if sg > 0 && sg <= nwg && nwg.is_multiple_of(sg) {
        sg
    } else {
        0
    }
}

/// Checks that every host-known index in `t` is below `limit`.
pub(super) fn check_indices(op: Op, t: &WgpuTensor, limit: usize, what: &str, against: &[usize]) -> Result<()> {
    if let Some(values) = t.host_u32.get() {
        if let Some((i, &v)) = values.iter().enumerate().find(|(_, &v)| v as usize >= limit) {
            return Err(shape_err(op, format!("{what} {v} at row {i} is out of range for {against:?}")));
        }
    }
    Ok(())
}

/// `out[t] = table[ids[t]] * scale`, binding the table in row chunks when it is large.
pub(super) fn embedding(be: &WgpuBackend, table: &WgpuTensor, ids: &WgpuTensor, scale: f32) -> Result<WgpuTensor> {
    if table.dtype.is_quantized() {
        return super::quant::embedding(be, table, ids, scale);
    }
    gather(be, Op::Embedding, table, ids, scale, "id")
}

/// Rows of `x` at `indices` (exact copies: scale 1).
pub(super) fn gather_rows(be: &WgpuBackend, x: &WgpuTensor, indices: &WgpuTensor) -> Result<WgpuTensor> {
    gather(be, Op::GatherRows, x, indices, 1.0, "row index")
}

fn gather(be: &WgpuBackend, op: Op, table: &WgpuTensor, ids: &WgpuTensor, scale: f32, what: &str) -> Result<WgpuTensor> {
    let tab_dtype = float(op, table, be.f16_ok())?;
    let (rows, hidden) = dims2(op, "table", table)?;
    index(op, ids)?;
    let tokens = dims1(op, "ids", ids)?;
    check_indices(op, ids, rows, what, &table.shape)?;
    let out = be.output(op, be.dtype, vec![tokens, hidden])?;
    if tokens == 0 || hidden == 0 {
        return Ok(out);
    }
    be.settle(table)?;
    let row_bytes = (hidden * tab_dtype.size()) as u64;
    let chunks = super::matmul::row_chunks(be.sizes(), rows, row_bytes)
        .ok_or_else(|| shape_err(op, format!("one row of {:?} exceeds a storage binding", table.shape)))?;
    let threads = tokens
        .checked_mul(hidden)
        .filter(|&n| n <= u32::MAX as usize)
        .ok_or_else(|| shape_err(op, format!("[{tokens}, {hidden}] output exceeds u32 indexing")))?;
    let k = Kernel::new(Shader::Embedding, "embedding")
        .ty("TAB", tab_dtype)
        .ty("O", be.dtype)
        .konst("WG", be.sizes().wg)
        .read(1)
        .read(2)
        .rw(3);
    let groups = be.grid_threads(op, threads, be.sizes().wg)?;
    let last = chunks.len() - 1;
    for (i, &(row0, n)) in chunks.iter().enumerate() {
        let (offset, size) = super::matmul::chunk_range(row0, n, row_bytes);
        let params = [
            tokens as u32,
            hidden as u32,
            u32_of(op, "row", row0)?,
            u32_of(op, "rows", n)?,
            bits(scale),
            u32::from(i == last),
            0,
            0,
        ];
        let bindings = [
            Binding { index: 1, buffer: &table.buffer, offset, size: Some(size) },
            be.bind(op, 2, ids)?,
            be.bind(op, 3, &out)?,
        ];
        be.run(k.clone(), &params, &bindings, groups)?;
    }
    Ok(out)
}

/// `dst[pairs[2i]] = src[pairs[2i + 1]]` (u32; `embedding.wgsl`'s `scatter_ids`). The host
/// copy of `dst` is dropped: its values now come from the device.
pub(super) fn scatter_ids(be: &WgpuBackend, dst: &mut WgpuTensor, src: &WgpuTensor, pairs: &WgpuTensor) -> Result<()> {
    let op = Op::ScatterIds;
    for t in [&*dst, src, pairs] {
        if t.dtype != DType::U32 {
            return Err(crate::backend::BackendError::Unsupported { op, dtype: t.dtype, backend: "wgpu" });
        }
    }
    if pairs.numel() % 2 != 0 {
        return Err(shape_err(op, format!("pairs {:?} is not [P, 2]", pairs.shape)));
    }
    dst.host_u32.set(None);
    let n = pairs.numel() / 2;
    if n == 0 {
        return Ok(());
    }
    let k = Kernel::new(Shader::Embedding, "scatter_ids")
        .ty("TAB", DType::U32)
        .ty("O", DType::U32)
        .konst("WG", be.sizes().wg)
        .read(1)
        .read(2)
        .rw(3);
    let params = [u32_of(op, "pairs", n)?, u32_of(op, "dst", dst.numel())?, 0, u32_of(op, "src", src.numel())?, 0, 0, 0, 0];
    let bindings = [be.bind(op, 1, src)?, be.bind(op, 2, pairs)?, be.bind(op, 3, dst)?];
    be.run(k, &params, &bindings, be.grid_threads(op, n, be.sizes().wg)?).map(|_| ())
}

/// The kernel of `elementwise.wgsl`'s `entry` on inputs a, b and the output.
fn elementwise(be: &WgpuBackend, entry: &'static str, a: DType, b: DType) -> Kernel {
    Kernel::new(Shader::Elementwise, entry)
        .ty("A", a)
        .ty("B", b)
        .ty("O", be.dtype)
        .konst("WG", be.sizes().wg)
}

pub(super) fn add(be: &WgpuBackend, a: &WgpuTensor, b: &WgpuTensor) -> Result<WgpuTensor> {
    let op = Op::Add;
    let (da, db) = (float(op, a, be.f16_ok())?, float(op, b, be.f16_ok())?);
    if a.shape != b.shape {
        return Err(shape_err(op, format!("a {:?} and b {:?} differ", a.shape, b.shape)));
    }
    let out = be.output(op, be.dtype, a.shape.clone())?;
    let n = u32_of(op, "numel", a.numel())?;
    let k = elementwise(be, "add", da, db).read(1).read(2).rw(3);
    let bindings = [be.bind(op, 1, a)?, be.bind(op, 2, b)?, be.bind(op, 3, &out)?];
    be.run(k, &[n, 0, 0, 0], &bindings, be.grid_threads(op, a.numel(), be.sizes().wg)?)?;
    Ok(out)
}

pub(super) fn softcap(be: &WgpuBackend, x: &WgpuTensor, cap: f32) -> Result<WgpuTensor> {
    let op = Op::Softcap;
    let dx = float(op, x, be.f16_ok())?;
    if !(cap.is_finite() && cap > 0.0) {
        return Err(shape_err(op, format!("cap must be finite and > 0, got {cap}")));
    }
    let out = be.output(op, be.dtype, x.shape.clone())?;
    let n = u32_of(op, "numel", x.numel())?;
    let k = elementwise(be, "softcap", dx, dx).read(1).rw(3);
    let bindings = [be.bind(op, 1, x)?, be.bind(op, 3, &out)?];
    be.run(k, &[n, bits(cap), 0, 0], &bindings, be.grid_threads(op, x.numel(), be.sizes().wg)?)?;
    Ok(out)
}

/// `act_f32`'s code of an activation (common.wgsl).
pub(super) fn act_code(act: Activation) -> u32 {
    match act {
        Activation::Silu => 0,
        Activation::GeluTanh => 1,
        Activation::Gelu => 2,
    }
}

pub(super) fn act_mul(be: &WgpuBackend, gate: &WgpuTensor, up: &WgpuTensor, act: Activation) -> Result<WgpuTensor> {
    let op = Op::ActMul;
    let (dg, du) = (float(op, gate, be.f16_ok())?, float(op, up, be.f16_ok())?);
    if gate.shape != up.shape {
        return Err(shape_err(op, format!("gate {:?} and up {:?} differ", gate.shape, up.shape)));
    }
    let out = be.output(op, be.dtype, gate.shape.clone())?;
    let n = u32_of(op, "numel", gate.numel())?;
    let code = act_code(act);
    let k = Kernel::new(Shader::Act, "act_mul")
        .ty("G", dg)
        .ty("U", du)
        .ty("O", be.dtype)
        .konst("WG", be.sizes().wg)
        .read(1)
        .read(2)
        .rw(3);
    let bindings = [be.bind(op, 1, gate)?, be.bind(op, 2, up)?, be.bind(op, 3, &out)?];
    be.run(k, &[n, code, 0, 0], &bindings, be.grid_threads(op, gate.numel(), be.sizes().wg)?)?;
    Ok(out)
}

/// RMSNorm of `x` (or of `x + residual`, also returned) over groups of `weight.numel()`.
pub(super) fn rms_norm(
    be: &WgpuBackend,
    x: &WgpuTensor,
    residual: Option<&WgpuTensor>,
    weight: &WgpuTensor,
    eps: f32,
    offset: f32,
) -> Result<(WgpuTensor, Option<WgpuTensor>)> {
    let op = if residual.is_some() { Op::AddRmsNorm } else { Op::RmsNorm };
    let dx = float(op, x, be.f16_ok())?;
    let dw = float(op, weight, be.f16_ok())?;
    let dr = match residual {
        Some(r) => {
            if r.shape != x.shape {
                return Err(shape_err(op, format!("x {:?} and residual {:?} differ", x.shape, r.shape)));
            }
            float(op, r, be.f16_ok())?
        }
        None => dx,
    };
    let group = weight.numel();
    if group == 0 || !x.numel().is_multiple_of(group) {
        return Err(shape_err(
            op,
            format!("x {:?} does not split into groups of weight {:?}", x.shape, weight.shape),
        ));
    }
    let groups = u32_of(op, "groups", x.numel() / group)?;
    let out = be.output(op, be.dtype, x.shape.clone())?;
    let sum = residual.map(|_| be.output(op, be.dtype, x.shape.clone())).transpose()?;
    let wg = row_wg(be, group);
    let entry = if residual.is_some() { "add_rms_norm" } else { "rms_norm" };
    let mut k = Kernel::new(Shader::RmsNorm, entry)
        .ty("X", dx)
        .ty("R", dr)
        .ty("W", dw)
        .ty("O", be.dtype)
        .konst("WG", wg)
        .konst("SG", norm_subgroup(be, wg))
        .read(1)
        .read(2)
        .rw(3);
    let mut bindings = vec![be.bind(op, 1, x)?, be.bind(op, 2, weight)?, be.bind(op, 3, &out)?];
    if let (Some(r), Some(s)) = (residual, &sum) {
        k = k.read(4).rw(5);
        bindings.push(be.bind(op, 4, r)?);
        bindings.push(be.bind(op, 5, s)?);
    }
    let params = [u32_of(op, "group", group)?, groups, bits(eps), bits(offset)];
    be.run(k, &params, &bindings, be.grid_groups(op, groups)?)?;
    Ok((out, sum))
}

pub(super) fn rope(be: &WgpuBackend, x: &mut WgpuTensor, positions: &WgpuTensor, inv_freq: &WgpuTensor, p: RopeParams) -> Result<()> {
    let op = Op::Rope;
    let dx = float(op, x, be.f16_ok())?;
    let (tokens, width) = dims2(op, "x", x)?;
    index(op, positions)?;
    if inv_freq.dtype != DType::F32 {
        return Err(super::tensor::unsupported(op, inv_freq.dtype));
    }
    let half = p.rotary_dim / 2;
    let freqs = inv_freq.numel();
    let bad = p.head_dim == 0
        || width % p.head_dim != 0
        || p.rotary_dim % 2 == 1
        || p.rotary_dim > p.head_dim
        || (freqs != half && Some(freqs) != tokens.checked_mul(half))
        || positions.numel() != tokens;
    if bad {
        return Err(shape_err(
            op,
            format!(
                "x {:?}, positions {:?}, inv_freq {:?}, head_dim {}, rotary_dim {}: need x [T, n*head_dim], \
                 positions [T], even rotary_dim <= head_dim, inv_freq [rotary_dim/2] or [T, rotary_dim/2]",
                x.shape, positions.shape, inv_freq.shape, p.head_dim, p.rotary_dim
            ),
        ));
    }
    let heads = width / p.head_dim;
    let threads = tokens * heads * half;
    if threads == 0 {
        return Ok(());
    }
    let params = [
        tokens as u32,
        u32_of(op, "heads", heads)?,
        u32_of(op, "head_dim", p.head_dim)?,
        half as u32,
        u32::from(p.style == RopeStyle::Interleaved),
        u32::from(freqs != half),
        bits(p.attention_scaling),
        0,
    ];
    u32_of(op, "rotated pairs", threads)?;
    be.bind(op, 1, x)?; // records an earlier deferred rope of x, checks the binding size
    be.bind(op, 2, positions)?;
    be.bind(op, 3, inv_freq)?;
    let r = PendingRope { params, positions: positions.buffer.clone(), inv_freq: inv_freq.buffer.clone() };
    if be.fuse_rope {
        // Deferred: write_kv / paged_attention apply it as they read x, other readers settle it.
        x.pending_rope.set(Some(r));
        return Ok(());
    }
    record_rope(be, &x.buffer, dx, &r)
}

/// Records the in-place rope `r` of `x` (of dtype `dx`).
pub(super) fn record_rope(be: &WgpuBackend, x: &wgpu::Buffer, dx: DType, r: &PendingRope) -> Result<()> {
    let op = Op::Rope;
    let threads = r.params[0] as usize * r.params[1] as usize * r.params[3] as usize;
    let k = Kernel::new(Shader::Rope, "rope").ty("X", dx).konst("WG", be.sizes().wg).rw(1).read(2).read(3);
    let bindings = [Binding::whole(1, x), Binding::whole(2, &r.positions), Binding::whole(3, &r.inv_freq)];
    be.run(k, &r.params, &bindings, be.grid_threads(op, threads, be.sizes().wg)?)
}

pub(super) fn argmax(be: &WgpuBackend, x: &WgpuTensor) -> Result<WgpuTensor> {
    let op = Op::Argmax;
    let dx = float(op, x, be.f16_ok())?;
    let (rows, cols) = dims2(op, "x", x)?;
    if cols == 0 {
        return Err(shape_err(op, format!("x {:?} has empty rows", x.shape)));
    }
    let out = be.output(op, DType::U32, vec![rows])?;
    if rows == 0 {
        return Ok(out);
    }
    let chunk = be.sizes().argmax_chunk as usize;
    let parts = if chunk == 0 { 1 } else { cols.div_ceil(chunk) };
    let wg = if parts > 1 { be.sizes().wg } else { row_wg(be, cols) };
    let k = Kernel::new(Shader::Argmax, "argmax").ty("X", dx).konst("WG", wg).read(1).rw(2);
    let params = [u32_of(op, "rows", rows)?, u32_of(op, "cols", cols)?, parts as u32, chunk as u32];
    if parts <= 1 {
        let bindings = [be.bind(op, 1, x)?, be.bind(op, 2, &out)?];
        return be.run(k, &params, &bindings, be.grid_groups(op, rows as u32)?).map(|_| out);
    }
    // Long rows: PARTS workgroups a row leave (value bits, index) pairs, then one merges them.
    let groups = u32_of(op, "argmax workgroups", rows * parts)?;
    let part = be.output(op, DType::U32, vec![2 * groups as usize])?;
    let first = k.clone().entry_point("argmax_part").layout_only(&[(1, false), (3, true)]);
    be.run(first, &params, &[be.bind(op, 1, x)?, be.bind(op, 3, &part)?], be.grid_groups(op, groups)?)?;
    let merge = k.entry_point("argmax_merge").layout_only(&[(2, true), (3, true)]);
    be.run(merge, &params, &[be.bind(op, 2, &out)?, be.bind(op, 3, &part)?], be.grid_groups(op, rows as u32)?)?;
    Ok(out)
}
