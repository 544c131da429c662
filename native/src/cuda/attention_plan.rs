//! The launch plan of paged attention, host side only: the kernels' tile constants mirrored,
//! which decode-attention variant a grid takes, keys per tile, shared memory, and the key
//! splits (split-K) of the decode and general kernels. attention.rs launches what this picks.

use tessera_core::tensor::DType;

use super::tensor::vec_elems;
use super::DecodePipeline;
/// Rows (token, head) per block, warps per block, keys per warp tile: kernels/attention.cu.
pub(crate) const ATT_ROWS: usize = 8;
pub(crate) const ATT_WARPS: usize = 4;
pub(crate) const ATT_KEYS: usize = 32;
/// The largest head_dim the kernels take (32 lanes x 8 dims).
pub(crate) const MAX_HEAD_DIM: usize = 256;
/// Warps per block of the decode kernel (kernels/attention_decode.cu).
pub(crate) const DEC_WARPS: usize = 4;
/// Blocks an SM from which [`DecodePipeline::Auto`] takes the pipelined decode kernel: two
/// waves of the registers variant (168 registers for bf16, head_dim 128, GH 4: 3 blocks an SM).
pub(crate) const PIPELINE_MIN_BLOCKS_PER_SM: usize = 6;
/// Tiles in flight or computed of the pipelined decode kernel (`DecodeShape::STAGES`).
pub(crate) const DEC_STAGES: usize = 3;
/// Query rows and warps per block of the tensor-core prefill kernel (attention_prefill.cu).
pub(crate) const PF_ROWS: usize = 64;
pub(crate) const PF_WARPS: usize = 4;

/// One decode-only launch's shape per sequence, as graph.rs keys graphs on it:
/// `keys_per_tile` 0 = the general kernel (its splits: [`choose_splits`]), else the decode
/// kernel's keys per tile, of the registers and of the pipelined variant (its splits:
/// [`choose_decode_splits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct DecodeGrid {
    pub blocks_per_seq: usize,
    pub keys_per_tile: usize,
    pub pipelined_keys_per_tile: usize,
}

impl DecodeGrid {
    /// `(pipelined, num_splits, split_len)` of this launch for `num_seqs` sequences under the
    /// [`DecodePipeline`] mode `pipeline` (as u32); `tile_splits`: the decode kernel's splits
    /// by [`choose_decode_splits`]'s one-tile rule (else the older rounding).
    pub fn launch(&self, forced: u32, pipeline: u32, tile_splits: bool, num_seqs: usize, sms: usize, max_seq_len: usize) -> (bool, usize, usize) {
        let blocks = num_seqs * self.blocks_per_seq;
        match self.keys_per_tile {
            0 => {
                let (n, len) = choose_splits(forced, blocks, sms, max_seq_len);
                (false, n, len)
            }
            kpb => {
                let pipelined = use_pipeline(pipeline, blocks, sms);
                let kpb = if pipelined { self.pipelined_keys_per_tile } else { kpb };
                let (n, len) = choose_decode_splits(forced, blocks, sms, max_seq_len, kpb, tile_splits);
                (pipelined, n, len)
            }
        }
    }
}

/// Whether a decode launch of `blocks` blocks (before splits) takes the pipelined kernel.
pub(crate) fn use_pipeline(mode: u32, blocks: usize, sms: usize) -> bool {
    mode == DecodePipeline::Always as u32 || (mode == DecodePipeline::Auto as u32 && blocks >= PIPELINE_MIN_BLOCKS_PER_SM * sms)
}

/// Whether the decode kernel has a variant for `head_dim`.
pub(crate) fn decode_head_dim(head_dim: usize) -> bool {
    matches!(head_dim, 64 | 128 | 256)
}

/// Query heads a decode block serves (1, 2, 4 or 8; groups of more take several blocks).
pub(crate) fn decode_heads_per_block(group: usize) -> usize {
    match group {
        0..=1 => 1,
        2 => 2,
        3..=4 => 4,
        _ => 8,
    }
}

