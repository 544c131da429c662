//! `impl Backend for WgpuBackend`: the compute trait's entry points, each handing over to the
//! op modules (ops.rs, matmul.rs, matmul_many.rs, attention.rs, prefetch.rs, sample.rs) or
//! the recorder (encoder.rs: graphs, read-backs).

use std::sync::Arc;

use super::tensor::{device_err, numel_of, shape_err, DeviceBuffer, HostCopy};
use super::{attention, matmul, matmul_many, ops, quant, sample, tensor, WgpuBackend, WgpuTensor, NAME};
use crate::backend::{Activation, AttentionMetadata, AttentionParams, Backend, Normed, Op, Result, RopeParams, Tensor};
use crate::tensor::{DType, HostTensor};

impl Backend for WgpuBackend {
    type Tensor = WgpuTensor;

    fn name(&self) -> &'static str {
        NAME
    }

    fn supports(&self, op: Op, dtype: DType) -> bool {
        match op {
            // Every host dtype uploads: GGUF blocks the shaders decode stay quantized, other
            // block formats are dequantized on the way.
            Op::Upload => true,
            Op::ToHost => {
                matches!(dtype, DType::F32 | DType::U32) || (dtype == DType::F16 && self.f16_ok()) || quant::decodes(dtype)
            }
            Op::Matmul | Op::Embedding if quant::decodes(dtype) => true,
            Op::ScatterIds => dtype == DType::U32,
            _ => dtype == DType::F32 || (dtype == DType::F16 && self.f16_ok()),
        }
    }

    fn activation_dtype(&self) -> DType {
        self.dtype
    }

    fn upload(&self, t: &HostTensor) -> Result<WgpuTensor> {
        let op = Op::Upload;
        let numel = numel_of(op, &t.shape)?;
        if t.dtype.bytes_for(numel) != Some(t.data.len()) {
            return Err(shape_err(
                op,
                format!("{} bytes do not hold a {} tensor of shape {:?}", t.data.len(), t.dtype, t.shape),
            ));
        }
        let f16_storage = self.dtype == DType::F16;
        let (dtype, bytes): (DType, std::borrow::Cow<'_, [u8]>) = match t.dtype {
            DType::U32 | DType::F32 => (t.dtype, std::borrow::Cow::Borrowed(&t.data[..])),
            DType::F16 if f16_storage => (DType::F16, std::borrow::Cow::Borrowed(&t.data[..])),
            DType::BF16 if f16_storage => {
                let v: Vec<u8> = t.to_f32().into_iter().flat_map(|x| half::f16::from_f32(x).to_le_bytes()).collect();
                (DType::F16, v.into())
            }
            DType::F16 | DType::BF16 => {
                let v: Vec<u8> = t.to_f32().into_iter().flat_map(|x| x.to_le_bytes()).collect();
                (DType::F32, v.into())
            }
            // GGUF blocks the shaders decode stay as they are (quantized in GPU memory) when
            // they form a [rows, k] matrix of whole-block rows.
            q if quant::decodes(q) && t.shape.len() == 2 && t.shape[1].is_multiple_of(q.block_len()) => {
                (q, std::borrow::Cow::Borrowed(&t.data[..]))
            }
            // Other block tensors: dequantized on the host into the activation dtype.
            q => {
                let v = t.to_f32();
                let bytes: Vec<u8> = if f16_storage {
                    v.into_iter().flat_map(|x| half::f16::from_f32(x).to_le_bytes()).collect()
                } else {
                    v.into_iter().flat_map(|x| x.to_le_bytes()).collect()
                };
                debug_assert!(q.is_quantized());
                (self.dtype, bytes.into())
            }
        };
        let buffer = self.buffer(op, bytes.len() as u64, Some(&bytes))?;
        let host_u32 = HostCopy::new((dtype == DType::U32).then(|| Arc::from(t.to_u32())));
        Ok(WgpuTensor { buffer: DeviceBuffer::owned(buffer), shape: t.shape.clone(), dtype, host_u32, pending_rope: Default::default(), pending_merge: Default::default() })
    }

    fn upload_u32(&self, values: &[u32], shape: &[usize]) -> Result<WgpuTensor> {
        let op = Op::Upload;
        if numel_of(op, shape)? != values.len() {
            return Err(shape_err(op, format!("{} values do not fill shape {shape:?}", values.len())));
        }
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let buffer = self.buffer(op, bytes.len() as u64, Some(&bytes))?;
        Ok(WgpuTensor { buffer: DeviceBuffer::owned(buffer), shape: shape.to_vec(), dtype: DType::U32, host_u32: HostCopy::new(Some(values.into())), pending_rope: Default::default(), pending_merge: Default::default() })
    }

    fn zeros(&self, shape: &[usize]) -> Result<WgpuTensor> {
        let op = Op::Upload;
        let numel = numel_of(op, shape)?;
        let bytes = numel
            .checked_mul(self.dtype.size())
            .ok_or_else(|| shape_err(op, format!("zeros: shape {shape:?} overflows")))?;
        // wgpu zero-initializes new buffers.
        let buffer = self.buffer(op, bytes as u64, None)?;
        Ok(WgpuTensor { buffer: DeviceBuffer::owned(buffer), shape: shape.to_vec(), dtype: self.dtype, host_u32: HostCopy::default(), pending_rope: Default::default(), pending_merge: Default::default() })
    }

    fn embedding(&self, table: &WgpuTensor, ids: &WgpuTensor, scale: f32) -> Result<WgpuTensor> {
        ops::embedding(self, table, ids, scale)
    }

    fn matmul(&self, x: &WgpuTensor, w: &WgpuTensor, bias: Option<&WgpuTensor>) -> Result<WgpuTensor> {
        matmul::matmul(self, x, w, bias)
    }

    fn matmul_many(&self, x: &WgpuTensor, ws: &[(&WgpuTensor, Option<&WgpuTensor>)]) -> Result<Vec<WgpuTensor>> {
        matmul_many::matmul_many(self, x, ws)
    }

    fn gated_matmul(
        &self,
        x: &WgpuTensor,
        gate: (&WgpuTensor, Option<&WgpuTensor>),
        up: (&WgpuTensor, Option<&WgpuTensor>),
        act: Activation,
    ) -> Result<WgpuTensor> {
        matmul_many::gated_matmul(self, x, gate, up, act)
    }

    fn norm_matmul_many(
        &self,
        n: Normed<'_, WgpuTensor>,
        ws: &[(&WgpuTensor, Option<&WgpuTensor>)],
    ) -> Result<(Vec<WgpuTensor>, Option<WgpuTensor>)> {
        matmul_many::norm_matmul_many(self, n, ws)
    }

    fn norm_gated_matmul(
        &self,
        n: Normed<'_, WgpuTensor>,
        gate: (&WgpuTensor, Option<&WgpuTensor>),
        up: (&WgpuTensor, Option<&WgpuTensor>),
        act: Activation,
    ) -> Result<(WgpuTensor, Option<WgpuTensor>)> {
        matmul_many::norm_gated_matmul(self, n, gate, up, act)
    }

    fn add(&self, a: &WgpuTensor, b: &WgpuTensor) -> Result<WgpuTensor> {
        ops::add(self, a, b)
    }

    fn rms_norm(&self, x: &WgpuTensor, weight: &WgpuTensor, eps: f32, weight_offset: f32) -> Result<WgpuTensor> {
        ops::rms_norm(self, x, None, weight, eps, weight_offset).map(|(normed, _)| normed)
    }

    fn add_rms_norm(
        &self,
        x: &WgpuTensor,
        residual: &WgpuTensor,
        weight: &WgpuTensor,
        eps: f32,
        weight_offset: f32,
    ) -> Result<(WgpuTensor, WgpuTensor)> {
        let (normed, sum) = ops::rms_norm(self, x, Some(residual), weight, eps, weight_offset)?;
        Ok((normed, sum.ok_or_else(|| device_err("add_rms_norm produced no sum"))?))
    }

    fn rope(&self, x: &mut WgpuTensor, positions: &WgpuTensor, inv_freq: &WgpuTensor, p: RopeParams) -> Result<()> {
        ops::rope(self, x, positions, inv_freq, p)
    }

    fn act_mul(&self, gate: &WgpuTensor, up: &WgpuTensor, act: Activation) -> Result<WgpuTensor> {
        ops::act_mul(self, gate, up, act)
    }

    fn write_kv(
        &self,
        k_cache: &mut WgpuTensor,
        v_cache: &mut WgpuTensor,
        k: &WgpuTensor,
        v: &WgpuTensor,
        slot_mapping: &WgpuTensor,
    ) -> Result<()> {
        attention::write_kv(self, k_cache, v_cache, k, v, slot_mapping)
    }

    fn paged_attention(
        &self,
        q: &WgpuTensor,
        k_cache: &WgpuTensor,
        v_cache: &WgpuTensor,
        meta: &AttentionMetadata<WgpuTensor>,
        p: &AttentionParams,
    ) -> Result<WgpuTensor> {
        attention::paged_attention(self, q, k_cache, v_cache, meta, p)
    }

    /// Held for the next decode attention, which reads them into L2 (`prefetch`).
    fn prefetch(&self, weights: &[(&WgpuTensor, usize)]) -> Result<()> {
        self.defer_prefetch(weights)
    }

    fn gather_rows(&self, x: &WgpuTensor, indices: &WgpuTensor) -> Result<WgpuTensor> {
        ops::gather_rows(self, x, indices)
    }

    fn softcap(&self, x: &WgpuTensor, cap: f32) -> Result<WgpuTensor> {
        ops::softcap(self, x, cap)
    }

    fn argmax(&self, x: &WgpuTensor) -> Result<WgpuTensor> {
        ops::argmax(self, x)
    }

    /// On the device (`sample.wgsl`): only the sampled ids are read back.
    async fn sample(&self, logits: &WgpuTensor, rows: &[crate::sample::RowSampling]) -> Result<Vec<u32>> {
        let ids = sample::sample(self, logits, rows)?;
        Ok(self.to_host(&ids).await?.to_u32())
    }

    async fn sample_ids(&self, logits: &WgpuTensor, rows: &[crate::sample::RowSampling]) -> Result<WgpuTensor> {
        sample::sample(self, logits, rows)
    }

    /// Graphs record the step's commands (bind groups included) once and re-encode them;
    /// `TESSERA_WGPU_GRAPHS=0` turns them off (every step eager, for comparisons).
    fn graph_supported(&self) -> bool {
        self.graphs
    }

    /// One graph per batch size: no kernel choice depends on the context length.
    fn graph_variant(&self, _num_seqs: usize, _max_seq_len: usize) -> Option<u64> {
        self.graphs.then_some(0)
    }

    fn graph_begin(&self) -> Result<()> {
        self.settle_kv()?;
        self.recorder.begin_capture()
    }

    fn graph_end(&self, ok: bool) -> Result<u64> {
        let settled = self.settle_kv();
        let id = self.recorder.end_capture(&self.gpu, ok && settled.is_ok());
        settled?;
        self.gpu.errors.check("device error while recording a graph")?;
        id
    }

    fn graph_replay(&self, id: u64) -> Result<()> {
        self.settle_kv()?;
        self.recorder.replay(&self.gpu, id)
    }

    fn write_u32(&self, dst: &WgpuTensor, values: &[u32]) -> Result<()> {
        let op = Op::Upload;
        tensor::index(op, dst)?;
        if values.len() != dst.numel() {
            return Err(shape_err(op, format!("{} values do not fill {:?}", values.len(), dst.shape)));
        }
        if values.is_empty() {
            return Ok(());
        }
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.settle_kv()?;
        self.recorder.write(&self.gpu, &dst.buffer, &bytes)?;
        dst.host_u32.set(Some(values.into()));
        Ok(())
    }

    fn copy_into(&self, dst: &WgpuTensor, src: &WgpuTensor) -> Result<()> {
        let op = Op::Upload;
        if dst.dtype != src.dtype || dst.byte_len() != src.byte_len() {
            return Err(shape_err(
                op,
                format!("copy_into: {} {:?} into {} {:?}", src.dtype, src.shape, dst.dtype, dst.shape),
            ));
        }
        let size = src.byte_len().div_ceil(4) * 4;
        self.settle(src)?;
        self.settle_kv()?;
        if size > 0 {
            self.recorder.copy(&self.gpu, &src.buffer, &dst.buffer, size)?;
        }
        dst.host_u32.set(src.host_u32.get());
        Ok(())
    }

    fn scatter_ids(&self, dst: &mut WgpuTensor, src: &WgpuTensor, pairs: &WgpuTensor) -> Result<()> {
        ops::scatter_ids(self, dst, src, pairs)
    }

    fn read_begin(&self, t: &WgpuTensor) -> Result<()> {
        self.settle(t)?;
        self.settle_kv()?;
        self.recorder.read_begin(&self.gpu, &t.buffer, t.byte_len())
    }

    async fn to_host(&self, t: &WgpuTensor) -> Result<HostTensor<'static>> {
        self.settle(t)?;
        self.settle_kv()?;
        let data = self.recorder.read(&self.gpu, &t.buffer, t.byte_len()).await?;
        Ok(HostTensor { dtype: t.dtype(), shape: t.shape.clone(), data: data.into() })
    }
}
