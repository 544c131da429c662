//! `Backend::sample` on the device (kernels/sampling.cu): one block per row reproduces
//! `tessera_core::sample::sample_row` (temperature, top-k, top-p, min-p, one draw per row), so
//! only the sampled ids come back to the host instead of the logits. `Backend::argmax`
//! (greedy decoding; kernels/elementwise.cu): one block a row, or a few wide rows over
//! several blocks each (`argmax_split`, merged by the last block of a row).
//!
//! ```text
//! per-row arguments, uploaded once per call: temperature f32 [M], top_k u32 [M],
//! top_p f32 [M], min_p f32 [M], uniform f64 [M]  ->  ids u32 [M]
//! ```

use cudarc::driver::LaunchConfig;
use tessera_core::backend::{Op, Result};
use tessera_core::sample::RowSampling;
use tessera_core::tensor::DType;

use super::device::Arg;
use super::ops::{dims2, float, rows_cfg, u32_arg, vec_ok};
use super::{shape_err, CudaBackend, CudaTensor, THREADS};

/// Errors name the op closest to sampling in the trait's list.
const OP: Op = Op::Argmax;

impl CudaBackend {
    /// Raw little-endian bytes on the device (a U32 tensor of `bytes.len() / 4` words).
    fn upload_words(&self, bytes: &[u8]) -> Result<CudaTensor> {
        let words = bytes.len() / 4;
        self.upload_bytes_as(bytes, DType::U32, &[words])
    }

    pub(crate) fn op_argmax(&self, x: &CudaTensor) -> Result<CudaTensor> {
        let op = Op::Argmax;
        let dt = float(op, x)?;
        let (rows, cols) = dims2(op, "x", x)?;
        if cols == 0 {
            return Err(shape_err(op, format!("x {:?} has empty rows", x.shape)));
        }
        let out = self.empty(op, DType::U32, &[rows])?;
        if rows == 0 {
            return Ok(out);
        }
        let vok = vec_ok(dt, cols) == 1 && x.ptr.is_multiple_of(16);
        let counters = self.argmax_counters.shape[0];
        let parts = argmax_parts(rows, cols, counters, self.device.info.multiprocessors as usize);
        if parts > 1 {
            // A few vocabulary-sized rows (greedy decoding): spans of ~4k columns, one block
            // each, merged by the last block of a row (a counter a row).
            let f = self.func(op, "elementwise", "argmax_split", dt)?;
            let part_v = self.empty(op, DType::F32, &[rows * parts])?;
            let part_i = self.empty(op, DType::U32, &[rows * parts])?;
            let args = [
                Arg::Ptr(x.ptr),
                Arg::Ptr(out.ptr),
                Arg::U32(u32_arg(op, "cols", cols)?),
                Arg::U32(vok as u32),
                Arg::Ptr(part_v.ptr),
                Arg::Ptr(part_i.ptr),
                Arg::Ptr(self.argmax_counters.ptr),
            ];
            let cfg = LaunchConfig { grid_dim: (rows as u32, parts as u32, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
            self.launch(op, &f, cfg, &args)?;
            return Ok(out);
        }
        let f = self.func(op, "elementwise", "argmax", dt)?;
        // Vocabulary-sized rows (greedy decoding) get a full block of 1024 threads.
        let threads = if cols >= 8192 { 1024 } else { THREADS };
        let cfg = rows_cfg(u32_arg(op, "rows", rows)? as usize, threads);
        self.launch(op, &f, cfg, &[Arg::Ptr(x.ptr), Arg::Ptr(out.ptr), Arg::U32(u32_arg(op, "cols", cols)?), Arg::U32(vok as u32)])?;
        Ok(out)
    }

    pub(crate) fn op_sample(&self, logits: &CudaTensor, rows: &[RowSampling]) -> Result<CudaTensor> {
        let dt = float(OP, logits)?;
        let (m, vocab) = dims2(OP, "logits", logits)?;
        if rows.len() != m {
            return Err(shape_err(OP, format!("sample: {} row arguments for logits {:?}", rows.len(), logits.shape)));
        }
        if m == 0 {
            return self.empty(OP, DType::U32, &[0]);
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
        Ok(out)
    }
}

/// Blocks a row of `argmax_split` (1 = the one-block-a-row kernel): rows of at least 16k
/// columns, while they have counters (`counters`: one a row) and the grid stays within 2
/// blocks an SM, take a block per ~4k columns (at most 64).
pub(crate) fn argmax_parts(rows: usize, cols: usize, counters: usize, sms: usize) -> usize {
    if cols < 16384 || rows == 0 || rows > counters {
        return 1;
    }
    let parts = cols.div_ceil(4096).min(64).min((2 * sms / rows).max(1));
    if parts < 2 {
        1
    } else {
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::argmax_parts;

    #[test]
    fn argmax_splits_only_few_wide_rows() {
        // Greedy single stream on 132 SMs: 128256 logits -> 32 blocks of ~4k columns.
        assert_eq!(argmax_parts(1, 128256, 528, 132), 32);
        assert_eq!(argmax_parts(4, 128256, 528, 132), 32);
        // Many rows fill the SMs one block each; narrow rows and rows past the counters too.
        assert_eq!(argmax_parts(256, 128256, 528, 132), 1);
        assert_eq!(argmax_parts(1, 8192, 528, 132), 1);
        assert_eq!(argmax_parts(600, 128256, 528, 1000), 1);
        assert_eq!(argmax_parts(16, 262144, 528, 132), 16);
        assert_eq!(argmax_parts(0, 128256, 528, 132), 1);
    }
}
