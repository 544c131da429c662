//! The compute trait every device implements, and the CPU reference backend.
//!
//! The trait is op-level and narrow: models are written once against it. Tensors are
//! row-major; "rows" ops work on the last dimension, so per-head ops (q/k norm, RoPE) run on
//! `[tokens, heads * head_dim]` without reshapes. Only reading back to the host is async
//! (WebGPU requires it); native callers use `pollster::block_on`.
//!
//! Composite ops (`add_rms_norm`, `matmul_many`, `gated_matmul`, `norm_matmul_many`,
//! `norm_gated_matmul`, `norm_qkv_write_kv`) have default bodies built from primitives so a
//! new backend works before it is fast; backends override them with fused kernels.

pub mod attention_checks;
pub mod cpu;
#[cfg(feature = "wgpu")]
pub mod wgpu;

use crate::tensor::{DType, HostTensor};

/// The ops of the trait, for `supports` and for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Upload,
    Embedding,
    Matmul,
    Add,
    RmsNorm,
    AddRmsNorm,
    Rope,
    ActMul,
    WriteKv,
    PagedAttention,
    GatherRows,
    Softcap,
    Argmax,
    ScatterIds,
    ToHost,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("op {op:?} is not supported for dtype {dtype} on the {backend} backend")]
    Unsupported { op: Op, dtype: DType, backend: &'static str },
    #[error("op {op:?}: {detail}")]
    Shape { op: Op, detail: String },
    #[error("{backend} backend: {message}")]
    Device { backend: &'static str, message: String },
}

pub type Result<T> = std::result::Result<T, BackendError>;

/// Activation of gated MLPs: `act(gate) * up`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `silu` (a.k.a. swish).
    Silu,
    /// `gelu_pytorch_tanh` / `gelu_new`: the tanh approximation.
    GeluTanh,
    /// `gelu`: the exact erf form.
    Gelu,
}

/// How RoPE pairs the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// HF `rotate_half`: dim `i` pairs with `i + rotary_dim/2` (GPT-NeoX).
    Neox,
    /// GPT-J / llama.cpp: dim `2i` pairs with `2i + 1`.
    Interleaved,
}

/// Static arguments of the RoPE op.
#[derive(Clone, Copy, Debug)]
pub struct RopeParams {
    pub head_dim: usize,
    /// Leading dims of each head that rotate (`partial_rotary_factor`); the rest pass through.
    pub rotary_dim: usize,
    pub style: RopeStyle,
    /// Multiplies cos and sin (YaRN's `attention_factor`; 1.0 otherwise).
    pub attention_scaling: f32,
}

/// Static arguments of paged attention for one layer.
#[derive(Clone, Copy, Debug)]
pub struct AttentionParams {
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Multiplies `q·k` before the softmax.
    pub scale: f32,
    /// A query at position `p` sees keys `j` with `p - W < j <= p` (HF's convention).
    pub sliding_window: Option<usize>,
    /// `tanh(s / cap) * cap` on the scores (Gemma 2 style), before masking.
    pub softcap: Option<f32>,
}

/// The input of a projection that starts with an RMSNorm: `rms_norm(x + residual)` (or
/// `rms_norm(x)` without a residual) with `weight`, `eps` and Gemma's `offset`. The `norm_*`
/// ops take it so a backend can fold the norm into the matmul's prologue (one launch fewer
/// per norm in a decode step) instead of writing the normalized rows out first.
pub struct Normed<'a, T> {
    pub x: &'a T,
    pub residual: Option<&'a T>,
    pub weight: &'a T,
    pub eps: f32,
    pub offset: f32,
}

// By hand: a derive would ask `T: Copy`, and only references to T are held.
impl<T> Clone for Normed<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Normed<'_, T> {}

/// A layer's RoPE as [`Backend::norm_qkv_write_kv`] takes it: `rope`'s arguments.
pub struct RopeArgs<'a, T> {
    pub positions: &'a T,
    pub inv_freq: &'a T,
    pub params: RopeParams,
}

/// The q, k and v projections (weight, bias) of [`Backend::norm_qkv_write_kv`].
pub type Qkv<'a, T> = [(&'a T, Option<&'a T>); 3];

/// What [`Backend::norm_qkv_write_kv`] returns: `([q, k, v], x + residual)`.
pub type QkvOut<T> = ([T; 3], Option<T>);