/// Query heads a decode block serves for `num_decode` sequences: the whole group's
/// ([`decode_heads_per_block`]: each K/V row read once for the group), except for a single
/// sequence, whose grid (kv heads x splits: 32 blocks of 4 warps for SmolLM3-3B) leaves most
/// schedulers idle while each warp runs a long serial chain of FMAs, shuffles and exps (ncu:
/// the SMs busy ~9.8 of the g4 kernel's 11.3 us at 6 % occupancy): there a block takes one
/// head, 4x the blocks and a quarter of the chain each, the K/V rows re-read from L2 (H200:
/// +3.1–3.3 % single stream; at batch 4 it lost 2.6 %, so batches keep the group).
/// `forced` (`TESSERA_ATTN_GH`, 1/2/4/8) overrides, capped at the group's.
pub(crate) fn decode_heads_for(group: usize, num_decode: usize, forced: usize) -> usize {
    let whole = decode_heads_per_block(group);
    match forced {
        0 if num_decode == 1 => 1,
        0 => whole,
        f => decode_heads_per_block(f.min(8)).min(whole),
    }
}

/// `(KPI, VPL, U)` of `DecodeShape<T, D, GH, PIPE>` in attention_decode.cu: keys a warp
/// covers per load, 16-byte vectors of a row a lane, loads deep.
pub(crate) fn decode_shape(dtype: DType, head_dim: usize, gh: usize, pipelined: bool) -> (usize, usize, usize) {
    let vecs = head_dim / vec_elems(dtype);
    let tg = vecs.min(32);
    let vpl = vecs / tg;
    let kpi = 32 / tg;
    // Pipelined: always 4 vectors a lane a tile (in shared memory, not registers).
    let u0 = if pipelined || gh > 4 || (gh == 4 && vecs >= 32) { 4 } else { 8 };
    (kpi, vpl, (u0 / vpl).max(1))
}

/// Keys one decode block covers per tile: `DecodeShape<T, D, GH, PIPE>::KPB` in attention_decode.cu.
pub(crate) fn decode_keys_per_tile(dtype: DType, head_dim: usize, gh: usize, pipelined: bool) -> usize {
    let (kpi, _, u) = decode_shape(dtype, head_dim, gh, pipelined);
    DEC_WARPS * kpi * u
}

/// Dynamic shared memory of a pipelined decode block: `DecodeShape<T, D, GH, true>::SMEM`
/// (the K/V stages, reused by the final merge of the warps).
pub(crate) fn decode_pipelined_smem(dtype: DType, head_dim: usize, gh: usize) -> usize {
    let (_, vpl, u) = decode_shape(dtype, head_dim, gh, true);
    let stages = DEC_STAGES * u * vpl * 2 * DEC_WARPS * 32 * 16;
    let merge = (DEC_WARPS * gh * head_dim + 2 * DEC_WARPS * gh) * 4;
    stages.max(merge)
}

/// `(num_splits, split_len)` of the decode kernel: `forced` > 0 asks for that many splits;
/// otherwise split only when the grid is short of 4 blocks an SM, into at most 64 splits of
/// at least one tile. split_len and num_splits are powers of two (trailing splits may be
/// empty and exit at once), so a graph replays one variant over a range of contexts.
///
/// `tile`: as many splits as the context has tiles (rounded up) while the grid stays under
/// 4 blocks an SM, so a short lone sequence runs one tile a block (each tile a dependent
/// HBM round trip): 130 keys of 64-key tiles -> 4 splits x 64 (3 busy), not 2 x 128. Else
/// the older rule: whole tiles only (130 keys -> 2 splits, rounded up to 128 keys each).
pub(crate) fn choose_decode_splits(forced: u32, blocks: usize, sms: usize, max_seq_len: usize, kpb: usize, tile: bool) -> (usize, usize) {
    let none = (1, u32::MAX as usize);
    if max_seq_len == 0 {
        return none;
    }
    if forced > 0 {
        let split_len = max_seq_len.div_ceil(forced as usize);
        let n = max_seq_len.div_ceil(split_len);
        return if n <= 1 { none } else { (n, split_len) };
    }
    let tiles = if tile { max_seq_len.div_ceil(kpb.max(1)) } else { max_seq_len / kpb.max(1) };
    let want = (4 * sms).div_ceil(blocks.max(1)).min(tiles).min(64);
    if want <= 1 {
        return none;
    }
    let split_len = max_seq_len.div_ceil(want).next_power_of_two().max(kpb);
    let n = max_seq_len.div_ceil(split_len).next_power_of_two();
    if n <= 1 {
        none
    } else {
        (n, split_len)
    }
}

