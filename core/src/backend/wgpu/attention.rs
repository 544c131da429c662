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
//!
//! The pair path of `write_kv` is itself deferred (`PendingKv`, held by the backend): a
//! `paged_attention` of decode rows (q_len 1) on those caches right after it does the write
//! in its own dispatch (`attention.wgsl`, FKV); any other command records it first
//! (`WgpuBackend::settle_kv`). `TESSERA_WGPU_FUSE_KV=0` records it at once.
//!
//! Key splits (`attention_merge.wgsl`): when rows x heads are fewer than ~128 workgroups
//! (decode of small batches), each (row, head) runs as up to `Sizes::attn_splits` workgroups
//! over ranges of >= 32 keys, then `attention_merge` combines their partial softmax sums.
//! The split count depends on rows only, so a decode-step graph serves every context. The
//! merge itself is deferred on the output (`PendingMerge`): the decode matvec that reads it
//! next (o_proj) merges while staging its input row (`matmul::run_rows`, `merge_matmul.wgsl`),
//! any other reader records it first; `TESSERA_WGPU_FUSE_MERGE=0` records it at once.

use std::sync::Arc;

use super::encoder::Binding;
use super::kernels::{Kernel, Shader};
use super::prefetch::Prefetch;
use super::tensor::{device_err, float, index, shape_err, u32_of, DeviceBuffer, PendingMerge, PendingRope, WgpuTensor};
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
        // Both caches in one dispatch, applying k's deferred rope as it is read; deferred
        // into the next paged_attention where it can.
        let rope = k.pending_rope.take();
        let checked = (|| {
            u32_of(op, "elements", tokens.saturating_mul(kw))?;
            u32_of(op, "cache elements", k_cache.numel().max(v_cache.numel()))?;
            for (i, t) in [&*k_cache, k, slot_mapping, &*v_cache, v].into_iter().enumerate() {
                be.bind(op, i as u32 + 1, t)?;
            }
            Ok(())
        })();
        k.pending_rope.set(rope.clone());
        checked?;
        let pk = PendingKv {
            k_cache: k_cache.buffer.clone(),
            v_cache: v_cache.buffer.clone(),
            k: k.buffer.clone(),
            v: v.buffer.clone(),
            slots: slot_mapping.buffer.clone(),
            rope,
            tokens,
            kw,
            num_slots,
            dc: dkc,
            ds: dk,
        };
        return be.defer_kv(pk);
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

/// A `write_kv_pair` dispatch not recorded yet (see the module doc): its inputs (kept
/// alive, so no pooled buffer is reused before it runs) and sizes, checked by `write_kv`.
pub(super) struct PendingKv {
    k_cache: Arc<DeviceBuffer>,
    v_cache: Arc<DeviceBuffer>,
    k: Arc<DeviceBuffer>,
    v: Arc<DeviceBuffer>,
    slots: Arc<DeviceBuffer>,
    rope: Option<PendingRope>,
    tokens: usize,
    kw: usize,
    num_slots: u32,
    /// Cache and source dtypes.
    dc: DType,
    ds: DType,
}

/// Records `pk` as its own `write_kv_pair` dispatch.
pub(super) fn record_kv(be: &WgpuBackend, pk: &PendingKv) -> Result<()> {
    let op = Op::WriteKv;
    let kern = Kernel::new(Shader::Kv, "write_kv_pair")
        .ty("C", pk.dc)
        .ty("S", pk.ds)
        .konst("WG", be.sizes().wg)
        .rw(1)
        .read(2)
        .read(3)
        .rw(4)
        .read(5)
        .read(6)
        .read(7);
    let r = rope_words(pk.rope.as_ref());
    let params = [pk.tokens as u32, pk.kw as u32, pk.num_slots, 0, r[0], r[1], r[2], r[3], r[4], r[5], 0, 0];
    let bindings = [
        Binding::whole(1, &pk.k_cache),
        Binding::whole(2, &pk.k),
        Binding::whole(3, &pk.slots),
        Binding::whole(4, &pk.v_cache),
        Binding::whole(5, &pk.v),
        Binding::whole(6, pk.rope.as_ref().map_or(&be.dummy, |r| &**r.positions)),
        Binding::whole(7, pk.rope.as_ref().map_or(&be.dummy, |r| &**r.inv_freq)),
    ];
    be.run(kern, &params, &bindings, be.grid_threads(op, pk.tokens * pk.kw, be.sizes().wg)?)
}

