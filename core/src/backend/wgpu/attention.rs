//! `write_kv` (`kv.wgsl`) and `paged_attention` (`attention.wgsl`): the paged KV cache on
//! the device. Layout and semantics are the CPU reference's (see `cpu/attention.rs`):
//!
//! ```text
//! cache [num_blocks, block_size, num_kv_heads * head_dim], slot = block * block_size + offset
//! seq b: q rows query_start_loc[b] .. query_start_loc[b+1]; row i at seq_len - q_len + i
//! ```
//! Metadata uploaded from the host (the normal case: `BatchInput::upload`) is validated here
//! exactly as the CPU validates it, from the tensors' host copies; device-made metadata is
//! used as is (the shaders never read or write outside their bindings).
//!
//! A deferred `rope` of k (`write_kv`, pair path) or q (`paged_attention`) is applied inside
//! the kernel as it reads that tensor, and stays pending on the tensor for any later reader.

use super::encoder::Binding;
use super::kernels::{Kernel, Shader};
use super::tensor::{float, index, shape_err, u32_of, PendingRope, WgpuTensor};
use super::{bits, WgpuBackend};
use crate::backend::attention_checks::{check_layout, check_shapes, check_slots, check_write_kv};
use crate::backend::{AttentionMetadata, AttentionParams, Op, Result, Tensor};
use crate::tensor::DType;

