//! `norm_qkv_write_kv` on CUDA: a decode batch's input norm, q/k/v products, RoPE of q and k
//! and `write_kv` of k and v as ONE launch of the `gemv_norm_kv_m*` kernel (kernels/gemv.cu),
//! instead of the normed GEMV, then write_kv (which also rotated q). Each layer of a decode
//! step loses a launch and a dependent wait on the latency-bound q/k/v → attention chain.
//!
//! ```text
//! fused when: `TESSERA_CUDA_FUSE_QKV_KV` on (default), the normed GEMV takes the product
//!             (M within the fused cutover, norm foldable), q, k, v non-empty, the caches
//!             [blocks, block_size, n_k / n_v] of the activation dtype, slot_mapping u32 [M],
//!             RoPE (if any) as `rope` takes it with an even head_dim dividing q's and k's N
//! otherwise:  the trait's unfused body (norm_matmul_many, rope, rope, write_kv)
//! ```
//! The kernel rounds each sum as the product would store it before rotating, with the rope
//! kernel's formulas, so both paths give the same bits (tests/cuda_qkv_kv.rs).

use std::sync::atomic::Ordering;

use tessera_core::backend::{norm_qkv_write_kv_unfused, KvWrite, Normed, Op, Qkv, QkvOut, Result, RopeArgs, RopeStyle, Tensor as _};
use tessera_core::tensor::DType;

use super::device::Arg;
use super::gemv::LinearArgs;
use super::{CudaBackend, CudaTensor};

impl CudaBackend {
    /// One-launch `norm_qkv_write_kv`s queued so far by this backend.
    pub fn qkv_kv_launches(&self) -> u64 {
        self.qkv_kv_launches.load(Ordering::Relaxed)
    }

    pub(crate) fn op_norm_qkv_write_kv(
        &self,
        n: Normed<'_, CudaTensor>,
        qkv: Qkv<'_, CudaTensor>,
        rope: Option<RopeArgs<'_, CudaTensor>>,
        mut kv: KvWrite<'_, CudaTensor>,
    ) -> Result<QkvOut<CudaTensor>> {
        if self.fuse_qkv_kv.load(Ordering::Relaxed) {
            if let Some(r) = self.fused_qkv_kv(n, qkv, rope.as_ref(), &mut kv)? {
                return Ok(r);
            }
        }
        norm_qkv_write_kv_unfused(self, n, qkv, rope, kv)
    }

    /// The one-launch path, or `None` when it does not apply (module docs): the unfused body
    /// then runs and reports any bad shape itself.
    fn fused_qkv_kv(
        &self,
        n: Normed<'_, CudaTensor>,
        qkv: Qkv<'_, CudaTensor>,
        rope: Option<&RopeArgs<'_, CudaTensor>>,
        kv: &mut KvWrite<'_, CudaTensor>,
    ) -> Result<Option<QkvOut<CudaTensor>>> {
        let op = Op::WriteKv;
        let Ok(checked) = qkv.iter().map(|(w, b)| self.check_linear(n.x, w, *b)).collect::<Result<Vec<_>>>() else {
            return Ok(None);
        };
        let (dt, m, k) = (checked[0].0, checked[0].1, checked[0].2);
        let (nq, nk, nv) = (checked[0].3.n, checked[1].3.n, checked[2].3.n);
        if m == 0 || nq == 0 || nk == 0 || nv == 0 || !self.gemv_takes(m, nq, true) {
            return Ok(None);
        }
        let cache_ok = |c: &CudaTensor, width: usize| c.dtype == dt && c.shape.len() == 3 && c.shape[2] == width;
        let (kc, vc) = (&*kv.k_cache, &*kv.v_cache);
        let slots_ok = kv.slot_mapping.dtype == DType::U32 && kv.slot_mapping.shape == [m];
        if !(cache_ok(kc, nk) && cache_ok(vc, nv) && kc.shape[..2] == vc.shape[..2] && slots_ok) {
            return Ok(None);
        }
        // (`_freq`: the f32 frequencies, alive until the launch is queued.)
        let (rope_args, _freq) = match rope {
            Some(r) => match self.rope_kv_args(r, m, nq, nk)? {
                Some((a, f)) => (a, Some(f)),
                None => return Ok(None),
            },
            None => ([Arg::Ptr(0), Arg::Ptr(0), Arg::U32(0), Arg::U32(0), Arg::U32(0), Arg::U32(0), Arg::F32(1.0)], None),
        };
        let Some((norm, sum)) = self.norm_args(&n, dt, (m, k))? else { return Ok(None) };
        let (kc, vc) = (&mut *kv.k_cache, &mut *kv.v_cache);
        self.make_unique(op, kc)?;
        self.make_unique(op, vc)?;
        let num_slots = (kc.shape[0] as u64).saturating_mul(kc.shape[1] as u64);
        let mut args = vec![Arg::Ptr(kc.ptr), Arg::Ptr(vc.ptr), Arg::Ptr(kv.slot_mapping.ptr), Arg::U64(num_slots), Arg::Ptr(self.device.err_ptr)];
        args.extend(rope_args);
        self.prefetch.note_qkv(true);
        let mats: Vec<LinearArgs> = checked.into_iter().map(|c| c.3).collect();
        let outs = self.gemv_many(n.x, dt, (m, k), &mats, Some(&norm), Some(&args))?;
        self.qkv_kv_launches.fetch_add(1, Ordering::Relaxed);
        let [q, kt, v]: [CudaTensor; 3] = outs.try_into().map_err(|_| super::device::dev_err(op, "q/k/v GEMV: not 3 outputs"))?;
        Ok(Some(([q, kt, v], sum)))
    }

    /// The kernel's RoPE arguments (positions, f32 frequencies, head_dim, half, per_token,
    /// interleaved, scaling) and the frequencies' f32 tensor they point to, when `r` fits q
    /// `[m, nq]` and k `[m, nk]` as `rope` would take it and head_dim is even; else `None`.
    fn rope_kv_args(&self, r: &RopeArgs<'_, CudaTensor>, m: usize, nq: usize, nk: usize) -> Result<Option<([Arg; 7], CudaTensor)>> {
        let p = &r.params;
        let half = p.rotary_dim / 2;
        let freqs = r.inv_freq.numel();
        let fits = p.head_dim > 0
            && p.head_dim.is_multiple_of(2)
            && nq.is_multiple_of(p.head_dim)
            && nk.is_multiple_of(p.head_dim)
            && p.rotary_dim.is_multiple_of(2)
            && p.rotary_dim <= p.head_dim
            && (freqs == half || freqs == m * half)
            && r.positions.dtype == DType::U32
            && r.positions.shape == [m]
            && matches!(r.inv_freq.dtype, DType::F32 | DType::F16 | DType::BF16);
        if !fits {
            return Ok(None);
        }
        let freq = self.as_f32(Op::Rope, r.inv_freq)?;
        let args = [
            Arg::Ptr(r.positions.ptr),
            Arg::Ptr(freq.ptr),
            Arg::U32(p.head_dim as u32),
            Arg::U32(half as u32),
            Arg::U32((freqs != half) as u32),
            Arg::U32((p.style == RopeStyle::Interleaved) as u32),
            Arg::F32(p.attention_scaling),
        ];
        Ok(Some((args, freq)))
    }
}