/// Where [`Backend::norm_qkv_write_kv`] writes this step's K/V: `write_kv`'s arguments.
pub struct KvWrite<'a, T> {
    pub k_cache: &'a mut T,
    pub v_cache: &'a mut T,
    pub slot_mapping: &'a T,
}

/// Per-step batch layout that attention reads (the device half of `ForwardBatch`).
///
/// ```text
/// query_start_loc  [B+1] u32   tokens of seq b are rows query_start_loc[b]..query_start_loc[b+1]
/// seq_lens         [B]   u32   context length of seq b after this step (cached + new tokens)
/// block_tables     [B, max_blocks_per_seq] u32   physical block ids, logical order
/// seq_order        [B]   u32   sequence indices, decode sequences (q_len 1) first, then the
///                              others, each group in batch order; `num_decode_seqs` decodes
/// ```
/// The query rows of seq b sit at positions `seq_lens[b] - q_len_b ..seq_lens[b]`.
/// `seq_order` / `num_decode_seqs` let a backend run a decode-only kernel on the first group
/// and its prefill kernel on the rest of a mixed step (the scheduler may interleave them);
/// backends with one kernel for every row ignore them. Build them with [`decode_first`].
#[derive(Debug)]
pub struct AttentionMetadata<T> {
    pub query_start_loc: T,
    pub seq_lens: T,
    pub block_tables: T,
    pub seq_order: T,
    pub num_seqs: usize,
    pub num_decode_seqs: usize,
    pub max_blocks_per_seq: usize,
    pub block_size: usize,
    pub max_query_len: usize,
    pub max_seq_len: usize,
}

/// `(seq_order, num_decode_seqs)` of [`AttentionMetadata`] for the host copy of
/// `query_start_loc`: the sequences with exactly one query row first, then the others, each
/// group in batch order.
pub fn decode_first(query_start_loc: &[u32]) -> (Vec<u32>, usize) {
    let q_len = |b: usize| query_start_loc[b + 1].saturating_sub(query_start_loc[b]);
    let n = query_start_loc.len().saturating_sub(1);
    let mut order: Vec<u32> = (0..n).filter(|&b| q_len(b) == 1).map(|b| b as u32).collect();
    let num_decode = order.len();
    order.extend((0..n).filter(|&b| q_len(b) != 1).map(|b| b as u32));
    (order, num_decode)
}

/// What every device tensor can tell about itself.
pub trait Tensor {
    fn shape(&self) -> &[usize];
    fn dtype(&self) -> DType;
    fn numel(&self) -> usize {
        self.shape().iter().product()
    }
}

/// The op-level compute trait. See the module docs for conventions.
#[allow(async_fn_in_trait)]
pub trait Backend {
    type Tensor: Tensor;

    /// Short name for logs and errors ("cpu", "cuda", "wgpu").
    fn name(&self) -> &'static str;

    /// Whether `op` runs on tensors of `dtype` here. Unsupported ops are errors, never panics.
    fn supports(&self, op: Op, dtype: DType) -> bool;

    /// The dtype activations are kept in on this backend.
    fn activation_dtype(&self) -> DType;

    /// Copy a host tensor to the device. Float data may be converted to the backend's storage.
    fn upload(&self, t: &HostTensor) -> Result<Self::Tensor>;

    fn upload_u32(&self, values: &[u32], shape: &[usize]) -> Result<Self::Tensor> {
        self.upload(&HostTensor::from_u32(values, shape))
    }

    /// A zero-filled tensor of the activation dtype (KV cache pages).
    fn zeros(&self, shape: &[usize]) -> Result<Self::Tensor>;

    /// `out[t] = table[ids[t]] * scale`: `[V, H]`, ids `[T]` -> `[T, H]`.
    fn embedding(&self, table: &Self::Tensor, ids: &Self::Tensor, scale: f32) -> Result<Self::Tensor>;

    /// `x · wᵀ (+ bias)`: x `[M, K]`, w `[N, K]` (HF Linear layout), bias `[N]` -> `[M, N]`.
    fn matmul(&self, x: &Self::Tensor, w: &Self::Tensor, bias: Option<&Self::Tensor>) -> Result<Self::Tensor>;

    /// Several linears on the same input: `[x · w_iᵀ (+ b_i)]` for each `(w_i, b_i)` of `ws`
    /// (all `w_i` `[N_i, K]`) -> one `[M, N_i]` tensor each, in order. The attention layer runs
    /// q/k/v through it. Default: one `matmul` each; a backend overrides it to read x once and
    /// run every matrix in one launch (CUDA does for small M: decode steps).
    fn matmul_many(&self, x: &Self::Tensor, ws: &[(&Self::Tensor, Option<&Self::Tensor>)]) -> Result<Vec<Self::Tensor>> {
        ws.iter().map(|(w, bias)| self.matmul(x, w, *bias)).collect()
    }

