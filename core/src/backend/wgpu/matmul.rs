//! `matmul` (`matmul.wgsl`): `out[M, N] = x[M, K] · w[N, K]ᵀ (+ bias[N])`, and the row
//! chunking that lets a weight larger than one storage binding be used in pieces.
//!
//! ```text
//! w buffer  [rows 0 .. r1) [r1 .. r2) ... each chunk <= max binding, starting at a byte
//!            offset that is a multiple of minStorageBufferOffsetAlignment
//! matmul    one dispatch per chunk, writing columns n0 .. n0 + nc of out
//! kernel    M < 8: matmul_vec (decode: lanes reduce over K); else matmul_tiled (64x64 tiles)
//!           merge_matmul: matmul_vec of a split attention's output whose merge is pending
//!           (`attention`), merged in the prologue (`merge_matmul.wgsl`)
//! fused     M < 8: matmul_many / gated_matmul, one dispatch for several weights (`matmul_many`)
//! ```
//! Weights are matched on their dtype: f32 / f16 here, GGUF block dtypes in `quant`
//! (`qmatmul.wgsl`; the chunking is per row either way).

use super::device::Sizes;
use super::encoder::Binding;
use super::kernels::{Kernel, Shader};
use super::tensor::{dims1, dims2, float, shape_err, u32_of, unsupported, PendingMerge, WgpuTensor};
use super::WgpuBackend;
use crate::backend::{Op, Result};
use crate::tensor::DType;

/// Below this many rows of x, the matrix-vector kernel is used (and the fused
/// `matmul_many` / `gated_matmul`, which are that kernel over several weights).
pub(super) const VEC_MAX_ROWS: usize = 8;

/// u32 words of `matmul_many.wgsl`'s `Params` (8 words, then `ns`, `hb`, `g0`, `nrm`).
pub(super) const PARAM_WORDS: usize = 24;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Row ranges `(first row, rows)` of a `[rows, row_bytes]` tensor that each fit one storage
/// binding and start at an aligned offset; `None` when not even the smallest aligned chunk fits.
pub(super) fn row_chunks(s: &Sizes, rows: usize, row_bytes: u64) -> Option<Vec<(usize, usize)>> {
    let total = rows as u64 * row_bytes;
    if total <= s.max_binding || row_bytes == 0 {
        return Some(vec![(0, rows)]);
    }
    // Chunks of a multiple of `step` rows start at multiples of the alignment; the binding
    // size is rounded up to 4 bytes, so leave room for that.
    let step = s.storage_align / gcd(s.storage_align, row_bytes);
    let fit = (s.max_binding - 3) / row_bytes;
    let per = (fit / step * step) as usize;
    if per == 0 {
        return None;
    }
    Some((0..rows).step_by(per).map(|r0| (r0, per.min(rows - r0))).collect())
}

/// Byte `(offset, size)` of rows `row0 .. row0 + n`, size rounded up to 4 bytes.
pub(super) fn chunk_range(row0: usize, n: usize, row_bytes: u64) -> (u64, u64) {
    let offset = row0 as u64 * row_bytes;
    let size = (n as u64 * row_bytes).div_ceil(4).max(1) * 4;
    (offset, size)
}

pub(super) fn matmul(be: &WgpuBackend, x: &WgpuTensor, w: &WgpuTensor, bias: Option<&WgpuTensor>) -> Result<WgpuTensor> {
    let op = Op::Matmul;
    float(op, x, be.f16_ok())?;
    dims2(op, "x", x)?;
    let dw = match w.dtype {
        DType::F32 | DType::F16 => float(op, w, be.f16_ok())?,
        d if d.is_quantized() => return super::quant::matmul(be, x, w, bias),
        d => return Err(unsupported(op, d)),
    };
    let k = dims2(op, "x", x)?.1;
    u32_of(op, "w elements", dims2(op, "w", w)?.0.saturating_mul(k))?;
    let row_bytes = (k * dw.size()) as u64;
    let entries = Entries { shader: Shader::Matmul, vec: "matmul_vec", tiled: "matmul_tiled" };
    run_rows(be, x, w, bias, row_bytes, |k: Kernel| k.ty("W", dw), entries, 0)
}

/// Whether the merge `pm` of x `[m, k]` can run in a matvec's prologue (`merge_matmul.wgsl`):
/// x is exactly the merged rows x heads x head_dim, and the staged row, the reduction and
/// the per-(head, split) factors fit the workgroup memory.
fn merge_fits(s: &Sizes, pm: &PendingMerge, m: usize, k: usize) -> bool {
    let words = k as u64 + u64::from(s.wg) + 2 * u64::from(pm.heads) * u64::from(pm.splits) + u64::from(pm.heads);
    m == pm.tokens && k == pm.heads as usize * pm.head_dim as usize && words * 4 <= u64::from(s.wg_storage)
}

/// A shader and its matrix-vector and tiled entry points.
pub(super) struct Entries {
    pub shader: Shader,
    pub vec: &'static str,
    pub tiled: &'static str,
}

