//! The pipelined decode-attention kernel (kernels/attention_decode.cu, `PIPE`: cp.async K/V
//! stages in shared memory, per-warp running max merged at the end; opt-in through
//! `CudaBackend::set_decode_pipeline`, `TESSERA_ATTN_DECODE_V2`) against the CPU backend (the
//! specification), f32 / f16 / bf16, on fresh random inputs (seed printed; `TESSERA_SEED`
//! replays), outputs poisoned before every kernel:
//! - `Always`: decode batches of 64–256 rows with odd contexts 1–1500, GQA groups 1, 2, 4,
//!   7 and 8 (7: a padded head in the block), head_dim 64/128/256, block sizes 16 and 32,
//!   sliding window and softcap, forced key splits (the combine after pipelined partials), a
//!   few lone sequences (one-key tiles, warps that see no key), decode rows between prefill
//!   rows (the general kernel beside it);
//! - `Auto`: the SmolLM3-3B shape at batch 256 (1024 blocks: pipelined on an H100/H200) and
//!   at batch 8 (the registers variant), same tolerance.
//!
//! Each case prints a `PARITY` line (‖out − ref‖ / ‖ref‖ below 1e-5 for f32, 1e-2 for 16-bit).
//! Runs on the GPU machine (scripts/gpu-suite.sh `quick`, scripts/gpu/att256-ab.sh); without
//! a GPU it fails (CI only builds it).

#![cfg(feature = "cuda")]

mod cuda_common;

use cuda_common::{pair_attention_case, AttnCase, Ctx, Rng, DTYPES};
use tessera::cuda::DecodePipeline;

/// `n` decode rows with contexts in [1, max_ctx], a few at the edges (1, tile multiples ± 1).
fn decode_rows(rng: &mut Rng, n: usize, max_ctx: usize) -> Vec<(usize, usize)> {
    let edges = [1, 2, 31, 32, 33, 63, 64, 65, 129, max_ctx];
    (0..n).map(|i| (1, if i < edges.len() { edges[i].min(max_ctx) } else { 1 + rng.below(max_ctx) })).collect()
}

#[allow(clippy::too_many_arguments)]
fn case(
    seqs: Vec<(usize, usize)>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    block_size: usize,
    window: Option<usize>,
    softcap: Option<f32>,
    splits: u32,
) -> AttnCase {
    AttnCase { seqs, heads, kv_heads, head_dim, block_size, window, softcap, splits }
}

#[test]
fn pipelined_decode_attention_matches_cpu() {
    for dtype in DTYPES {
        let Some(mut c) = Ctx::new(dtype, "pipelined_decode_attention") else { return };
        c.gpu.set_decode_pipeline(DecodePipeline::Always);
        let r = &mut c.rng;
        let cases = [
            // SmolLM3-3B: 16 q / 4 kv heads, head_dim 128, pages of 16.
            case(decode_rows(r, 256, 1500), 16, 4, 128, 16, None, None, 0),
            case(decode_rows(r, 64, 1500), 8, 8, 64, 32, None, None, 0),
            case(decode_rows(r, 128, 1000), 16, 8, 256, 16, Some(300), Some(30.0), 0),
            case(decode_rows(r, 96, 1500), 32, 4, 128, 32, None, Some(20.0), 0),
            case(decode_rows(r, 64, 700), 28, 4, 64, 16, Some(100), None, 0),
            case(decode_rows(r, 200, 600), 16, 4, 256, 32, None, None, 0),
            case(decode_rows(r, 80, 1200), 16, 2, 128, 16, Some(513), Some(10.0), 0),
            // Forced splits: partials of the pipelined kernel merged by the combine.
            case(decode_rows(r, 64, 1500), 16, 4, 128, 16, None, None, 3),
            case(decode_rows(r, 64, 900), 8, 1, 64, 32, Some(77), None, 5),
            // Lone sequences: automatic splits of one tile, warps with no key.
            case(vec![(1, 1), (1, 33), (1, 1500)], 16, 4, 128, 16, None, None, 0),
            case(vec![(1, 5000), (1, 3)], 8, 8, 256, 16, None, None, 0),
            // Decode rows between prefill rows: the general kernel takes the others.
            case(vec![(7, 300), (1, 37), (1, 1100), (33, 33), (1, 1), (5, 140), (1, 200)], 16, 4, 128, 16, None, None, 0),
        ];
        for case in &cases {
            let (g, r, label) = pair_attention_case(&mut c, case);
            c.check("paged_attention", &format!("{label} pipelined"), &g, &r);
        }

        // Auto: a batch-256 SmolLM3 step takes the pipelined kernel, a batch of 8 does not.
        c.gpu.set_decode_pipeline(DecodePipeline::Auto);
        let r = &mut c.rng;
        let auto = [case(decode_rows(r, 256, 800), 16, 4, 128, 16, None, None, 0), case(decode_rows(r, 8, 800), 16, 4, 128, 16, None, None, 0)];
        for case in &auto {
            let (g, r, label) = pair_attention_case(&mut c, case);
            c.check("paged_attention", &format!("{label} auto"), &g, &r);
        }
        c.gpu.set_decode_pipeline(DecodePipeline::Off);
        c.gpu.set_attention_splits(0);
        c.finish();
    }
}