pub(super) fn write_kv(
    be: &WgpuBackend,
    k_cache: &mut WgpuTensor,
    v_cache: &mut WgpuTensor,
    k: &WgpuTensor,
    v: &WgpuTensor,
    slot_mapping: &WgpuTensor,
) -> Result<()> {
    let op = Op::WriteKv;
    let f16 = be.f16_ok();
    let (dk, dv) = (float(op, k, f16)?, float(op, v, f16)?);
    let (dkc, dvc) = (float(op, k_cache, f16)?, float(op, v_cache, f16)?);
    index(op, slot_mapping)?;
    let dims =
        check_write_kv(&*k_cache, &*v_cache, k, v, slot_mapping).map_err(|d| shape_err(op, d))?;
    if let Some(slots) = slot_mapping.host_u32.get() {
        check_slots(&slots, dims).map_err(|d| shape_err(op, d))?;
    }
    let (tokens, kw, vw) = (dims.tokens, dims.k_width, dims.v_width);
    let num_slots = u32_of(
        op,
        "cache slots",
        dims.num_blocks.saturating_mul(dims.block_size),
    )?;
    if kw == vw && dk == dv && dkc == dvc {
        // Both caches in one dispatch, applying k's deferred rope as it is read.
        let rope = k.pending_rope.take();
        let done = write_kv_pair(
            be,
            k_cache,
            v_cache,
            k,
            v,
            slot_mapping,
            [tokens, kw],
            num_slots,
            (dkc, dk),
            rope.as_ref(),
        );
        k.pending_rope.set(rope);
        return done;
    }
    for (cache, src, dc, ds, width) in [(&*k_cache, k, dkc, dk, kw), (&*v_cache, v, dvc, dv, vw)] {
        let threads = tokens.saturating_mul(width);
        u32_of(op, "elements", threads)?;
        u32_of(op, "cache elements", cache.numel())?;
        let kern = Kernel::new(Shader::Kv, "write_kv")
            .ty("C", dc)
            .ty("S", ds)
            .konst("WG", be.sizes().wg)
            .rw(1)
            .read(2)
            .read(3);
        let params = [
            tokens as u32,
            width as u32,
            num_slots,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        let bindings = [
            be.bind(op, 1, cache)?,
            be.bind(op, 2, src)?,
            be.bind(op, 3, slot_mapping)?,
        ];
        be.run(
            kern,
            &params,
            &bindings,
            be.grid_threads(op, threads, be.sizes().wg)?,
        )?;
    }
    Ok(())
}

/// The parameter words of a deferred rope applied by a reading kernel (`rope_on`, head_dim,
/// half, interleaved, per_token, scaling, 0, 0), all zero without one.
fn rope_words(r: Option<&PendingRope>) -> [u32; 8] {
    match r {
        Some(r) => [
            1,
            r.params[2],
            r.params[3],
            r.params[4],
            r.params[5],
            r.params[6],
            0,
            0,
        ],
        None => [0; 8],
    }
}

#[allow(clippy::too_many_arguments)]
fn write_kv_pair(
    be: &WgpuBackend,
    k_cache: &WgpuTensor,
    v_cache: &WgpuTensor,
    k: &WgpuTensor,
    v: &WgpuTensor,
    slot_mapping: &WgpuTensor,
    [tokens, kw]: [usize; 2],
    num_slots: u32,
    (dc, ds): (DType, DType),
    rope: Option<&PendingRope>,
) -> Result<()> {
    let op = Op::WriteKv;
    let threads = tokens.saturating_mul(kw);
    u32_of(op, "elements", threads)?;
    u32_of(op, "cache elements", k_cache.numel().max(v_cache.numel()))?;
    let kern = Kernel::new(Shader::Kv, "write_kv_pair")
        .ty("C", dc)
        .ty("S", ds)
        .konst("WG", be.sizes().wg)
        .rw(1)
        .read(2)
        .read(3)
        .rw(4)
        .read(5)
        .read(6)
        .read(7);
    let r = rope_words(rope);
    let params = [
        tokens as u32,
        kw as u32,
        num_slots,
        0,
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        0,
        0,
    ];
    let bindings = [
        be.bind(op, 1, k_cache)?,
        be.bind(op, 2, k)?,
        be.bind(op, 3, slot_mapping)?,
        be.bind(op, 4, v_cache)?,
        be.bind(op, 5, v)?,
        Binding::whole(6, rope.map_or(&be.dummy, |r| &**r.positions)),
        Binding::whole(7, rope.map_or(&be.dummy, |r| &**r.inv_freq)),
    ];
    be.run(
        kern,
        &params,
        &bindings,
        be.grid_threads(op, threads, be.sizes().wg)?,
    )
}

pub(super) fn paged_attention(
    be: &WgpuBackend,
    q: &WgpuTensor,
    k_cache: &WgpuTensor,
    v_cache: &WgpuTensor,
    meta: &AttentionMetadata<WgpuTensor>,
    p: &AttentionParams,
) -> Result<WgpuTensor> {
    let op = Op::PagedAttention;
    let f16 = be.f16_ok();
    let dq = float(op, q, f16)?;
    let dkv = float(op, k_cache, f16)?;
    if float(op, v_cache, f16)? != dkv {
        return Err(shape_err(
            op,
            format!("k_cache is {dkv} but v_cache is {}", v_cache.dtype),
        ));
    }
    for t in [&meta.query_start_loc, &meta.seq_lens, &meta.block_tables] {
        index(op, t)?;
    }
    let dims = check_shapes(q, k_cache, v_cache, meta, p).map_err(|d| shape_err(op, d))?;
    if let (Some(qsl), Some(seq_lens), Some(tables)) = (
        meta.query_start_loc.host_u32.get(),
        meta.seq_lens.host_u32.get(),
        meta.block_tables.host_u32.get(),
    ) {
        check_layout(&qsl, &seq_lens, &tables, meta, dims).map_err(|d| shape_err(op, d))?;
    }
    let (tokens, bs) = (dims.tokens, dims.block_size);
    u32_of(op, "cache elements", k_cache.numel())?;
    u32_of(op, "q elements", q.numel())?;
    let out = be.output(op, be.dtype, q.shape.clone())?;
    let rows = u32_of(op, "query rows x heads", tokens * p.num_heads)?;
    if rows == 0 {
        return Ok(out);
    }
    let wg = be.sizes().attn_wg;
    let hd4 = p.head_dim.div_ceil(4) as u32;
    if hd4 > wg {
        return Err(shape_err(
            op,
            format!(
                "head_dim {} needs workgroups of {} invocations (the adapter allows {wg})",
                p.head_dim, hd4
            ),
        ));
    }
    // Keys per chunk: the largest power of two whose scores and slots fit next to the rest
    // of the workgroup memory (q, value partials, the reduction buffer).
    let fixed = 16 * hd4 + 16 * wg + 4 * wg + 16;
    let free = be.sizes().wg_storage.saturating_sub(fixed) / 8;
    if free < 32 {
        return Err(shape_err(
            op,
            format!(
                "head_dim {}: too little workgroup memory for attention",
                p.head_dim
            ),
        ));
    }
    let ch = (1u32 << (31 - free.leading_zeros())).min(1024);
    let kern = Kernel::new(Shader::Attention, "paged_attention")
        .ty("Q", dq)
        .ty("KV", dkv)
        .ty("O", be.dtype)
        .konst("WG", wg)
        .konst("HD", p.head_dim as u32)
        .konst("HD4", hd4)
        .konst("CH", ch)
        .read(1)
        .read(2)
        .read(3)
        .read(4)
        .read(5)
        .read(6)
        .rw(7)
        .read(8)
        .read(9);
    // q's deferred rope is applied as q is loaded (when it rotates q's rows and heads).
    let rope = q.pending_rope.take();
    let fits =
        |r: &PendingRope| r.params[0] as usize == tokens && r.params[2] as usize == p.head_dim;
    if let Some(r) = rope.as_ref().filter(|r| !fits(r)) {
        super::ops::record_rope(be, &q.buffer, dq, r)?;
    }
    let rope = rope.filter(fits);
    let done = attend(
        be,
        kern,
        q,
        k_cache,
        v_cache,
        meta,
        &out,
        rope.as_ref(),
        [tokens as u32, bs as u32, rows],
        p,
    );
    q.pending_rope.set(rope);
    done?;
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn attend(
    be: &WgpuBackend,
    kern: Kernel,
    q: &WgpuTensor,
    k_cache: &WgpuTensor,
    v_cache: &WgpuTensor,
    meta: &AttentionMetadata<WgpuTensor>,
    out: &WgpuTensor,
    rope: Option<&PendingRope>,
    [tokens, bs, rows]: [u32; 3],
    p: &AttentionParams,
) -> Result<()> {
    let op = Op::PagedAttention;
    let r = rope_words(rope);
    let params = [
        tokens,
        p.num_heads as u32,
        (p.num_heads / p.num_kv_heads) as u32,
        p.head_dim as u32,
        u32_of(op, "num_seqs", meta.num_seqs)?,
        u32_of(op, "max_blocks_per_seq", meta.max_blocks_per_seq)?,
        bs,
        p.sliding_window
            .map_or(0, |w| w.min(u32::MAX as usize) as u32),
        bits(p.scale),
        bits(p.softcap.unwrap_or(0.0)),
        0,
        0,
        r[0],
        r[2],
        r[3],
        r[4],
        r[5],
        0,
        0,
        0,
    ];
    let bindings: [Binding<'_>; 9] = [
        be.bind(op, 1, q)?,
        be.bind(op, 2, k_cache)?,
        be.bind(op, 3, v_cache)?,
        be.bind(op, 4, &meta.query_start_loc)?,
        be.bind(op, 5, &meta.seq_lens)?,
        be.bind(op, 6, &meta.block_tables)?,
        be.bind(op, 7, out)?,
        Binding::whole(8, rope.map_or(&be.dummy, |r| &**r.positions)),
        Binding::whole(9, rope.map_or(&be.dummy, |r| &**r.inv_freq)),
    ];
    be.run(kern, &params, &bindings, be.grid_groups(op, rows)?)
}
