//! `impl Backend for CudaBackend`: the compute trait's entry points. Each settles the
//! deferred ropes of the inputs it does not fuse (tensor.rs), then hands over to the op
//! modules (ops.rs, gemv.rs, qkv_kv.rs, attention.rs, sampling.rs, graph.rs, readback.rs).

use std::sync::atomic::Ordering;

use tessera_core::backend::{
    Activation, AttentionMetadata, AttentionParams, Backend, KvWrite, Normed, Op, Qkv, QkvOut, Result, RopeArgs,
    RopeParams,
};
use tessera_core::tensor::{DType, HostTensor};

use super::device::dev_err;
use super::{shape_err, CudaBackend, CudaTensor, NAME};

impl Backend for CudaBackend {
    type Tensor = CudaTensor;

    fn name(&self) -> &'static str {
        NAME
    }

    fn supports(&self, op: Op, dtype: DType) -> bool {
        match op {
            Op::Upload => true,
            Op::ToHost => matches!(dtype, DType::F32 | DType::F16 | DType::BF16 | DType::U32),
            Op::ScatterIds => dtype == DType::U32,
            _ => matches!(dtype, DType::F32 | DType::F16 | DType::BF16),
        }
    }

    fn activation_dtype(&self) -> DType {
        self.dtype
    }

    fn upload(&self, t: &HostTensor) -> Result<CudaTensor> {
        let op = Op::Upload;
        let numel = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let expected = numel.and_then(|n| t.dtype.bytes_for(n));
        if expected != Some(t.data.len()) {
            return Err(shape_err(op, format!("{} bytes do not hold a {} tensor of shape {:?}", t.data.len(), t.dtype, t.shape)));
        }
        // Vectors (norm weights, biases, RoPE frequencies) stay f32; the rest takes the
        // activation dtype.
        let float_to = if t.shape.len() <= 1 { DType::F32 } else { self.dtype };
        match t.dtype {
            DType::U32 => self.upload_bytes(&t.data, DType::U32, &t.shape, DType::U32),
            DType::F32 | DType::F16 | DType::BF16 => self.upload_bytes(&t.data, t.dtype, &t.shape, float_to),
            q => {
                // GGUF blocks: dequantized on the host for now (quantized GEMMs come later).
                let mut values = vec![0f32; numel.unwrap_or(0)];
                tessera_core::quant::try_dequantize(q, &t.data, &mut values)
                    .map_err(|e| shape_err(op, format!("dequantizing a {q} tensor of shape {:?}: {e}", t.shape)))?;
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                self.upload_bytes(&bytes, DType::F32, &t.shape, float_to)
            }
        }
    }

    fn upload_u32(&self, values: &[u32], shape: &[usize]) -> Result<CudaTensor> {
        if shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(values.len()) {
            return Err(shape_err(Op::Upload, format!("{} values do not fill shape {shape:?}", values.len())));
        }
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.host_times.time("upload_u32", || self.upload_bytes(&bytes, DType::U32, shape, DType::U32))
    }

    fn zeros(&self, shape: &[usize]) -> Result<CudaTensor> {
        self.zeroed(Op::Upload, self.dtype, shape)
    }

    fn embedding(&self, table: &CudaTensor, ids: &CudaTensor, scale: f32) -> Result<CudaTensor> {
        self.settle(table)?;
        self.op_embedding(table, ids, scale)
    }

    fn matmul(&self, x: &CudaTensor, w: &CudaTensor, bias: Option<&CudaTensor>) -> Result<CudaTensor> {
        self.settle_all(&[x, w])?;
        self.op_matmul(x, w, bias)
    }

    fn matmul_many(&self, x: &CudaTensor, ws: &[(&CudaTensor, Option<&CudaTensor>)]) -> Result<Vec<CudaTensor>> {
        self.settle(x)?;
        self.op_matmul_many(x, ws)
    }

    fn gated_matmul(
        &self,
        x: &CudaTensor,
        gate: (&CudaTensor, Option<&CudaTensor>),
        up: (&CudaTensor, Option<&CudaTensor>),
        act: Activation,
    ) -> Result<CudaTensor> {
        self.settle(x)?;
        self.op_gated_matmul(x, gate, up, act)
    }

    fn norm_matmul_many(
        &self,
        n: Normed<'_, CudaTensor>,
        ws: &[(&CudaTensor, Option<&CudaTensor>)],
    ) -> Result<(Vec<CudaTensor>, Option<CudaTensor>)> {
        self.op_norm_matmul_many(n, ws)
    }

    fn norm_gated_matmul(
        &self,
        n: Normed<'_, CudaTensor>,
        gate: (&CudaTensor, Option<&CudaTensor>),
        up: (&CudaTensor, Option<&CudaTensor>),
        act: Activation,
    ) -> Result<(CudaTensor, Option<CudaTensor>)> {
        self.op_norm_gated_matmul(n, gate, up, act)
    }

    fn norm_qkv_write_kv(
        &self,
        n: Normed<'_, CudaTensor>,
        qkv: Qkv<'_, CudaTensor>,
        rope: Option<RopeArgs<'_, CudaTensor>>,
        kv: KvWrite<'_, CudaTensor>,
    ) -> Result<QkvOut<CudaTensor>> {
        self.op_norm_qkv_write_kv(n, qkv, rope, kv)
    }

    fn prefetch(&self, weights: &[(&CudaTensor, usize)]) -> Result<()> {
        self.op_prefetch(weights)
    }

    fn add(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        self.settle_all(&[a, b])?;
        self.op_add(a, b)
    }

    fn rms_norm(&self, x: &CudaTensor, weight: &CudaTensor, eps: f32, weight_offset: f32) -> Result<CudaTensor> {
        self.settle(x)?;
        Ok(self.op_rms_norm(Op::RmsNorm, x, None, weight, eps, weight_offset)?.0)
    }

    fn add_rms_norm(
        &self,
        x: &CudaTensor,
        residual: &CudaTensor,
        weight: &CudaTensor,
        eps: f32,
        weight_offset: f32,
    ) -> Result<(CudaTensor, CudaTensor)> {
        self.settle_all(&[x, residual])?;
        let (normed, sum) = self.op_rms_norm(Op::AddRmsNorm, x, Some(residual), weight, eps, weight_offset)?;
        let sum = sum.ok_or_else(|| dev_err(Op::AddRmsNorm, "missing residual sum"))?;
        Ok((normed, sum))
    }

    fn rope(&self, x: &mut CudaTensor, positions: &CudaTensor, inv_freq: &CudaTensor, p: RopeParams) -> Result<()> {
        self.op_rope(x, positions, inv_freq, p)
    }

    fn act_mul(&self, gate: &CudaTensor, up: &CudaTensor, act: Activation) -> Result<CudaTensor> {
        self.settle_all(&[gate, up])?;
        self.op_act_mul(gate, up, act)
    }

    fn write_kv(
        &self,
        k_cache: &mut CudaTensor,
        v_cache: &mut CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        slot_mapping: &CudaTensor,
    ) -> Result<()> {
        self.op_write_kv(k_cache, v_cache, k, v, slot_mapping)
    }

    fn paged_attention(
        &self,
        q: &CudaTensor,
        k_cache: &CudaTensor,
        v_cache: &CudaTensor,
        meta: &AttentionMetadata<CudaTensor>,
        p: &AttentionParams,
    ) -> Result<CudaTensor> {
        self.op_paged_attention(q, k_cache, v_cache, meta, p)
    }

    fn gather_rows(&self, x: &CudaTensor, indices: &CudaTensor) -> Result<CudaTensor> {
        self.settle(x)?;
        self.host_times.time("gather_rows", || self.op_gather_rows(x, indices))
    }

    fn softcap(&self, x: &CudaTensor, cap: f32) -> Result<CudaTensor> {
        self.settle(x)?;
        self.op_softcap(x, cap)
    }

    fn argmax(&self, x: &CudaTensor) -> Result<CudaTensor> {
        self.settle(x)?;
        self.host_times.time("argmax", || self.op_argmax(x))
    }

    async fn sample(&self, logits: &CudaTensor, rows: &[tessera_core::sample::RowSampling]) -> Result<Vec<u32>> {
        self.settle(logits)?;
        let ids = self.op_sample(logits, rows)?;
        self.op_to_host(&ids).map(|h| h.to_u32())
    }

    async fn sample_ids(&self, logits: &CudaTensor, rows: &[tessera_core::sample::RowSampling]) -> Result<CudaTensor> {
        self.settle(logits)?;
        self.op_sample(logits, rows)
    }

    fn graph_supported(&self) -> bool {
        self.graphs_possible()
    }

    fn graph_variant(&self, num_seqs: usize, max_seq_len: usize) -> Option<u64> {
        self.op_graph_variant(num_seqs, max_seq_len)
    }

    fn set_attention_hint(&self, max_seq_len: Option<usize>) {
        self.attention_hint.store(max_seq_len.unwrap_or(0), Ordering::Relaxed);
    }

    fn graph_begin(&self) -> Result<()> {
        self.op_graph_begin()
    }

    fn graph_end(&self, ok: bool) -> Result<u64> {
        self.op_graph_end(ok)
    }

    fn graph_replay(&self, id: u64) -> Result<()> {
        self.host_times.time("graph_replay", || self.op_graph_replay(id))
    }

    fn write_u32(&self, dst: &CudaTensor, values: &[u32]) -> Result<()> {
        self.host_times.time("write_u32", || self.op_write_u32(dst, values))
    }

    fn copy_into(&self, dst: &CudaTensor, src: &CudaTensor) -> Result<()> {
        self.settle_all(&[dst, src])?;
        self.op_copy_into(dst, src)
    }

    fn scatter_ids(&self, dst: &mut CudaTensor, src: &CudaTensor, pairs: &CudaTensor) -> Result<()> {
        self.settle_all(&[&*dst, src, pairs])?;
        self.host_times.time("scatter_ids", || self.op_scatter_ids(dst, src, pairs))
    }

    fn read_begin(&self, t: &CudaTensor) -> Result<()> {
        self.host_times.time("read_begin", || self.op_read_begin(t))
    }

    async fn to_host(&self, t: &CudaTensor) -> Result<HostTensor<'static>> {
        self.host_times.time("to_host", || self.op_to_host(t))
    }
}
