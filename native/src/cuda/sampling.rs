//! `Backend::sample` on the device (kernels/sampling.cu): one block per row reproduces
//! `tessera_core::sample::sample_row` (temperature, top-k, top-p, min-p, one draw per row), so
//! only the sampled ids come back to the host instead of the logits.
//!
//! ```text
//! per-row arguments, uploaded once per call: temperature f32 [M], top_k u32 [M],
//! top_p f32 [M], min_p f32 [M], uniform f64 [M]  ->  ids u32 [M]
//! ```

use cudarc::driver::LaunchConfig;
use tessera_core::backend::{Op, Result, Tensor};
use tessera_core::sample::RowSampling;
use tessera_core::tensor::{DType, HostTensor};

use super::device::Arg;
use super::ops::{dims2, float, u32_arg};
use super::{shape_err, CudaBackend, CudaTensor};

/// Errors name the op closest to sampling in the trait's list.
const OP: Op = Op::Argmax;

impl CudaBackend {
    /// Raw little-endian bytes on the device (a U32 tensor of `bytes.len() / 4` words).
    fn upload_words(&self, bytes: &[u8]) -> Result<CudaTensor> {
        let words = bytes.len() / 4;
        self.upload_bytes_as(bytes, DType::U32, &[words])
    }

    pub(crate) async fn op_sample(&self, logits: &CudaTensor, rows: &[RowSampling]) -> Result<Vec<u32>> {
        let dt = float(OP, logits)?;
        let (m, vocab) = dims2(OP, "logits", logits)?;
        if rows.len() != m {
            return Err(shape_err(OP, format!("sample: {} row arguments for logits {:?}", rows.len(), logits.shape)));
        }
        if m == 0 {
            return Ok(Vec::new());
        }
        if vocab == 0 {
            return Err(shape_err(OP, format!("sample: logits {:?} have empty rows", logits.shape)));
        }
        let bytes_of = |f: &dyn Fn(&RowSampling) -> Vec<u8>| rows.iter().flat_map(f).collect::<Vec<u8>>();
        let temperature = self.upload_words(&bytes_of(&|r| r.temperature.to_le_bytes().to_vec()))?;
        let top_k = self.upload_words(&bytes_of(&|r| r.top_k.to_le_bytes().to_vec()))?;
        let top_p = self.upload_words(&bytes_of(&|r| r.top_p.to_le_bytes().to_vec()))?;
        let min_p = self.upload_words(&bytes_of(&|r| r.min_p.to_le_bytes().to_vec()))?;
        let uniform = self.upload_words(&bytes_of(&|r| r.uniform.to_le_bytes().to_vec()))?;
        let out = self.empty(OP, DType::U32, &[m])?;
        let f = self.func(OP, "sampling", "sample", dt)?;
        let args = [
            Arg::Ptr(logits.ptr),
            Arg::U32(u32_arg(OP, "vocab", vocab)?),
            Arg::Ptr(temperature.ptr),
            Arg::Ptr(top_k.ptr),
            Arg::Ptr(top_p.ptr),
            Arg::Ptr(min_p.ptr),
            Arg::Ptr(uniform.ptr),
            Arg::Ptr(out.ptr),
        ];
        let cfg = LaunchConfig { grid_dim: (u32_arg(OP, "rows", m)?, 1, 1), block_dim: (1024, 1, 1), shared_mem_bytes: 0 };
        self.launch(OP, &f, cfg, &args)?;
        let host: HostTensor<'static> = tessera_core::backend::Backend::to_host(self, &out).await?;
        debug_assert_eq!(host.shape, out.shape());
        Ok(host.to_u32())
    }
}
