//! Single-stream decode on the GPU: one-tile key splits for small grids (default:
//! `set_decode_tile_splits`, `TESSERA_ATTN_TILE_SPLITS`), the partials' (max, sum) written
//! by every split, empty ones too (no zero fill: the partials are poisoned NaN before every
//! kernel, so a split that wrote nothing shows), 2..8 splits merged inside a thread block
//! cluster and by the combine launch (`set_decode_cluster`), the query heads a block takes
//! (one for a lone sequence by default; forced 1 and 2: `set_decode_heads_per_block`), the
//! first tile's older keys loaded before `pdl_wait` or after (`set_decode_early_kv`), and the multi-block argmax of wide rows
//! (`argmax_split`, last-block-done counters), against the CPU backend (the specification),
//! f32 / f16 / bf16, fresh random inputs (seed printed; `TESSERA_SEED` replays), outputs
//! poisoned before every kernel:
//! - lone decode sequences of 1 key, a tile's worth ± 1 (tiles of 8 to 128 keys by dtype,
//!   head_dim and group), many splits (5000 keys), sliding windows that empty whole splits,
//!   softcap, GQA groups 1/2/4/7/8, head_dim 64/128/256, small batches and decode rows beside
//!   prefill rows, forced splits (3, 7), the pipelined variant; under both split rules;
//! - decode graphs: a recorded attention (+ argmax) step replayed with new contexts written
//!   in place (empty trailing splits in some rounds, not in others), against the CPU each
//!   time (a stale partial or an argmax counter left non-zero shows as a wrong row), under
//!   both split rules;
//! - argmax of 1–16 rows of 16k–262k columns: ties across spans, NaN and -inf rows, columns
//!   not a whole number of vectors, repeated launches.
//!
//! Each case prints a `PARITY` line. Runs on the GPU machine (scripts/gpu-suite.sh `quick`
//! and `parity`); without a GPU it fails (CI only builds it).

#![cfg(feature = "cuda")]

mod cuda_common;

use cuda_common::{pair_attention_case, AttnCase, Ctx, DTYPES};
use tessera::cuda::DecodePipeline;
use tessera_core::backend::{AttentionMetadata, AttentionParams, Backend};
use tessera_core::tensor::DType;

fn lone(ctx: usize, heads: usize, kv_heads: usize, head_dim: usize, window: Option<usize>, softcap: Option<f32>) -> AttnCase {
    AttnCase { seqs: vec![(1, ctx)], heads, kv_heads, head_dim, block_size: 16, window, softcap, splits: 0 }
}

fn cases() -> Vec<AttnCase> {
    let mut v = Vec::new();
    // SmolLM3-3B's shape over the tile edges of every dtype (8 to 128 keys a tile).
    for ctx in [1, 2, 15, 16, 17, 32, 33, 63, 64, 65, 127, 128, 129, 130, 200, 257, 384, 1000, 5000] {
        v.push(lone(ctx, 16, 4, 128, None, None));
    }
    // GQA groups 1, 2, 7 (a padded head in the block) and 8; head_dim 64 and 256.
    for (h, kv, d) in [(8, 8, 64), (16, 8, 128), (28, 4, 64), (32, 4, 128), (16, 4, 256), (8, 1, 256)] {
        for ctx in [1, 65, 129, 777] {
            v.push(lone(ctx, h, kv, d, None, None));
        }
    }
    // Sliding windows that leave the first splits empty; softcap.
    v.push(lone(1000, 16, 4, 128, Some(100), None));
    v.push(lone(5000, 16, 4, 128, Some(513), Some(30.0)));
    v.push(lone(130, 16, 4, 128, Some(64), Some(20.0)));
    v.push(lone(65, 8, 8, 64, Some(1), None));
    // Small batches, and decode rows beside prefill rows (the general kernel takes those).
    let batch = |seqs: Vec<(usize, usize)>, h: usize, kv: usize, d: usize| AttnCase {
        seqs,
        heads: h,
        kv_heads: kv,
        head_dim: d,
        block_size: 16,
        window: None,
        softcap: None,
        splits: 0,
    };
    v.push(batch(vec![(1, 1), (1, 65), (1, 700)], 16, 4, 128));
    v.push(batch((0..8).map(|i| (1, 1 + 97 * i)).collect(), 16, 4, 128));
    v.push(batch(vec![(7, 300), (1, 37), (1, 1100), (33, 33), (1, 1), (1, 200)], 16, 4, 128));
    // Forced splits (not powers of two).
    for splits in [3, 7] {
        v.push(AttnCase { splits, ..lone(1000, 16, 4, 128, None, None) });
        v.push(AttnCase { splits, ..batch(vec![(1, 5), (1, 400), (1, 90)], 32, 4, 64) });
    }
    v
}