/// Whether two deferred ropes rotate the same way (q's and k's of one layer).
fn same_rope(a: &PendingRope, b: &PendingRope) -> bool {
    a.params[2..7] == b.params[2..7] && Arc::ptr_eq(&a.positions, &b.positions) && Arc::ptr_eq(&a.inv_freq, &b.inv_freq)
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
    let rows = u32_of(op, "query rows x heads", tokens * p.num_heads)?;
    if rows == 0 {
        return be.output(op, be.dtype, q.shape.clone());
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
    // The write_kv just before, if any: done by this dispatch or recorded now (taken before
    // the output's poison fill, which would record it).
    let pending = be.take_kv();
    let out = match be.output(op, be.dtype, q.shape.clone()) {
        Ok(out) => out,
        Err(e) => {
            if let Some(pk) = &pending {
                record_kv(be, pk)?;
            }
            return Err(e);
        }
    };
    // q's deferred rope is applied as q is loaded (when it rotates q's rows and heads).
    let rope = q.pending_rope.take();
    let fits = |r: &PendingRope| r.params[0] as usize == tokens && r.params[2] as usize == p.head_dim;
    let q_rope = rope.as_ref().filter(|r| fits(r));
    // Decode rows: each row's last key is its own new K/V, which the pending write holds.
    let fused = pending.as_ref().filter(|pk| {
        Arc::ptr_eq(&pk.k_cache, &k_cache.buffer)
            && Arc::ptr_eq(&pk.v_cache, &v_cache.buffer)
            && meta.max_query_len <= 1
            && pk.tokens == tokens
            && pk.kw == p.num_kv_heads * p.head_dim
            && pk.dc == dkv
            && pk.rope.as_ref().is_none_or(|kr| fits(kr) && q_rope.is_some_and(|qr| same_rope(kr, qr)))
            && free >= 32 + 4 * hd4
            && be.sizes().storage_buffers >= 12
    });
    if let (None, Some(pk)) = (fused, &pending) {
        if let Err(e) = record_kv(be, pk) {
            q.pending_rope.set(rope);
            return Err(e);
        }
    }
    let free = if fused.is_some() { free - 4 * hd4 } else { free };
    let ch = (1u32 << (31 - free.leading_zeros())).min(1024);
    let early_kv = be.early_kv && hd4 <= 32;
    // The split kernel binds the partials too (binding 13).
    let splits = if be.sizes().storage_buffers > if fused.is_some() { 12 } else { 9 } { key_splits(be, rows) } else { 1 };
    let mut kern = Kernel::new(Shader::Attention, "paged_attention")
        .ty("Q", dq)
        .ty("KV", dkv)
        .ty("O", be.dtype)
        .konst("WG", wg)
        .konst("HD", p.head_dim as u32)
        .konst("HD4", hd4)
        .konst("CH", ch)
        .konst("SG", if be.sizes().subgroup <= wg { be.sizes().subgroup } else { 0 })
        .konst("FKV", u32::from(fused.is_some()))
        .konst("SPLITS", splits)
        .konst("MIN_SPLIT_KEYS", MIN_SPLIT_KEYS)
        // The first chunk's K rows and V vectors loaded before q's barrier (attention.wgsl):
        // a K row a thread in registers, so head_dim <= 128 only.
        .konst("EK", u32::from(early_kv))
        .konst("EKN", if early_kv { hd4 } else { 1 });
    kern = match fused {
        Some(pk) => kern.ty("S", pk.ds).read(1).rw(2).rw(3),
        None => kern.read(1).read(2).read(3),
    };
    kern = kern.read(4).read(5).read(6).rw(7).read(8).read(9);
    if fused.is_some() {
        kern = kern.read(10).read(11).read(12);
    }
    if splits > 1 {
        kern = kern.rw(13);
    }
    // The weights the op before named: read into L2 by extra workgroups of a decode step's
    // attention (bindings past the 13 it may have).
    let pf = Prefetch::take(be, fused.is_some(), 13)?;
    let done = (|| {
        if let Some(r) = rope.as_ref().filter(|r| !fits(r)) {
            super::ops::record_rope(be, &q.buffer, dq, r)?;
        }
        attend(be, kern, q, (k_cache, v_cache), meta, &out, q_rope, fused, pf.as_ref(), [tokens as u32, bs as u32, rows], p)
    })();
    let rope = rope.filter(fits);
    q.pending_rope.set(rope);
    done?;
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn attend(
    be: &WgpuBackend,
    kern: Kernel,
    q: &WgpuTensor,
    (k_cache, v_cache): (&WgpuTensor, &WgpuTensor),
    meta: &AttentionMetadata<WgpuTensor>,
    out: &WgpuTensor,
    rope: Option<&PendingRope>,
    fused: Option<&PendingKv>,
    pf: Option<&Prefetch>,
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
        fused.map_or(0, |pk| pk.num_slots),
        u32::from(fused.is_some_and(|pk| pk.rope.is_some())),
        r[0],
        r[2],
        r[3],
        r[4],
        r[5],
        // pf_base: the attention's own workgroups come first.
        rows.saturating_mul(kern.konst_value("SPLITS").max(1)),
        0,
        0,
    ];
    let mut bindings = vec![
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
    if let Some(pk) = fused {
        bindings.push(Binding::whole(10, &pk.k));
        bindings.push(Binding::whole(11, &pk.v));
        bindings.push(Binding::whole(12, &pk.slots));
    }
    let splits = kern.konst_value("SPLITS");
    let (run_kern, extra) = match pf {
        Some(pf) => {
            pf.bindings(be, &mut bindings);
            (pf.kernel(kern.clone()), pf.workgroups())
        }
        None => (kern.clone(), 0),
    };
    if splits <= 1 {
        return be.run(run_kern, &params, &bindings, be.grid_groups(op, rows + extra)?);
    }
    // Key splits: partial results (m, l, -, -, HD sums) per (row, head, split), then the merge.
    let stride = 4 + 4 * p.head_dim.div_ceil(4);
    let part = be.output(op, DType::F32, vec![rows as usize * splits as usize * stride])?;
    bindings.push(be.bind(op, 13, &part)?);
    let groups = be.grid_groups(op, u32_of(op, "attention workgroups", rows as usize * splits as usize + extra as usize)?)?;
    be.run(run_kern, &params, &bindings, groups)?;
    let merge = kern.entry_point("attention_merge").layout_only(&[(7, true), (13, true)]);
    let pm = PendingMerge {
        kern: merge,
        params: params.to_vec(),
        part: part.buffer.clone(),
        tokens: tokens as usize,
        heads: p.num_heads as u32,
        head_dim: p.head_dim as u32,
        splits,
        pstride: stride as u32,
    };
    if be.fuse_merge {
        // Deferred: the decode matvec reading `out` next merges as it stages its row.
        out.pending_merge.set(Some(pm));
        return Ok(());
    }
    record_merge(be, out, &pm)
}

/// Records `m`, the `attention_merge` that completes `out`, as its own dispatch.
pub(super) fn record_merge(be: &WgpuBackend, out: &WgpuTensor, m: &PendingMerge) -> Result<()> {
    let op = Op::PagedAttention;
    let rows = u32_of(op, "query rows x heads", m.tokens * m.heads as usize)?;
    let bindings = [Binding::whole(7, &out.buffer), Binding::whole(13, &m.part)];
    be.run(m.kern.clone(), &m.params, &bindings, be.grid_groups(op, rows)?)
}

/// Fewest keys a split of paged attention gets (`attention_merge.wgsl`).
const MIN_SPLIT_KEYS: u32 = 32;

/// Workgroups per (row, head) of paged attention: enough to give the GPU ~128 workgroups
/// when the rows x heads are fewer (decode of small batches), at most `Sizes::attn_splits`.
fn key_splits(be: &WgpuBackend, rows: u32) -> u32 {
    let want = 128u32.div_ceil(rows.max(1));
    want.min(be.sizes().attn_splits).max(1)
}

/// The write_kv deferred into the decode attention that reads its caches next.
impl WgpuBackend {
    /// Submits the recorded work without waiting for it.
    pub fn flush(&self) -> Result<()> {
        self.settle_kv()?;
        self.recorder.flush(&self.gpu)?;
        self.gpu.errors.check("device error")
    }

    /// Defers `pk` (recorded at once with `TESSERA_WGPU_FUSE_KV=0`), after recording an
    /// earlier pending one.
    pub(super) fn defer_kv(&self, pk: PendingKv) -> Result<()> {
        self.settle_kv()?;
        if !self.fuse_kv {
            return record_kv(self, &pk);
        }
        *self.pending_kv.lock().map_err(|_| device_err("pending write_kv poisoned"))? = Some(pk);
        Ok(())
    }

    /// The deferred `write_kv`, now the caller's to run.
    pub(super) fn take_kv(&self) -> Option<PendingKv> {
        self.pending_kv.lock().ok()?.take()
    }

    /// Records the deferred `write_kv`, if any: before every other command.
    pub(super) fn settle_kv(&self) -> Result<()> {
        match self.take_kv() {
            Some(pk) => record_kv(self, &pk),
            None => Ok(()),
        }
    }
}