    /// The gated MLP's first half: `act(x · gateᵀ (+ bg)) * (x · upᵀ (+ bu))`, gate and up
    /// `[N, K]` -> `[M, N]`. Default: `matmul_many` of both, then `act_mul` (so an override
    /// computes the same function: gate and up are rounded to the activation dtype before
    /// the activation); CUDA fuses it into one GEMV launch for small M.
    fn gated_matmul(
        &self,
        x: &Self::Tensor,
        gate: (&Self::Tensor, Option<&Self::Tensor>),
        up: (&Self::Tensor, Option<&Self::Tensor>),
        act: Activation,
    ) -> Result<Self::Tensor> {
        let mut gu = self.matmul_many(x, &[gate, up])?;
        match (gu.pop(), gu.pop()) {
            (Some(u), Some(g)) => self.act_mul(&g, &u, act),
            _ => Err(BackendError::Shape { op: Op::Matmul, detail: "matmul_many returned fewer outputs than matrices".into() }),
        }
    }

    /// `matmul_many` of the normalized input: returns `(outputs, x + residual)`, the second
    /// `None` when `n.residual` is `None` (the stream is then `x` itself). Default:
    /// `add_rms_norm` (or `rms_norm`), then `matmul_many`; an override must compute the same
    /// function (the normalized rows rounded to the activation dtype before the products).
    fn norm_matmul_many(
        &self,
        n: Normed<'_, Self::Tensor>,
        ws: &[(&Self::Tensor, Option<&Self::Tensor>)],
    ) -> Result<(Vec<Self::Tensor>, Option<Self::Tensor>)> {
        let (h, sum) = normalize(self, n)?;
        Ok((self.matmul_many(&h, ws)?, sum))
    }

    /// `gated_matmul` of the normalized input: returns `(act(gate) * up, x + residual)` as
    /// [`Backend::norm_matmul_many`] does.
    fn norm_gated_matmul(
        &self,
        n: Normed<'_, Self::Tensor>,
        gate: (&Self::Tensor, Option<&Self::Tensor>),
        up: (&Self::Tensor, Option<&Self::Tensor>),
        act: Activation,
    ) -> Result<(Self::Tensor, Option<Self::Tensor>)> {
        let (h, sum) = normalize(self, n)?;
        Ok((self.gated_matmul(&h, gate, up, act)?, sum))
    }

    /// The start of an attention layer without q/k norms: `norm_matmul_many` of q/k/v
    /// (`qkv`), `rope` of q and k (when `rope` is given), then `write_kv` of k and v. Returns
    /// `([q, k, v], x + residual)`, q and k rotated. Default: exactly those ops
    /// ([`norm_qkv_write_kv_unfused`]); CUDA runs them as one GEMV launch for decode batches.
    fn norm_qkv_write_kv(
        &self,
        n: Normed<'_, Self::Tensor>,
        qkv: Qkv<'_, Self::Tensor>,
        rope: Option<RopeArgs<'_, Self::Tensor>>,
        kv: KvWrite<'_, Self::Tensor>,
    ) -> Result<QkvOut<Self::Tensor>> {
        norm_qkv_write_kv_unfused(self, n, qkv, rope, kv)
    }

    /// A hint: `weights` are read soon, in this order, each from its start for its `bytes`
    /// (the whole tensor or less); a backend may start pulling them into a cache while the
    /// latency-bound ops queued before their products run (the attention layer names o_proj
    /// and the MLP's gate/up right after its q/k/v product). It never changes a result; how
    /// much a backend takes is its own choice. Default: nothing.
    fn prefetch(&self, _weights: &[(&Self::Tensor, usize)]) -> Result<()> {
        Ok(())
    }

    /// Elementwise `a + b`, same shapes.
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;

    /// RMSNorm over consecutive groups of `weight.numel()` elements:
    /// `x / sqrt(mean(x²) + eps) * (weight_offset + weight)`; Gemma uses `weight_offset = 1`.
    fn rms_norm(&self, x: &Self::Tensor, weight: &Self::Tensor, eps: f32, weight_offset: f32) -> Result<Self::Tensor>;