/// Dynamic shared memory of one attention block (see the layout in attention.cu).
pub(crate) fn attention_smem(dtype: DType, head_dim: usize) -> usize {
    let n = vec_elems(dtype);
    let dp = head_dim.div_ceil(n) * n;
    let q = ATT_ROWS * dp * 4;
    let main = q + ATT_WARPS * ATT_KEYS * (dp + n) * dtype.size() + ATT_WARPS * ATT_ROWS * ATT_KEYS * 4;
    let combine = q + (ATT_WARPS * ATT_ROWS * head_dim + 2 * ATT_WARPS * ATT_ROWS) * 4;
    main.max(combine)
}

/// `(num_splits, split_len)`: how the key range of each sequence is cut. `forced` > 0 asks
/// for that many splits; otherwise split only when the grid would not fill the SMs, with at
/// least 128 keys (one 32-key tile per warp) per split: a lone decode sequence of a few
/// hundred keys then runs on 4x more blocks, each a single pass, instead of looping.
pub(crate) fn choose_splits(forced: u32, blocks: usize, sms: usize, max_seq_len: usize) -> (usize, usize) {
    let none = (1, u32::MAX as usize);
    if max_seq_len == 0 {
        return none;
    }
    let want = if forced > 0 {
        forced as usize
    } else if blocks >= sms || max_seq_len < 2 * ATT_WARPS * ATT_KEYS {
        1
    } else {
        (2 * sms).div_ceil(blocks.max(1)).min(max_seq_len / (ATT_WARPS * ATT_KEYS)).clamp(1, 32)
    };
    if want <= 1 {
        return none;
    }
    let mut split_len = max_seq_len.div_ceil(want);
    if forced == 0 {
        split_len = split_len.next_multiple_of(ATT_WARPS * ATT_KEYS);
    }
    let n = max_seq_len.div_ceil(split_len);
    if n <= 1 {
        none
    } else {
        (n, split_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_keys_per_tile_mirrors_the_kernel() {
        // DecodeShape<T, D, GH>::KPB of attention_decode.cu.
        assert_eq!(decode_keys_per_tile(DType::BF16, 128, 4, false), 64);
        assert_eq!(decode_keys_per_tile(DType::BF16, 64, 4, false), 128);
        assert_eq!(decode_keys_per_tile(DType::BF16, 256, 4, false), 16);
        assert_eq!(decode_keys_per_tile(DType::BF16, 128, 8, false), 32);
        assert_eq!(decode_keys_per_tile(DType::F32, 128, 1, false), 32);
        assert_eq!(decode_keys_per_tile(DType::F32, 256, 8, false), 8);
        // Pipelined: 4 vectors a lane a tile whatever the heads.
        assert_eq!(decode_keys_per_tile(DType::BF16, 128, 4, true), 32);
        assert_eq!(decode_keys_per_tile(DType::BF16, 128, 8, true), 32);
        assert_eq!(decode_keys_per_tile(DType::BF16, 64, 1, true), 64);
        assert_eq!(decode_keys_per_tile(DType::BF16, 256, 4, true), 16);
        assert_eq!(decode_keys_per_tile(DType::F32, 256, 8, true), 8);
        assert_eq!(decode_keys_per_tile(DType::F32, 128, 2, true), 16);
        assert_eq!(decode_heads_per_block(7), 8);
        assert_eq!(decode_heads_per_block(3), 4);
        // One sequence: a head a block; batches: the group; forced: capped at the group.
        assert_eq!(decode_heads_for(4, 1, 0), 1);
        assert_eq!(decode_heads_for(4, 2, 0), 4);
        assert_eq!(decode_heads_for(8, 4, 2), 2);
        assert_eq!(decode_heads_for(2, 4, 8), 2);
        assert_eq!(decode_heads_for(4, 1, 3), 4);
    }

    #[test]
    fn pipelined_decode_shared_memory_and_choice() {
        // DecodeShape<T, D, GH, true>::SMEM: 3 stages x 4 vectors x K/V x 128 lanes x 16 B,
        // or the merge area where larger (never, up to head_dim 256 and GH 8).
        for dt in [DType::F32, DType::F16, DType::BF16] {
            for d in [64, 128, 256] {
                for gh in [1, 2, 4, 8] {
                    assert_eq!(decode_pipelined_smem(dt, d, gh), 49152, "{dt} {d} {gh}");
                }
            }
        }
        let (off, auto, always) = (DecodePipeline::Off as u32, DecodePipeline::Auto as u32, DecodePipeline::Always as u32);
        // SmolLM3-3B at batch 256 on 132 SMs: 1024 blocks (7.8 an SM) -> pipelined; batch 1,
        // or 128 (512 blocks), keeps the registers variant unless forced.
        assert!(use_pipeline(auto, 1024, 132) && !use_pipeline(auto, 512, 132) && !use_pipeline(auto, 4, 132));
        assert!(!use_pipeline(off, 1024, 132) && use_pipeline(always, 4, 132));
        let grid = DecodeGrid { blocks_per_seq: 4, keys_per_tile: 64, pipelined_keys_per_tile: 32 };
        assert_eq!(grid.launch(0, auto, true, 256, 132, 640), (true, 1, u32::MAX as usize));
        assert_eq!(grid.launch(0, off, true, 256, 132, 640), (false, 1, u32::MAX as usize));
        // A lone sequence splits by the variant's own tile: 32 keys pipelined, 64 not.
        assert_eq!(grid.launch(0, always, true, 1, 132, 64), (true, 2, 32));
        assert_eq!(grid.launch(0, off, true, 1, 132, 64), (false, 1, u32::MAX as usize));
        let general = DecodeGrid { blocks_per_seq: 4, keys_per_tile: 0, pipelined_keys_per_tile: 0 };
        assert!(!general.launch(0, always, true, 256, 132, 640).0);
    }

    #[test]
    fn decode_splits_cover_every_key_in_powers_of_two() {
        let none = (1, u32::MAX as usize);
        // A lone short decode on 132 SMs: one-tile splits; a full batch: none.
        for tile in [false, true] {
            assert_eq!(choose_decode_splits(0, 4, 132, 192, 64, tile), (4, 64));
            assert_eq!(choose_decode_splits(0, 1024, 132, 640, 64, tile), none);
            assert_eq!(choose_decode_splits(0, 4, 132, 40, 64, tile), none);
            // Forced: exactly that many ranges.
            assert_eq!(choose_decode_splits(3, 4, 132, 10, 64, tile), (3, 4));
            for blocks in [1, 4, 16, 64, 200, 527] {
                for ctx in [1, 63, 64, 65, 191, 192, 1000, 5000, 131072] {
                    let (n, len) = choose_decode_splits(0, blocks, 132, ctx, 64, tile);
                    if n == 1 {
                        continue;
                    }
                    assert!(n.is_power_of_two() && len.is_power_of_two() && len >= 64 && n <= 64, "{blocks} {ctx}: {n} x {len}");
                    // Every key in some split; at most half the splits empty (n was rounded up).
                    assert!(n * len >= ctx && 2 * ctx > (n / 2) * len, "{blocks} {ctx}: {n} x {len}");
                }
            }
        }
        // SmolLM3-3B single stream (4 kv heads, 64-key tiles) along a 128 + 256 run: one tile
        // a block under the tile rule; the older rule doubles the serial tiles below 256 keys.
        for (ctx, tile, old) in [(129, (4, 64), (2, 128)), (200, (4, 64), (2, 128)), (256, (4, 64), (4, 64)), (330, (8, 64), (4, 128)), (384, (8, 64), (8, 64))] {
            assert_eq!(choose_decode_splits(0, 4, 132, ctx, 64, true), tile, "{ctx}");
            assert_eq!(choose_decode_splits(0, 4, 132, ctx, 64, false), old, "{ctx}");
        }
        // One key over a tile splits in two; a key short of it does not.
        assert_eq!(choose_decode_splits(0, 4, 132, 65, 64, true), (2, 64));
        assert_eq!(choose_decode_splits(0, 4, 132, 65, 64, false), none);
        assert_eq!(choose_decode_splits(0, 4, 132, 64, 64, true), none);
        // A batch of 32 (128 blocks): 5 splits wanted, 256 keys each (rounded up) -> 4.
        assert_eq!(choose_decode_splits(0, 128, 132, 1000, 64, true), (4, 256));
    }
}
