//! GGUF block weights kept quantized in GPU memory: `matmul` (`qmatmul.wgsl`) and
//! `embedding` (`qembedding.wgsl`) on them, dequantizing in the shader (`gguf_blocks.wgsl`).
//!
//! ```text
//! upload   raw block bytes, row after row, in one buffer (padded to 4 bytes); a row of K
//!          elements is K / block_len blocks = row_bytes bytes (18, 20, 34, 210 ... per block:
//!          rows and blocks need not be 4-byte aligned, the shaders read unaligned)
//! bind     rows n0 .. n0 + nc at byte n0 * row_bytes (row_chunks: offsets aligned to
//!          minStorageBufferOffsetAlignment, each chunk <= maxStorageBufferBindingSize)
//! matmul   M < 8: qmatmul_vec, else qmatmul_tiled; one dispatch per chunk
//! ```
//! Formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K (`kernels::block_code`); other
//! block formats are dequantized at upload.

use super::encoder::Binding;
use super::kernels::{block_code, Kernel, Shader};
use super::matmul::{chunk_range, row_chunks, VEC_MAX_ROWS};
use super::tensor::{dims1, dims2, float, index, shape_err, u32_of, unsupported, WgpuTensor};
use super::{bits, WgpuBackend};
use crate::backend::{Op, Result};
use crate::tensor::DType;

/// Whether the shaders decode `dtype`'s blocks (so such weights stay quantized on upload).
pub(super) fn decodes(dtype: DType) -> bool {
    block_code(dtype).is_some()
}

/// `(QT, row_bytes)` of a quantized `[rows, k]` weight, checking rows hold whole blocks.
fn geometry(op: Op, w: &WgpuTensor, k: usize) -> Result<(u32, u64)> {
    let qt = block_code(w.dtype).ok_or_else(|| unsupported(op, w.dtype))?;
    if !k.is_multiple_of(w.dtype.block_len()) {
        return Err(shape_err(op, format!("{} rows of {k} elements are not whole {}-element blocks", w.dtype, w.dtype.block_len())));
    }
    Ok((qt, (k / w.dtype.block_len() * w.dtype.block_bytes()) as u64))
}

/// `x · wᵀ (+ bias)` with `w` `[N, K]` in a block format.
pub(super) fn matmul(be: &WgpuBackend, x: &WgpuTensor, w: &WgpuTensor, bias: Option<&WgpuTensor>) -> Result<WgpuTensor> {
    let op = Op::Matmul;
    let dx = float(op, x, be.f16_ok())?;
    let (m, k) = dims2(op, "x", x)?;
    let (n, wk) = dims2(op, "w", w)?;
    if wk != k {
        return Err(shape_err(op, format!("x {:?} · w {:?}ᵀ: inner dims {k} and {wk} differ", x.shape, w.shape)));
    }
    let (qt, row_bytes) = geometry(op, w, k)?;
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
    u32_of(op, "w bytes", n.saturating_mul(row_bytes as usize))?;
    let out = be.output(op, be.dtype, vec![m, n])?;
    if numel == 0 {
        return Ok(out);
    }
    let chunks = row_chunks(be.sizes(), n, row_bytes)
        .ok_or_else(|| shape_err(op, format!("one row of w {:?} exceeds a storage binding", w.shape)))?;
    let s = be.sizes();
    let vec = m < VEC_MAX_ROWS;
    let kernel = Kernel::new(Shader::QMatmul, if vec { "qmatmul_vec" } else { "qmatmul_tiled" })
        .ty("X", dx)
        .ty("BT", db)
        .ty("O", be.dtype)
        .konst("QT", qt)
        .konst("WG", s.wg)
        .konst("TS", s.matmul_ts)
        .konst("VR", s.wg / 32)
        .read(1)
        .read(2)
        .read(3)
        .rw(4);
    be.settle(w)?;
    let x_bind = be.bind(op, 1, x)?;
    let bias_buf = match bias {
        Some(b) => be.bind(op, 3, b)?.buffer,
        None => &be.dummy,
    };
    let out_bind = be.bind(op, 4, &out)?;
    for &(n0, nc) in &chunks {
        let (offset, size) = chunk_range(n0, nc, row_bytes);
        let params = [m as u32, n as u32, k as u32, n0 as u32, nc as u32, u32::from(bias.is_some()), row_bytes as u32, 0];
        let groups = if vec {
            let mut g = be.grid_groups(op, (nc as u32).div_ceil(s.wg / 32))?;
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
        let bindings = [
            Binding { index: 1, buffer: x_bind.buffer, offset: 0, size: None },
            Binding { index: 2, buffer: &w.buffer, offset, size: Some(size) },
            Binding { index: 3, buffer: bias_buf, offset: 0, size: None },
            Binding { index: 4, buffer: out_bind.buffer, offset: 0, size: None },
        ];
        be.run(kernel.clone(), &params, &bindings, groups)?;
    }
    Ok(out)
}

/// `out[t] = dequant(table[ids[t]]) * scale` with `table` `[V, H]` in a block format.
pub(super) fn embedding(be: &WgpuBackend, table: &WgpuTensor, ids: &WgpuTensor, scale: f32) -> Result<WgpuTensor> {
    let op = Op::Embedding;
    let (rows, hidden) = dims2(op, "table", table)?;
    let (qt, row_bytes) = geometry(op, table, hidden)?;
    index(op, ids)?;
    let tokens = dims1(op, "ids", ids)?;
    super::ops::check_indices(op, ids, rows, "id", &table.shape)?;
    let out = be.output(op, be.dtype, vec![tokens, hidden])?;
    if tokens == 0 || hidden == 0 {
        return Ok(out);
    }
    let chunks = row_chunks(be.sizes(), rows, row_bytes)
        .ok_or_else(|| shape_err(op, format!("one row of {:?} exceeds a storage binding", table.shape)))?;
    let threads = tokens
        .checked_mul(hidden / 8)
        .filter(|&n| n <= u32::MAX as usize && tokens * hidden <= u32::MAX as usize)
        .ok_or_else(|| shape_err(op, format!("[{tokens}, {hidden}] output exceeds u32 indexing")))?;
    let kernel = Kernel::new(Shader::QEmbedding, "qembedding")
        .ty("O", be.dtype)
        .konst("QT", qt)
        .konst("WG", be.sizes().wg)
        .read(1)
        .read(2)
        .rw(3);
    let groups = be.grid_threads(op, threads, be.sizes().wg)?;
    let ids_bind = be.bind(op, 2, ids)?;
    let out_bind = be.bind(op, 3, &out)?;
    let last = chunks.len() - 1;
    for (i, &(row0, n)) in chunks.iter().enumerate() {
        let (offset, size) = chunk_range(row0, n, row_bytes);
        let params = [
            tokens as u32,
            hidden as u32,
            u32_of(op, "row", row0)?,
            u32_of(op, "rows", n)?,
            bits(scale),
            u32::from(i == last),
            row_bytes as u32,
            0,
        ];
        let bindings = [
            Binding { index: 1, buffer: &table.buffer, offset, size: Some(size) },
            Binding { index: 2, buffer: ids_bind.buffer, offset: 0, size: None },
            Binding { index: 3, buffer: out_bind.buffer, offset: 0, size: None },
        ];
        be.run(kernel.clone(), &params, &bindings, groups)?;
    }
    Ok(out)
}
