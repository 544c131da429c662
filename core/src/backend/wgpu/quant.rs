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
use super::matmul::{chunk_range, row_chunks, run_rows, Entries};
use super::tensor::{dims1, dims2, index, shape_err, u32_of, unsupported, WgpuTensor};
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
    super::tensor::float(op, x, be.f16_ok())?;
    let k = dims2(op, "x", x)?.1;
    let (qt, row_bytes) = geometry(op, w, k)?;
    u32_of(op, "w bytes", dims2(op, "w", w)?.0.saturating_mul(row_bytes as usize))?;
    let entries = Entries { shader: Shader::QMatmul, vec: "qmatmul_vec", tiled: "qmatmul_tiled" };
    run_rows(be, x, w, bias, row_bytes, |k: Kernel| k.konst("QT", qt), entries, row_bytes as u32)
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
