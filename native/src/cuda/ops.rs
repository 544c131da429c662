//! The row-wise and elementwise ops of the CUDA backend: argument checks (the same errors as
//! the CPU backend: `Unsupported` for dtypes, `Shape` for shapes) and the launches of
//! kernels/{embedding,rms_norm,rope,act,elementwise}.cu, plus matmul (cuBLAS + bias kernel; the
//! GEMV kernels of gemv.rs for small M).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cudarc::driver::LaunchConfig;
use tessera_core::backend::{Activation, BackendError, Op, Result, RopeParams, RopeStyle, Tensor};
use tessera_core::tensor::DType;

use super::device::Arg;
use super::tensor::{suffix, vec_elems, Deferred, PendingRope};
use super::{shape_err, CudaBackend, CudaTensor, NAME};

/// A float tensor (f32/f16/bf16), or `Unsupported` naming its dtype.
pub(crate) fn float(op: Op, t: &CudaTensor) -> Result<DType> {
    match suffix(t.dtype) {
        Some(_) => Ok(t.dtype),
        None => Err(BackendError::Unsupported { op, dtype: t.dtype, backend: NAME }),
    }
}

pub(crate) fn u32s(op: Op, t: &CudaTensor) -> Result<()> {
    if t.dtype == DType::U32 {
        Ok(())
    } else {
        Err(BackendError::Unsupported { op, dtype: t.dtype, backend: NAME })
    }
}

/// Two tensors of one float dtype.
fn same_float(op: Op, a: &CudaTensor, b: &CudaTensor) -> Result<DType> {
    let d = float(op, a)?;
    if float(op, b)? != d {
        return Err(shape_err(op, format!("dtypes differ: {} {:?} and {} {:?}", a.dtype, a.shape, b.dtype, b.shape)));
    }
    Ok(d)
}

pub(crate) fn dims2(op: Op, what: &str, t: &CudaTensor) -> Result<(usize, usize)> {
    match t.shape[..] {
        [r, c] => Ok((r, c)),
        _ => Err(shape_err(op, format!("{what} must be rank 2, got shape {:?}", t.shape))),
    }
}

pub(crate) fn dims1(op: Op, what: &str, t: &CudaTensor) -> Result<usize> {
    match t.shape[..] {
        [n] => Ok(n),
        _ => Err(shape_err(op, format!("{what} must be rank 1, got shape {:?}", t.shape))),
    }
}

/// `v` as a u32 kernel argument, or a shape error.
pub(crate) fn u32_arg(op: Op, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| shape_err(op, format!("{what} = {v} exceeds 32 bits")))
}

/// Whether `len` elements of `dtype` are a whole number of 16-byte vectors.
pub(crate) fn vec_ok(dtype: DType, len: usize) -> u32 {
    len.is_multiple_of(vec_elems(dtype)) as u32
}

pub(crate) fn rows_cfg(rows: usize, threads: u32) -> LaunchConfig {
    LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
}

/// A tensor write_kv rotates in place beside k (`CudaBackend::companion_rope`): its buffer is
/// held until the launch is queued.
pub(crate) struct Companion {
    _buf: Arc<cudarc::driver::CudaSlice<u8>>,
    pub ptr: u64,
    /// Row width (n * head_dim).
    pub width: usize,
    pub rope: Arc<PendingRope>,
}

impl CudaBackend {
    pub(crate) fn op_embedding(&self, table: &CudaTensor, ids: &CudaTensor, scale: f32) -> Result<CudaTensor> {
        let op = Op::Embedding;
        let dt = float(op, table)?;
        u32s(op, ids)?;
        let (vocab, hidden) = dims2(op, "table", table)?;
        let tokens = dims1(op, "ids", ids)?;
        let out = self.empty(op, dt, &[tokens, hidden])?;
        if tokens == 0 || hidden == 0 {
            return Ok(out);
        }
        let f = self.func(op, "embedding", "embedding", dt)?;
        let args = [
            Arg::Ptr(table.ptr),
            Arg::Ptr(ids.ptr),
            Arg::Ptr(out.ptr),
            Arg::U32(u32_arg(op, "hidden", hidden)?),
            Arg::U32(u32_arg(op, "vocab", vocab)?),
            Arg::F32(scale),
            Arg::U32(vec_ok(dt, hidden)),
            Arg::Ptr(self.device.err_ptr),
        ];
        self.launch(op, &f, rows_cfg(u32_arg(op, "tokens", tokens)? as usize, 128), &args)?;
        Ok(out)
    }