    /// Fused residual add + RMSNorm: returns `(rms_norm(x + residual), x + residual)`.
    fn add_rms_norm(
        &self,
        x: &Self::Tensor,
        residual: &Self::Tensor,
        weight: &Self::Tensor,
        eps: f32,
        weight_offset: f32,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        let sum = self.add(x, residual)?;
        let normed = self.rms_norm(&sum, weight, eps, weight_offset)?;
        Ok((normed, sum))
    }

    /// Rotate `x` `[T, n * head_dim]` in place by `positions` `[T]` u32 with `inv_freq`
    /// f32 `[rotary_dim / 2]` (shared by all tokens) or `[T, rotary_dim / 2]` (one row per
    /// token: dynamic NTK scaling depends on each sequence's length): angle = position *
    /// inv_freq[i], computed in f32 as HF does.
    fn rope(&self, x: &mut Self::Tensor, positions: &Self::Tensor, inv_freq: &Self::Tensor, p: RopeParams) -> Result<()>;

    /// `act(gate) * up`, same shapes.
    fn act_mul(&self, gate: &Self::Tensor, up: &Self::Tensor, act: Activation) -> Result<Self::Tensor>;

    /// Scatter k, v `[T, num_kv_heads * head_dim]` into the paged caches
    /// `[num_blocks, block_size, num_kv_heads * head_dim]` at `slot_mapping` `[T]`
    /// (slot = block * block_size + offset; `u32::MAX` = padding, skipped).
    fn write_kv(
        &self,
        k_cache: &mut Self::Tensor,
        v_cache: &mut Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        slot_mapping: &Self::Tensor,
    ) -> Result<()>;

    /// Causal attention of varlen queries `q` `[T, num_heads * head_dim]` over paged K/V read
    /// through `meta.block_tables` (GQA, sliding window, softcap) -> `[T, num_heads * head_dim]`.
    fn paged_attention(
        &self,
        q: &Self::Tensor,
        k_cache: &Self::Tensor,
        v_cache: &Self::Tensor,
        meta: &AttentionMetadata<Self::Tensor>,
        p: &AttentionParams,
    ) -> Result<Self::Tensor>;

    /// Rows of `x` `[M, N]` at `indices` `[R]` u32 -> `[R, N]` (selects the logits rows).
    fn gather_rows(&self, x: &Self::Tensor, indices: &Self::Tensor) -> Result<Self::Tensor>;

    /// `tanh(x / cap) * cap` elementwise (final logit soft-capping).
    fn softcap(&self, x: &Self::Tensor, cap: f32) -> Result<Self::Tensor>;

    /// Index of the largest value of each row of `x` `[M, N]` -> `[M]` u32 (first on ties).
    fn argmax(&self, x: &Self::Tensor) -> Result<Self::Tensor>;

    /// One token per row of `logits` `[M, V]` under each row's temperature / top-k / top-p /
    /// min-p and its own uniform draw; `crate::sample::sample_rows` is the reference.
    /// Default: read the logits back and sample on the host; devices override with a kernel.
    async fn sample(&self, logits: &Self::Tensor, rows: &[crate::sample::RowSampling]) -> Result<Vec<u32>> {
        let host = self.to_host(logits).await?;
        Ok(crate::sample::sample_rows(&host.to_f32(), rows))
    }

    /// [`Backend::sample`] with the ids left on the device (`[M]` u32): the engine reads them
    /// back later, or (async scheduling) feeds them to the next step first. Default: `sample`,
    /// then the ids uploaded (correct, but it waits for the device); devices override it.
    async fn sample_ids(&self, logits: &Self::Tensor, rows: &[crate::sample::RowSampling]) -> Result<Self::Tensor> {
        let ids = self.sample(logits, rows).await?;
        self.upload_u32(&ids, &[ids.len()])
    }

    // ---- decode-step graphs (CUDA graphs); the defaults say "not supported" ------------

    /// Whether this backend can record queued work into a replayable graph
    /// (`graph_begin` .. `graph_end`, then `graph_replay`). Default: no (every step is eager).
    fn graph_supported(&self) -> bool {
        false
    }

    /// Which graph of a batch of `num_seqs` sequences serves a step whose longest context is
    /// `max_seq_len`: steps with the same answer share one graph. `None` while the backend
    /// cannot tell yet (before the first eager decode step of that shape).
    fn graph_variant(&self, _num_seqs: usize, _max_seq_len: usize) -> Option<u64> {
        None
    }

    /// Tells paged attention the batch's real longest context while its metadata carries a
    /// larger bound (`max_seq_len` of a graph's persistent metadata): the backend then picks
    /// what depends on it (key splits) as an eager step would. `None` clears it.
    fn set_attention_hint(&self, _max_seq_len: Option<usize>) {}

