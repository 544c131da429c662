//! `write_kv` (scatter K/V into cache pages by slot) and `paged_attention` (causal varlen
//! attention over paged K/V), with all metadata validated up front.
//!
//! ```text
//! cache [num_blocks, block_size, num_kv_heads * head_dim]
//! slot  = block * block_size + offset              (u32::MAX = padding token, not written)
//!
//! seq b: rows query_start_loc[b] .. query_start_loc[b+1] of q, q_len = their count
//!        query row i sits at position p = seq_len - q_len + i
//!        key j (0 <= j <= p, and j > p - W with a sliding window W) lives at slot
//!        block_tables[b][j / block_size] * block_size + j % block_size
//! head h reads kv head h / (num_heads / num_kv_heads)
//! ```
//! Rows of q outside every sequence (padding past `query_start_loc[B]`) come out as zeros.

use super::attn_kernel::{attend, Shared, Task};
use super::fastmath::Simd;
use super::{f32_mut, f32_of, f32_tensor, shape_err, u32_of, CpuBackend, CpuTensor};
use crate::backend::attention_checks::{check_layout, check_shapes, check_slots, check_write_kv};
use crate::backend::{AttentionMetadata, AttentionParams, Op, Result};

pub(crate) fn write_kv(
    k_cache: &mut CpuTensor,
    v_cache: &mut CpuTensor,
    k: &CpuTensor,
    v: &CpuTensor,
    slot_mapping: &CpuTensor,
) -> Result<()> {
    let op = Op::WriteKv;
    let (kv, vv) = (f32_of(op, k)?, f32_of(op, v)?);
    let slots = u32_of(op, slot_mapping)?;
    let dims = check_write_kv(k_cache, v_cache, k, v, slot_mapping).map_err(|d| shape_err(op, d))?;
    check_slots(slots, dims).map_err(|d| shape_err(op, d))?;
    let (kw, vw) = (dims.k_width, dims.v_width);
    let kc = f32_mut(op, k_cache)?;
    let vc = f32_mut(op, v_cache)?;
    for (t, &s) in slots.iter().enumerate() {
        if s == u32::MAX {
            continue;
        }
        let s = s as usize;
        kc[s * kw..(s + 1) * kw].copy_from_slice(&kv[t * kw..(t + 1) * kw]);
        vc[s * vw..(s + 1) * vw].copy_from_slice(&vv[t * vw..(t + 1) * vw]);
    }
    Ok(())
}

/// Validated view of one step's layout.
struct Layout<'a> {
    /// For each query row: `(seq, position)`, or `None` for padding rows.
    rows: Vec<Option<(usize, usize)>>,
    block_tables: &'a [u32],
    max_blocks_per_seq: usize,
    block_size: usize,
}

fn validate<'a>(
    q: &CpuTensor,
    k_cache: &CpuTensor,
    v_cache: &CpuTensor,
    meta: &'a AttentionMetadata<CpuTensor>,
    p: &AttentionParams,
) -> Result<Layout<'a>> {
    let op = Op::PagedAttention;
    let dims = check_shapes(q, k_cache, v_cache, meta, p).map_err(|d| shape_err(op, d))?;
    let qsl = u32_of(op, &meta.query_start_loc)?;
    let seq_lens = u32_of(op, &meta.seq_lens)?;
    let tables = u32_of(op, &meta.block_tables)?;
    check_layout(qsl, seq_lens, tables, meta, dims).map_err(|d| shape_err(op, d))?;
    let (mb, bs) = (meta.max_blocks_per_seq, dims.block_size);
    let mut rows = vec![None; dims.tokens];
    for b in 0..meta.num_seqs {
        let (start, end) = (qsl[b] as usize, qsl[b + 1] as usize);
        let seq_len = seq_lens[b] as usize;
        for (i, row) in rows[start..end].iter_mut().enumerate() {
            *row = Some((b, seq_len - (end - start) + i));
        }
    }
    Ok(Layout {
        rows,
        block_tables: tables,
        max_blocks_per_seq: mb,
        block_size: bs,
    })
}

pub(crate) fn paged_attention(
    be: &CpuBackend,
    q: &CpuTensor,
    k_cache: &CpuTensor,
    v_cache: &CpuTensor,
    meta: &AttentionMetadata<CpuTensor>,
    p: &AttentionParams,
) -> Result<CpuTensor> {
    let op = Op::PagedAttention;
    let (qv, kc, vc) = (f32_of(op, q)?, f32_of(op, k_cache)?, f32_of(op, v_cache)?);
    let layout = validate(q, k_cache, v_cache, meta, p)?;
    let (qsl, seq_lens) = (u32_of(op, &meta.query_start_loc)?, u32_of(op, &meta.seq_lens)?);
    let (h, d) = (p.num_heads, p.head_dim);
    let group = p.num_heads / p.num_kv_heads;
    let mb = layout.max_blocks_per_seq;

    // Tasks: prefill-like batches take tiles of up to 16 rows × a whole KV group (the K/V
    // blocks are shared by the group's heads); decode-like ones take one head each (more
    // tasks for the threads).
    let tile = if meta.max_query_len >= 4 { 16 } else { 1 };
    let heads = if tile > 1 { group } else { 1 };
    let mut tasks = Vec::new();
    for b in 0..meta.num_seqs {
        let (start, end) = (qsl[b] as usize, qsl[b + 1] as usize);
        let pos_start = seq_lens[b] as usize - (end - start);
        let table = &layout.block_tables[b * mb..(b + 1) * mb];
        for t0 in (start..end).step_by(tile) {
            for h0 in (0..h).step_by(heads) {
                tasks.push(Task {
                    t0,
                    rows: tile.min(end - t0),
                    pos0: pos_start + (t0 - start),
                    h0,
                    heads,
                    kv_head: h0 / group,
                    table,
                });
            }
        }
    }
    let shared = Shared {
        q: qv,
        k_cache: kc,
        v_cache: vc,
        q_width: h * d,
        kv_width: p.num_kv_heads * d,
        head_dim: d,
        scale: p.scale,
        softcap: p.softcap,
        window: p.sliding_window,
        block_size: layout.block_size,
    };
    let chunk = tile * heads * d;
    let mut results = vec![0.0f32; tasks.len() * chunk];
    let simd = Simd::of(be.isa);
    be.for_each_row(&mut results, chunk, true, |i, buf| attend(simd, &shared, &tasks[i], buf));

    // Scatter [task][row][head][D] into out [T, H * D]; rows outside every sequence stay 0.
    let mut out = vec![0.0f32; layout.rows.len() * h * d];
    for (task, res) in tasks.iter().zip(results.chunks_exact(chunk)) {
        for r in 0..task.rows {
            let dst = &mut out[(task.t0 + r) * h * d + task.h0 * d..][..task.heads * d];
            dst.copy_from_slice(&res[r * task.heads * d..(r + 1) * task.heads * d]);
        }
    }
    Ok(f32_tensor(out, q.shape.clone()))
}