    pub(crate) fn op_matmul(&self, x: &CudaTensor, w: &CudaTensor, bias: Option<&CudaTensor>) -> Result<CudaTensor> {
        let op = Op::Matmul;
        let (dt, m, k, lin) = self.check_linear(x, w, bias)?;
        if self.gemv_takes(m, lin.n, false) {
            let mut out = self.gemv_many(x, dt, (m, k), std::slice::from_ref(&lin), None, None)?;
            return out.pop().ok_or_else(|| shape_err(op, "GEMV returned no output"));
        }
        let (n, bias) = (lin.n, lin.bias);
        let out = self.empty(op, dt, &[m, n])?;
        if m == 0 || n == 0 {
            return Ok(out);
        }
        if k == 0 {
            self.device.memset(op, out.ptr, 0, out.bytes())?;
        } else {
            self.device.bind(op)?;
            let t0 = self.device.profile_start(op)?;
            self.blas.gemm_xwt(dt, m, n, k, x.ptr, w.ptr, out.ptr)?;
            if t0.is_some() {
                let shape = if m == 1 { "m=1".to_string() } else if m <= 64 { "m<=64".into() } else { "m>64".into() };
                self.device.profile_end(op, &format!("cublas_gemm_{}_n{n}_k{k}_{shape}", suffix(dt).unwrap_or("?")), t0)?;
            }
            if self.sync_launches.load(std::sync::atomic::Ordering::Relaxed) {
                self.device.synchronize()?;
            }
        }
        if let Some(b) = bias {
            let f = self.func(op, "elementwise", "bias_add", dt)?;
            let total = (m * n) as u64;
            self.launch(op, &f, self.grid_for(total), &[Arg::Ptr(out.ptr), Arg::Ptr(b.ptr), Arg::U64(total), Arg::U32(u32_arg(op, "N", n)?)])?;
        }
        Ok(out)
    }

    pub(crate) fn op_add(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        let op = Op::Add;
        let dt = same_float(op, a, b)?;
        if a.shape != b.shape {
            return Err(shape_err(op, format!("a {:?} and b {:?} differ", a.shape, b.shape)));
        }
        let out = self.empty(op, dt, &a.shape)?;
        let n = a.numel();
        if n == 0 {
            return Ok(out);
        }
        let f = self.func(op, "elementwise", "add", dt)?;
        let items = if vec_ok(dt, n) == 1 { n / vec_elems(dt) } else { n };
        let args = [Arg::Ptr(a.ptr), Arg::Ptr(b.ptr), Arg::Ptr(out.ptr), Arg::U64(n as u64), Arg::U32(vec_ok(dt, n))];
        self.launch(op, &f, self.grid_for(items as u64), &args)?;
        Ok(out)
    }