#[test]
fn small_grid_decode_attention_matches_cpu() {
    for dtype in DTYPES {
        let Some(mut c) = Ctx::new(dtype, "small_grid_decode_attention") else { return };
        // gh: query heads a block forced (0 = the default: one for a lone sequence, the
        // group's for batches).
        // early: the first tile's older keys loaded before pdl_wait (the default) or after.
        let configs = [(true, true, 0, true), (true, false, 0, true), (false, true, 0, true), (true, true, 1, true), (true, false, 2, true), (true, true, 0, false), (true, false, 1, false)];
        for (tile, cluster, gh, early) in configs {
            c.gpu.set_decode_tile_splits(tile);
            c.gpu.set_decode_cluster(cluster);
            c.gpu.set_decode_heads_per_block(gh);
            c.gpu.set_decode_early_kv(early);
            for case in &cases() {
                let (g, r, label) = pair_attention_case(&mut c, case);
                c.check("paged_attention", &format!("{label} tile={tile} cluster={cluster} gh={gh} early={early}"), &g, &r);
            }
        }
        c.gpu.set_decode_early_kv(true);
        c.gpu.set_decode_heads_per_block(0);
        c.gpu.set_decode_cluster(true);
        // The pipelined variant (its own 32-key tiles; 48 KB of dynamic shared memory): empty
        // trailing splits and a window that empties the first ones write their (-inf, 0) too.
        c.gpu.set_decode_tile_splits(true);
        c.gpu.set_decode_pipeline(DecodePipeline::Always);
        for case in [lone(1, 16, 4, 128, None, None), lone(129, 16, 4, 128, None, None), lone(3000, 32, 4, 64, Some(700), None)] {
            let (g, r, label) = pair_attention_case(&mut c, &case);
            c.check("paged_attention", &format!("{label} pipelined"), &g, &r);
        }
        c.gpu.set_decode_pipeline(DecodePipeline::Auto);
        c.gpu.set_attention_splits(0);
        c.finish();
    }
}

/// Decode metadata of `lens` (one query token each) over shuffled blocks of 16.
struct Step {
    tables: Vec<u32>,
    max_blocks: usize,
    num_blocks: usize,
}

fn step_tables(c: &mut Ctx, n: usize, max_ctx: usize) -> Step {
    let max_blocks = max_ctx.div_ceil(16);
    let num_blocks = n * max_blocks + 1;
    let mut ids: Vec<u32> = (1..num_blocks as u32).collect();
    c.rng.shuffle(&mut ids);
    Step { tables: ids, max_blocks, num_blocks }
}

/// Decode-only metadata of `n` sequences (one token each) over pages of 16.
fn decode_meta<T>(seq_lens: T, qsl: T, tables: T, order: T, n: usize, max_blocks: usize, max_seq_len: usize) -> AttentionMetadata<T> {
    AttentionMetadata {
        query_start_loc: qsl,
        seq_lens,
        block_tables: tables,
        seq_order: order,
        num_seqs: n,
        num_decode_seqs: n,
        max_blocks_per_seq: max_blocks,
        block_size: 16,
        max_query_len: 1,
        max_seq_len,
    }
}