/// What `matmul.wgsl` and `qmatmul.wgsl` share: the checks of x `[M, K]` · w `[N, K]`ᵀ
/// (+ bias `[N]`), the output, and one dispatch per row chunk of w (`row_bytes` a row), with
/// the kernel specialized by `spec` (W or QT) and `word6` as the seventh parameter word
/// (`row_bytes` for blocks). The caller checks w's own size against u32 indexing.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_rows(
    be: &WgpuBackend,
    x: &WgpuTensor,
    w: &WgpuTensor,
    bias: Option<&WgpuTensor>,
    row_bytes: u64,
    spec: impl Fn(Kernel) -> Kernel,
    entries: Entries,
    word6: u32,
) -> Result<WgpuTensor> {
    let op = Op::Matmul;
    let dx = float(op, x, be.f16_ok())?;
    let (m, k) = dims2(op, "x", x)?;
    let (n, wk) = dims2(op, "w", w)?;
    if wk != k {
        return Err(shape_err(op, format!("x {:?} · w {:?}ᵀ: inner dims {k} and {wk} differ", x.shape, w.shape)));
    }
    let db = match bias {
        Some(b) => {
            let d = float(op, b, be.f16_ok())?;
            if dims1(op, "bias", b)? != n {
                return Err(shape_err(op, format!("bias {:?} does not match w {:?}", b.shape, w.shape)));
            }
            d
        }
        None => DType::F32,
    };
    let numel = m.checked_mul(n).ok_or_else(|| shape_err(op, format!("output [{m}, {n}] overflows")))?;
    u32_of(op, "output elements", numel)?;
    u32_of(op, "x elements", m * k)?;
    let out = be.output(op, be.dtype, vec![m, n])?;
    if numel == 0 {
        return Ok(out);
    }
    let chunks = row_chunks(be.sizes(), n, row_bytes)
        .ok_or_else(|| shape_err(op, format!("one row of w {:?} exceeds a storage binding", w.shape)))?;
    let s = be.sizes();
    let vec = m < VEC_MAX_ROWS;
    let kernel = spec(Kernel::new(entries.shader, if vec { entries.vec } else { entries.tiled }))
        .ty("X", dx)
        .ty("BT", db)
        .ty("O", be.dtype)
        .konst("WG", s.wg)
        .konst("TS", s.matmul_ts)
        .konst("VR", s.wg / s.vec_lanes)
        .konst("SG", s.subgroup)
        .konst("NW", 1)
        .konst("NO", 1)
        .read(1)
        .read(2)
        .read(3)
        .rw(4);
    be.settle(w)?;
    // A split attention's merge still pending on x: done in this matvec's prologue where it fits.
    let merge = match x.pending_merge.take() {
        Some(pm) if vec && chunks.len() == 1 && merge_fits(s, &pm, m, k) => Some(pm),
        Some(pm) => {
            super::attention::record_merge(be, x, &pm)?;
            None
        }
        None => None,
    };
    let kernel = match &merge {
        Some(pm) => kernel
            .entry_point("merge_matmul")
            .konst("MRG", 1)
            .konst("NK", k as u32)
            .konst("MH", pm.heads)
            .konst("MS", pm.splits)
            .konst("MHD", pm.head_dim)
            .konst("MPS", pm.pstride)
            .read(20)
            .rw(21),
        None => kernel,
    };
    let x_bind = match be.bind(op, 1, x) {
        Ok(b) => b,
        Err(e) => {
            // x stays as it was: its merge pending for the next reader.
            x.pending_merge.set(merge);
            return Err(e);
        }
    };
    let bias_buf = match bias {
        Some(b) => be.bind(op, 3, b)?.buffer,
        None => &be.dummy,
    };
    let out_bind = be.bind(op, 4, &out)?;
    for &(n0, nc) in &chunks {
        let (offset, size) = chunk_range(n0, nc, row_bytes);
        let mut params = [0u32; PARAM_WORDS];
        params[..7].copy_from_slice(&[m as u32, n as u32, k as u32, n0 as u32, nc as u32, u32::from(bias.is_some()), word6]);
        let groups = if vec {
            let mut g = be.grid_groups(op, (nc as u32).div_ceil(s.wg / s.vec_lanes))?;
            g[2] = m as u32;
            g
        } else {
            let tile = 4 * s.matmul_ts;
            let g = [(nc as u32).div_ceil(tile), (m as u32).div_ceil(tile), 1];
            if g[0] > s.max_groups || g[1] > s.max_groups {
                return Err(shape_err(op, format!("x {:?} · w {:?}ᵀ needs a grid of {g:?} workgroups", x.shape, w.shape)));
            }
            g
        };
        let mut bindings = vec![
            Binding { index: 1, buffer: x_bind.buffer, offset: 0, size: None },
            Binding { index: 2, buffer: &w.buffer, offset, size: Some(size) },
            Binding { index: 3, buffer: bias_buf, offset: 0, size: None },
            Binding { index: 4, buffer: out_bind.buffer, offset: 0, size: None },
        ];
        if let Some(pm) = &merge {
            // x is written (the merged rows, by column group 0), not read as x.
            bindings[0] = Binding::whole(1, &be.dummy);
            bindings.push(Binding::whole(20, &pm.part));
            bindings.push(Binding::whole(21, x_bind.buffer));
        }
        be.run(kernel.clone(), &params, &bindings, groups)?;
    }
    Ok(out)
}