    /// RMSNorm, or with `residual` the fused add + RMSNorm returning `(normed, sum)`.
    pub(crate) fn op_rms_norm(
        &self,
        op: Op,
        x: &CudaTensor,
        residual: Option<&CudaTensor>,
        weight: &CudaTensor,
        eps: f32,
        offset: f32,
    ) -> Result<(CudaTensor, Option<CudaTensor>)> {
        let dt = float(op, x)?;
        float(op, weight)?;
        if let Some(r) = residual {
            same_float(op, x, r)?;
            if r.shape != x.shape {
                return Err(shape_err(op, format!("x {:?} and residual {:?} differ", x.shape, r.shape)));
            }
        }
        let group = weight.numel();
        if group == 0 || x.numel() % group != 0 {
            return Err(shape_err(op, format!("x {:?} does not split into groups of weight {:?}", x.shape, weight.shape)));
        }
        let w = self.as_f32(op, weight)?;
        let out = self.empty(op, dt, &x.shape)?;
        let sum = match residual {
            Some(_) => Some(self.empty(op, dt, &x.shape)?),
            None => None,
        };
        let rows = x.numel() / group;
        if rows == 0 {
            return Ok((out, sum));
        }
        let (res_ptr, sum_ptr) = match (residual, &sum) {
            (Some(r), Some(s)) => (r.ptr, s.ptr),
            _ => (0, 0),
        };
        let group32 = u32_arg(op, "group", group)?;
        let vok = vec_ok(dt, group);
        if group <= 1024 {
            let f = self.func(op, "rms_norm", "rms_norm_warp", dt)?;
            let cfg = rows_cfg(u32_arg(op, "row blocks", rows.div_ceil(8))? as usize, 256);
            let args = [
                Arg::Ptr(x.ptr),
                Arg::Ptr(res_ptr),
                Arg::Ptr(w.ptr),
                Arg::Ptr(out.ptr),
                Arg::Ptr(sum_ptr),
                Arg::U32(u32_arg(op, "rows", rows)?),
                Arg::U32(group32),
                Arg::F32(eps),
                Arg::F32(offset),
                Arg::U32(vok),
            ];
            self.launch(op, &f, cfg, &args)?;
        } else {
            let f = self.func(op, "rms_norm", "rms_norm_block", dt)?;
            let cfg = rows_cfg(u32_arg(op, "rows", rows)? as usize, if group >= 8192 { 1024 } else { 256 });
            let args = [
                Arg::Ptr(x.ptr),
                Arg::Ptr(res_ptr),
                Arg::Ptr(w.ptr),
                Arg::Ptr(out.ptr),
                Arg::Ptr(sum_ptr),
                Arg::U32(group32),
                Arg::F32(eps),
                Arg::F32(offset),
                Arg::U32(vok),
            ];
            self.launch(op, &f, cfg, &args)?;
        }
        Ok((out, sum))
    }

    pub(crate) fn op_rope(&self, x: &mut CudaTensor, positions: &CudaTensor, inv_freq: &CudaTensor, p: RopeParams) -> Result<()> {
        let op = Op::Rope;
        float(op, x)?;
        u32s(op, positions)?;
        float(op, inv_freq)?;
        let (tokens, width) = dims2(op, "x", x)?;
        let half = p.rotary_dim / 2;
        let freqs = inv_freq.numel();
        let bad = p.head_dim == 0
            || width % p.head_dim != 0
            || p.rotary_dim % 2 == 1
            || p.rotary_dim > p.head_dim
            || (freqs != half && freqs != tokens * half)
            || positions.numel() != tokens
            || positions.shape.len() != 1;
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
        if tokens == 0 || half == 0 {
            return Ok(());
        }
        let freq = self.as_f32(op, inv_freq)?;
        // A rotation still pending on x goes in first; then x gets its own buffer.
        self.settle(x)?;
        self.make_unique(op, x)?;
        let r = PendingRope {
            positions: positions.clone(),
            inv_freq: freq,
            head_dim: p.head_dim,
            half,
            per_token: freqs != half,
            interleaved: p.style == RopeStyle::Interleaved,
            scaling: p.attention_scaling,
            applied: AtomicBool::new(false),
        };
        if self.fuse_rope.load(Ordering::Relaxed) {
            // Deferred: write_kv applies it (to k as it writes the cache, to q in the same
            // launch); other readers settle it.
            let r = Arc::new(r);
            x.rope = Some(r.clone());
            if let Ok(mut list) = self.deferred.lock() {
                list.retain(|d| d.rope.is_pending() && d.buf.strong_count() > 0);
                if list.len() >= 8 {
                    list.remove(0);
                }
                list.push(Deferred { buf: Arc::downgrade(&x.buf), ptr: x.ptr, shape: x.shape.clone(), dtype: x.dtype, rope: r });
            }
            return Ok(());
        }
        self.launch_rope(x, &r)
    }

    /// Applies `t`'s deferred rope in place now (one launch), for a reader that does not fuse
    /// it; every clone of `t` shares the buffer and sees it applied. No-op without one.
    pub(crate) fn settle(&self, t: &CudaTensor) -> Result<()> {
        match t.rope.as_deref() {
            Some(r) if !r.applied.swap(true, Ordering::AcqRel) => self.launch_rope(t, r),
            _ => Ok(()),
        }
    }