#[test]
fn decode_graph_replays_match_cpu() {
    for (dtype, tile) in [(DType::F32, true), (DType::BF16, true), (DType::BF16, false)] {
        let Some(mut c) = Ctx::new(dtype, "decode_graph_replays") else { return };
        c.gpu.set_decode_tile_splits(tile);
        // Graphs need unsynchronised launches (and no poison inside the recording).
        c.gpu.set_sync_launches(false);
        c.gpu.set_poison_outputs(false);
        let (n, heads, kv_heads, d, max_ctx) = (2usize, 16usize, 4usize, 128usize, 1024usize);
        let s = step_tables(&mut c, n, max_ctx);
        let q = c.rand(&[n, heads * d], 1.0);
        let kc = c.rand(&[s.num_blocks, 16, kv_heads * d], 1.0);
        let vc = c.rand(&[s.num_blocks, 16, kv_heads * d], 1.0);
        let logits = c.rand(&[n, 128_256], 4.0);
        let (gq, cq) = c.pair_u32(&[0, 1, 2], &[n + 1]);
        let (gt, ct) = c.pair_u32(&s.tables, &[n, s.max_blocks]);
        let (go, co) = c.pair_u32(&[0, 1], &[n]);
        let p = AttentionParams { num_heads: heads, num_kv_heads: kv_heads, head_dim: d, scale: 0.088, sliding_window: None, softcap: None };
        // Contexts of one graph variant (the hint's splits), each round a context the hint
        // covers. Tile rule, hint 256: 4 splits of 64 keys in bf16 (16 of 16 in f32), the
        // trailing ones empty in some rounds and busy in the round before (a split that wrote
        // no (-inf, 0) would merge the previous replay's partials). Older rule, hint 255:
        // 2 splits of 128 in bf16.
        let (hint, rounds): (usize, [[u32; 2]; 4]) = if tile {
            (256, [[200, 140], [130, 256], [255, 129], [160, 161]])
        } else {
            (255, [[200, 140], [130, 255], [254, 129], [160, 161]])
        };
        let (gs, _) = c.pair_u32(&rounds[0], &[n]);
        let mb = s.max_blocks;
        // As the runner: metadata bounded by the table, the real longest context as the hint,
        // an eager step first, then the recording into persistent buffers.
        let gmeta = decode_meta(gs.clone(), gq.clone(), gt.clone(), go.clone(), n, mb, mb * 16);
        c.gpu.set_attention_hint(Some(hint));
        let eager = c.gpu.paged_attention(&q.0, &kc.0, &vc.0, &gmeta, &p).expect("eager attention");
        let out_buf = c.gpu.paged_attention(&q.0, &kc.0, &vc.0, &gmeta, &p).expect("eager attention");
        let ids_buf = c.gpu.argmax(&logits.0).expect("eager argmax");
        c.gpu.graph_begin().expect("graph_begin");
        let recorded = (|| {
            let out = c.gpu.paged_attention(&q.0, &kc.0, &vc.0, &gmeta, &p)?;
            c.gpu.copy_into(&out_buf, &out)?;
            let ids = c.gpu.argmax(&logits.0)?;
            c.gpu.copy_into(&ids_buf, &ids)
        })();
        let id = c.gpu.graph_end(recorded.is_ok()).expect("graph_end");
        c.gpu.set_attention_hint(None);
        let want_ids = c.cpu.argmax(&logits.1).unwrap();
        for (k, lens) in rounds.iter().enumerate() {
            c.gpu.write_u32(&gs, lens).expect("write seq_lens");
            // Poison what the replay must rewrite.
            c.gpu.write_u32(&ids_buf, &[u32::MAX; 2]).expect("poison ids");
            let zeros = c.gpu.upload(&tessera_core::tensor::HostTensor::from_f32(&vec![f32::NAN; n * heads * d], &[n, heads * d])).unwrap();
            c.gpu.copy_into(&out_buf, &zeros).expect("poison out");
            c.gpu.graph_replay(id).expect("replay");
            let (_, cs) = c.pair_u32(lens, &[n]);
            let cmeta = decode_meta(cs, cq.clone(), ct.clone(), co.clone(), n, mb, 256);
            let r = c.cpu.paged_attention(&q.1, &kc.1, &vc.1, &cmeta, &p).unwrap();
            c.check("paged_attention", &format!("graph replay {k} lens {lens:?} H{heads} KV{kv_heads} D{d} tile={tile}"), &out_buf, &r);
            c.check_u32("argmax", &format!("graph replay {k} 2x128256"), &ids_buf, &want_ids);
        }
        // The eager result of the first contexts, for completeness.
        let (_, cs) = c.pair_u32(&rounds[0], &[n]);
        let r = c.cpu.paged_attention(&q.1, &kc.1, &vc.1, &decode_meta(cs, cq, ct, co, n, mb, 256), &p).unwrap();
        c.check("paged_attention", "eager before the recording", &eager, &r);
        c.finish();
    }
}

#[test]
fn argmax_split_matches_cpu() {
    for dtype in DTYPES {
        let Some(mut c) = Ctx::new(dtype, "argmax_split") else { return };
        // Repeated launches of each shape: every one must leave its counters at zero.
        for (rows, cols) in [(1, 128_256), (2, 128_256), (1, 128_257), (4, 16_384), (16, 262_144), (3, 50_001), (1, 16_383)] {
            for rep in 0..2 {
                let x = c.rand(&[rows, cols], 5.0);
                let g = c.gpu.argmax(&x.0).unwrap();
                let r = c.cpu.argmax(&x.1).unwrap();
                c.check_u32("argmax", &format!("{rows}x{cols} #{rep}"), &g, &r);
            }
        }
        // Ties in different spans (the first wins), a NaN late in a row, an all -inf row, an
        // all-equal row, the maximum at the very last column.
        let cols = 128_256;
        let mut v = vec![0.5f32; 5 * cols];
        v[70_000] = 3.0;
        v[5_000] = 3.0;
        v[cols + 100_000] = f32::NAN;
        v[cols + 3] = 9.0;
        v[2 * cols..3 * cols].iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
        v[5 * cols - 1] = 2.0;
        let (gx, cx) = c.pair_exact(&v, &[5, cols]);
        let g = c.gpu.argmax(&gx).unwrap();
        let r = c.cpu.argmax(&cx).unwrap();
        c.check_u32("argmax", "ties across spans / NaN / -inf / equal / last column", &g, &r);
        c.finish();
    }
}
