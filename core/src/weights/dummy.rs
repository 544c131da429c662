//! `--load-format dummy`: random weights of the right shapes, from config.json alone.
//!
//! Deterministic (a SplitMix64 stream seeded by the tensor name), small uniform values like
//! vLLM's dummy loader, so benchmarks at real sizes need nothing on disk.

use std::borrow::Cow;

use super::{Result, WeightSource};
use crate::tensor::{DType, HostTensor};

pub struct DummyWeights {
    pub seed: u64,
    /// Half-width of the uniform distribution of matrix entries.
    pub scale: f32,
}

impl Default for DummyWeights {
    fn default() -> Self {
        DummyWeights { seed: 0, scale: 0.02 }
    }
}

impl WeightSource for DummyWeights {
    fn get(&self, name: &str, shape: &[usize]) -> Result<HostTensor<'_>> {
        let mut state = name.bytes().fold(self.seed ^ 0x9e37_79b9_7f4a_7c15, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        });
        let n: usize = shape.iter().product();
        // Norm weights (1-D, "norm" in the name) near 1 keep activations in range.
        let is_norm = shape.len() == 1 && name.contains("norm");
        let mut data = Vec::with_capacity(n * 4);
        for _ in 0..n {
            let u = (splitmix64(&mut state) >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
            let v = (2.0 * u - 1.0) * self.scale + if is_norm { 1.0 } else { 0.0 };
            data.extend_from_slice(&v.to_le_bytes());
        }
        Ok(HostTensor { dtype: DType::F32, shape: shape.to_vec(), data: Cow::Owned(data) })
    }

    fn contains(&self, _name: &str) -> bool {
        true
    }

    fn describe(&self) -> String {
        "dummy weights".into()
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