    /// Starts recording the work queued from now on instead of running it.
    fn graph_begin(&self) -> Result<()> {
        Err(BackendError::Device { backend: self.name(), message: "graphs are not supported".into() })
    }

    /// Stops recording; returns the id of the new graph. `ok == false` (an op failed while
    /// recording) discards the recording and returns an error.
    fn graph_end(&self, _ok: bool) -> Result<u64> {
        Err(BackendError::Device { backend: self.name(), message: "graphs are not supported".into() })
    }

    /// Queues graph `id` (it reads and writes the same buffers as when it was recorded).
    fn graph_replay(&self, _id: u64) -> Result<()> {
        Err(BackendError::Device { backend: self.name(), message: "graphs are not supported".into() })
    }

    /// Writes `values` into the existing u32 tensor `dst` in place (its address stays).
    fn write_u32(&self, _dst: &Self::Tensor, _values: &[u32]) -> Result<()> {
        Err(BackendError::Device { backend: self.name(), message: "in-place writes are not supported".into() })
    }

    /// Copies `src` into the existing tensor `dst` of the same dtype and size, in place.
    fn copy_into(&self, _dst: &Self::Tensor, _src: &Self::Tensor) -> Result<()> {
        Err(BackendError::Device { backend: self.name(), message: "in-place copies are not supported".into() })
    }

    // ---- async scheduling (the engine's pipelined steps) -------------------------------

    /// `dst[pairs[i][0]] = src[pairs[i][1]]` for u32 tensors, `pairs` `[P, 2]` u32: the
    /// engine writes the token ids the previous step sampled, still on the device, into this
    /// step's `input_ids`. Out-of-range pairs are skipped. Default: not supported (the engine
    /// then runs every step synchronously).
    fn scatter_ids(&self, _dst: &mut Self::Tensor, _src: &Self::Tensor, _pairs: &Self::Tensor) -> Result<()> {
        Err(BackendError::Unsupported { op: Op::ScatterIds, dtype: DType::U32, backend: self.name() })
    }

    /// A hint: `t` is read back (`to_host`) after more work has been queued; start its copy
    /// now, so that `to_host` waits for the work queued up to here and not for what follows.
    /// Default: nothing (`to_host` then waits for everything queued).
    fn read_begin(&self, _t: &Self::Tensor) -> Result<()> {
        Ok(())
    }

    /// Copy to the host. The only async op: WebGPU read-backs must await.
    async fn to_host(&self, t: &Self::Tensor) -> Result<HostTensor<'static>>;
}

/// [`Backend::norm_qkv_write_kv`] as its ops: `norm_matmul_many`, `rope` of q and k,
/// `write_kv`.
pub fn norm_qkv_write_kv_unfused<B: Backend + ?Sized>(
    b: &B,
    n: Normed<'_, B::Tensor>,
    qkv: Qkv<'_, B::Tensor>,
    rope: Option<RopeArgs<'_, B::Tensor>>,
    kv: KvWrite<'_, B::Tensor>,
) -> Result<QkvOut<B::Tensor>> {
    let (outs, sum) = b.norm_matmul_many(n, &qkv)?;
    let [mut q, mut k, v]: [B::Tensor; 3] = outs
        .try_into()
        .map_err(|_| BackendError::Shape { op: Op::Matmul, detail: "norm_matmul_many: not 3 outputs for q/k/v".into() })?;
    if let Some(r) = rope {
        b.rope(&mut q, r.positions, r.inv_freq, r.params)?;
        b.rope(&mut k, r.positions, r.inv_freq, r.params)?;
    }
    b.write_kv(kv.k_cache, kv.v_cache, &k, &v, kv.slot_mapping)?;
    Ok(([q, k, v], sum))
}

/// `(rms_norm(x + residual), Some(x + residual))`, or `(rms_norm(x), None)`: the unfused
/// body of the `norm_*` ops.
pub fn normalize<B: Backend + ?Sized>(b: &B, n: Normed<'_, B::Tensor>) -> Result<(B::Tensor, Option<B::Tensor>)> {
    match n.residual {
        Some(r) => {
            let (h, sum) = b.add_rms_norm(n.x, r, n.weight, n.eps, n.offset)?;
            Ok((h, Some(sum)))
        }
        None => Ok((b.rms_norm(n.x, n.weight, n.eps, n.offset)?, None)),
    }
}