    /// The rope kernel over `x` `[T, width]` in place (checked by `op_rope`).
    fn launch_rope(&self, x: &CudaTensor, r: &PendingRope) -> Result<()> {
        let op = Op::Rope;
        let (tokens, width) = dims2(op, "x", x)?;
        let f = self.func(op, "rope", "rope", x.dtype)?;
        let total = (tokens * (width / r.head_dim) * r.half) as u64;
        let args = [
            Arg::Ptr(x.ptr),
            Arg::Ptr(r.positions.ptr),
            Arg::Ptr(r.inv_freq.ptr),
            Arg::U32(u32_arg(op, "tokens", tokens)?),
            Arg::U32(u32_arg(op, "width", width)?),
            Arg::U32(u32_arg(op, "head_dim", r.head_dim)?),
            Arg::U32(r.half as u32),
            Arg::U32(r.per_token as u32),
            Arg::U32(r.interleaved as u32),
            Arg::F32(r.scaling),
        ];
        self.launch(op, &f, self.grid_for(total), &args)
    }

    /// Drops the remembered deferred tensors (their ropes stay pending on the tensors).
    pub(crate) fn forget_deferred(&self) {
        if let Ok(mut list) = self.deferred.lock() {
            list.clear();
        }
    }

    /// The latest other live tensor whose rope is still pending with the same positions
    /// tensor as `r` and `tokens` rows (the layer's q when `r` is k's): write_kv rotates it
    /// in place in its own launch. Marked applied here; the returned `Companion` holds the
    /// buffer until the caller has queued that launch.
    pub(crate) fn companion_rope(&self, r: &PendingRope, k_ptr: u64, tokens: usize, dtype: DType) -> Option<Companion> {
        let list = self.deferred.lock().ok()?;
        for d in list.iter().rev() {
            let fits = d.ptr != k_ptr
                && d.dtype == dtype
                && d.rope.is_pending()
                && d.rope.positions.ptr == r.positions.ptr
                && d.shape.len() == 2
                && d.shape[0] == tokens
                && d.rope.head_dim > 0
                && d.shape[1] % d.rope.head_dim == 0;
            if !fits {
                continue;
            }
            let Some(buf) = d.buf.upgrade() else { continue };
            if d.rope.applied.swap(true, Ordering::AcqRel) {
                continue;
            }
            return Some(Companion { _buf: buf, ptr: d.ptr, width: d.shape[1], rope: d.rope.clone() });
        }
        None
    }

    /// The kernel arguments of `t`'s pending rope for a fused reader whose rows are
    /// `[tokens, n * head_dim]`: (positions, inv_freq, head_dim, half, per_token,
    /// interleaved, scaling); all zero without one. A rope that does not fit that shape is
    /// settled here instead.
    pub(crate) fn rope_args(&self, t: &CudaTensor, tokens: usize) -> Result<[Arg; 7]> {
        let none = [Arg::Ptr(0), Arg::Ptr(0), Arg::U32(0), Arg::U32(0), Arg::U32(0), Arg::U32(0), Arg::F32(1.0)];
        let Some(r) = t.pending_rope() else { return Ok(none) };
        let width = t.shape.get(1).copied().unwrap_or(0);
        let fits = r.positions.numel() == tokens
            && t.shape.len() == 2
            && r.head_dim > 0
            && width % r.head_dim == 0;
        if !fits {
            self.settle(t)?;
            return Ok(none);
        }
        Ok([
            Arg::Ptr(r.positions.ptr),
            Arg::Ptr(r.inv_freq.ptr),
            Arg::U32(r.head_dim as u32),
            Arg::U32(r.half as u32),
            Arg::U32(r.per_token as u32),
            Arg::U32(r.interleaved as u32),
            Arg::F32(r.scaling),
        ])
    }

    pub(crate) fn op_act_mul(&self, gate: &CudaTensor, up: &CudaTensor, act: Activation) -> Result<CudaTensor> {
        let op = Op::ActMul;
        let dt = same_float(op, gate, up)?;
        if gate.shape != up.shape {
            return Err(shape_err(op, format!("gate {:?} and up {:?} differ", gate.shape, up.shape)));
        }
        let out = self.empty(op, dt, &gate.shape)?;
        let n = gate.numel();
        if n == 0 {
            return Ok(out);
        }
        let code = match act {
            Activation::Silu => 0u32,
            Activation::GeluTanh => 1,
            Activation::Gelu => 2,
        };
        let f = self.func(op, "act", "act_mul", dt)?;
        let vok = vec_ok(dt, n);
        let items = if vok == 1 { n / vec_elems(dt) } else { n };
        let args = [Arg::Ptr(gate.ptr), Arg::Ptr(up.ptr), Arg::Ptr(out.ptr), Arg::U64(n as u64), Arg::U32(code), Arg::U32(vok)];
        self.launch(op, &f, self.grid_for(items as u64), &args)?;
        Ok(out)
    }

    pub(crate) fn op_gather_rows(&self, x: &CudaTensor, indices: &CudaTensor) -> Result<CudaTensor> {
        let op = Op::GatherRows;
        let dt = float(op, x)?;
        u32s(op, indices)?;
        let (rows, cols) = dims2(op, "x", x)?;
        let count = dims1(op, "indices", indices)?;
        let out = self.empty(op, dt, &[count, cols])?;
        if count == 0 || cols == 0 {
            return Ok(out);
        }
        let f = self.func(op, "elementwise", "gather_rows", dt)?;
        // Wide rows (logits) in spans of >= 4096 columns, one block each; spans whole vectors.
        let vok = vec_ok(dt, cols);
        let spans = cols.div_ceil(4096).clamp(1, 64);
        let spans = if vok == 1 { spans.min(cols / vec_elems(dt)).max(1) } else { spans };
        let span = cols.div_ceil(spans);
        let span = if vok == 1 { span.next_multiple_of(vec_elems(dt)) } else { span };
        let spans = cols.div_ceil(span);
        let args = [
            Arg::Ptr(x.ptr),
            Arg::Ptr(indices.ptr),
            Arg::Ptr(out.ptr),
            Arg::U32(u32_arg(op, "rows", rows)?),
            Arg::U32(u32_arg(op, "cols", cols)?),
            Arg::U32(vok),
            Arg::Ptr(self.device.err_ptr),
        ];
        let cfg = LaunchConfig { grid_dim: (u32_arg(op, "indices", count)?, spans as u32, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
        self.launch(op, &f, cfg, &args)?;
        Ok(out)
    }

    pub(crate) fn op_scatter_ids(&self, dst: &CudaTensor, src: &CudaTensor, pairs: &CudaTensor) -> Result<()> {
        let op = Op::ScatterIds;
        for t in [dst, src, pairs] {
            u32s(op, t)?;
        }
        if pairs.numel() % 2 != 0 {
            return Err(shape_err(op, format!("pairs {:?} is not [P, 2]", pairs.shape)));
        }
        let n = pairs.numel() / 2;
        if n == 0 {
            return Ok(());
        }
        let f = (self.kernels.function("elementwise", "scatter_ids_u32")?, "scatter_ids_u32".to_string());
        let args = [
            Arg::Ptr(dst.ptr),
            Arg::Ptr(src.ptr),
            Arg::Ptr(pairs.ptr),
            Arg::U32(u32_arg(op, "pairs", n)?),
            Arg::U32(u32_arg(op, "dst", dst.numel())?),
            Arg::U32(u32_arg(op, "src", src.numel())?),
        ];
        self.launch(op, &f, self.grid_for(n as u64), &args)
    }

    pub(crate) fn op_softcap(&self, x: &CudaTensor, cap: f32) -> Result<CudaTensor> {
        let op = Op::Softcap;
        let dt = float(op, x)?;
        if !(cap.is_finite() && cap > 0.0) {
            return Err(shape_err(op, format!("cap must be finite and > 0, got {cap}")));
        }
        let out = self.empty(op, dt, &x.shape)?;
        let n = x.numel() as u64;
        if n == 0 {
            return Ok(out);
        }
        let f = self.func(op, "elementwise", "softcap", dt)?;
        self.launch(op, &f, self.grid_for(n), &[Arg::Ptr(x.ptr), Arg::Ptr(out.ptr), Arg::U64(n), Arg::F32(cap)])?;
        Ok(out)
    }
}
