//! CPU backend: paged attention vs a dense f64 reference, hand-checked cases, errors.

use super::*;
use tessera_core::backend::{decode_first, Backend};
// ---- paged attention ------------------------------------------------------------------------

const BS: usize = 4;

/// One sequence of a batch: its whole K/V history `[len, kv_width]` and its block table.
struct Seq {
    k: Vec<f32>,
    v: Vec<f32>,
    len: usize,
    q_len: usize,
    blocks: Vec<u32>,
}

fn rand_seq(rng: &mut Rng, kv_width: usize, len: usize, q_len: usize, blocks: &[u32]) -> Seq {
    Seq {
        k: rng.vec(len * kv_width, 1.0),
        v: rng.vec(len * kv_width, 1.0),
        len,
        q_len,
        blocks: blocks.to_vec(),
    }
}

fn params(h: usize, kvh: usize, d: usize) -> AttentionParams {
    AttentionParams {
        num_heads: h,
        num_kv_heads: kvh,
        head_dim: d,
        scale: 1.0 / (d as f32).sqrt(),
        sliding_window: None,
        softcap: None,
    }
}

fn meta(
    be: &CpuBackend,
    qsl: &[u32],
    seq_lens: &[u32],
    tables: &[u32],
    mb: usize,
) -> AttentionMetadata<CpuTensor> {
    let b = seq_lens.len();
    AttentionMetadata {
        query_start_loc: up_u32(be, qsl, &[b + 1]),
        seq_lens: up_u32(be, seq_lens, &[b]),
        block_tables: up_u32(be, tables, &[b, mb]),
        seq_order: up_u32(be, &decode_first(qsl).0, &[b]),
        num_seqs: b,
        num_decode_seqs: decode_first(qsl).1,
        max_blocks_per_seq: mb,
        block_size: BS,
        max_query_len: qsl
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]) as usize)
            .max()
            .unwrap_or(0),
        max_seq_len: seq_lens.iter().copied().max().unwrap_or(0) as usize,
    }
}

/// Writes every sequence's K/V into fresh caches (through `write_kv`) and builds the metadata.
fn paged(
    be: &CpuBackend,
    seqs: &[Seq],
    num_blocks: usize,
    p: &AttentionParams,
) -> (CpuTensor, CpuTensor, AttentionMetadata<CpuTensor>) {
    let kvw = p.num_kv_heads * p.head_dim;
    let (mut kc, mut vc) = (
        be.zeros(&[num_blocks, BS, kvw]).unwrap(),
        be.zeros(&[num_blocks, BS, kvw]).unwrap(),
    );
    for s in seqs {
        let slots: Vec<u32> = (0..s.len)
            .map(|j| s.blocks[j / BS] * BS as u32 + (j % BS) as u32)
            .collect();
        let (k, v) = (up(be, &s.k, &[s.len, kvw]), up(be, &s.v, &[s.len, kvw]));
        be.write_kv(&mut kc, &mut vc, &k, &v, &up_u32(be, &slots, &[s.len]))
            .unwrap();
    }
    let mb = seqs.iter().map(|s| s.blocks.len()).max().unwrap_or(0);
    let tables: Vec<u32> = seqs
        .iter()
        .flat_map(|s| (0..mb).map(|i| s.blocks.get(i).copied().unwrap_or(0)))
        .collect();
    let mut qsl = vec![0u32];
    for s in seqs {
        qsl.push(qsl.last().unwrap() + s.q_len as u32);
    }
    let lens: Vec<u32> = seqs.iter().map(|s| s.len as u32).collect();
    (kc, vc, meta(be, &qsl, &lens, &tables, mb))
}

fn run_attn(
    be: &CpuBackend,
    q: &[f32],
    seqs: &[Seq],
    num_blocks: usize,
    p: &AttentionParams,
) -> Vec<f32> {
    let (kc, vc, m) = paged(be, seqs, num_blocks, p);
    let rows = q.len() / (p.num_heads * p.head_dim);
    let out = be
        .paged_attention(
            &up(be, q, &[rows, p.num_heads * p.head_dim]),
            &kc,
            &vc,
            &m,
            p,
        )
        .unwrap();
    host(be, &out)
}

/// Dense attention in f64 over each sequence's contiguous K/V with an explicit mask.
fn ref_attn(q: &[f32], seqs: &[Seq], p: &AttentionParams) -> Vec<f64> {
    let (h, d) = (p.num_heads, p.head_dim);
    let kvw = p.num_kv_heads * d;
    let mut out = vec![0.0f64; q.len()];
    let mut row = 0;
    for s in seqs {
        for i in 0..s.q_len {
            let pos = s.len - s.q_len + i;
            for head in 0..h {
                let kv = head / (h / p.num_kv_heads);
                let qr = &q[row * h * d + head * d..][..d];
                let visible = |j: usize| {
                    j <= pos
                        && p.sliding_window
                            .is_none_or(|w| j as i64 > pos as i64 - w as i64)
                };
                let scores: Vec<f64> = (0..s.len)
                    .map(|j| {
                        if !visible(j) {
                            return f64::NEG_INFINITY;
                        }
                        let dot: f64 = (0..d)
                            .map(|c| qr[c] as f64 * s.k[j * kvw + kv * d + c] as f64)
                            .sum();
                        let sc = dot * p.scale as f64;
                        p.softcap
                            .map_or(sc, |cap| (sc / cap as f64).tanh() * cap as f64)
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|&x| (x - max).exp()).collect();
                let z: f64 = e.iter().sum();
                for c in 0..d {
                    out[row * h * d + head * d + c] = (0..s.len)
                        .map(|j| e[j] / z * s.v[j * kvw + kv * d + c] as f64)
                        .sum();
                }
            }
            row += 1;
        }
    }
    out
}

#[test]
fn paged_attention_matches_dense_reference() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(7);
    let configs = [
        (4, 2, 16, None, None, 1.0f32),
        (4, 2, 16, Some(3), Some(2.0), 3.0),
        (6, 6, 8, Some(5), None, 1.0),
        (3, 1, 5, None, Some(1.5), 2.0),
    ];
    for (h, kvh, d, window, cap, amp) in configs {
        let p = AttentionParams {
            sliding_window: window,
            softcap: cap,
            ..params(h, kvh, d)
        };
        let kvw = kvh * d;
        let seqs = vec![
            rand_seq(&mut rng, kvw, 9, 9, &[7, 1, 4]),     // prefill
            rand_seq(&mut rng, kvw, 6, 1, &[0, 5]),        // decode
            rand_seq(&mut rng, kvw, 13, 3, &[2, 8, 3, 6]), // chunk of a prefill
            rand_seq(&mut rng, kvw, 0, 0, &[]),            // empty (padding) sequence
        ];
        let rows: usize = seqs.iter().map(|s| s.q_len).sum();
        let q = rng.vec(rows * h * d, amp);
        let out = run_attn(&be, &q, &seqs, 10, &p);
        assert_close(
            &out,
            &ref_attn(&q, &seqs, &p),
            1e-5,
            &format!("attention {p:?}"),
        );
        let serial = run_attn(&CpuBackend::with_threads(1).unwrap(), &q, &seqs, 10, &p);
        assert_eq!(out, serial, "thread count must not change results");
    }
}

#[test]
fn attention_hand_checked_cases() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(8);

    // One key: the output is that key's V, exactly, for every head of the group.
    let s = rand_seq(&mut rng, 3, 1, 1, &[2]);
    let out = run_attn(&be, &rng.vec(2 * 3, 1.0), &[s], 3, &params(2, 1, 3));
    let v = &out; // both heads read kv head 0
    let seq_v = rand_seq(&mut Rng::new(8), 3, 1, 1, &[2]).v; // same draw as above
    assert_eq!((&v[0..3], &v[3..6]), (&seq_v[..], &seq_v[..]));

    // Sliding window W = 3: with q = 0 every visible key weighs the same, and V_j = 2^j
    // identifies the visible set: query p sees exactly keys p-2..=p (keys <= p-W masked).
    let p = AttentionParams {
        sliding_window: Some(3),
        ..params(1, 1, 1)
    };
    let s = Seq {
        k: vec![0.5; 6],
        v: (0..6).map(|j| (1u32 << j) as f32).collect(),
        len: 6,
        q_len: 6,
        blocks: vec![0, 1],
    };
    let out = run_attn(&be, &[0.0; 6], &[s], 2, &p);
    for (pos, &o) in out.iter().enumerate() {
        let keys = pos.saturating_sub(2)..=pos;
        let want = keys.clone().map(|j| (1u32 << j) as f32).sum::<f32>() / keys.count() as f32;
        assert!((o - want).abs() <= 1e-6 * want, "pos {pos}: {o} vs {want}");
    }

    // GQA: 4 query heads over 2 kv heads; heads 0,1 read kv head 0 (V = 1), heads 2,3 kv head 1 (V = 2).
    let s = Seq {
        k: rng.vec(5 * 4, 1.0),
        v: [[1.0f32, 1.0, 2.0, 2.0]; 5].concat(),
        len: 5,
        q_len: 2,
        blocks: vec![3, 1],
    };
    let out = run_attn(&be, &rng.vec(2 * 8, 1.0), &[s], 4, &params(4, 2, 2));
    for row in out.chunks(8) {
        for (i, &x) in row.iter().enumerate() {
            let want = if i < 4 { 1.0 } else { 2.0 };
            assert!((x - want).abs() < 1e-6, "{row:?}");
        }
    }

    // Softcap: scores 10 and 0 with cap 5 become 5·tanh(2) and 0.
    let p = AttentionParams {
        scale: 1.0,
        softcap: Some(5.0),
        ..params(1, 1, 1)
    };
    let s = Seq {
        k: vec![10.0, 0.0],
        v: vec![1.0, 0.0],
        len: 2,
        q_len: 1,
        blocks: vec![0],
    };
    let out = run_attn(&be, &[1.0], &[s], 1, &p);
    let e = (5.0 * 2f64.tanh()).exp();
    assert!((out[0] as f64 - e / (e + 1.0)).abs() < 1e-6, "{out:?}");
}

#[test]
fn block_layout_and_chunking_do_not_change_results() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(9);
    let (h, kvh, d) = (4, 2, 8);
    let p = params(h, kvh, d);
    let base = rand_seq(&mut rng, kvh * d, 11, 11, &[0, 1, 2]);
    let q = rng.vec(11 * h * d, 1.0);
    let contiguous = run_attn(&be, &q, &[base], 10, &p);

    // The same data in blocks 5, 2, 9.
    let mut rng = Rng::new(9);
    let scattered = rand_seq(&mut rng, kvh * d, 11, 11, &[5, 2, 9]);
    assert_eq!(run_attn(&be, &q, &[scattered], 10, &p), contiguous);

    // 3 cached tokens + 2 new = the last rows of full causal attention over 5 tokens.
    let mut rng = Rng::new(10);
    let full = rand_seq(&mut rng, kvh * d, 5, 5, &[4, 1]);
    let q = rng.vec(5 * h * d, 1.0);
    let all = run_attn(&be, &q, &[full], 6, &p);
    let mut rng = Rng::new(10);
    let chunk = rand_seq(&mut rng, kvh * d, 5, 2, &[4, 1]);
    let last = run_attn(&be, &q[3 * h * d..], &[chunk], 6, &p);
    assert_eq!(last, all[3 * h * d..]);

    // Rows past query_start_loc[B] (padding) come out as zeros.
    let mut rng = Rng::new(10);
    let chunk = rand_seq(&mut rng, kvh * d, 5, 2, &[4, 1]);
    let padded = [&q[3 * h * d..], &[7.0; 32][..]].concat();
    let out = run_attn(&be, &padded, &[chunk], 6, &p);
    assert_eq!(out[..2 * h * d], all[3 * h * d..]);
    assert!(out[2 * h * d..].iter().all(|&x| x == 0.0));
}

#[test]
fn attention_errors_not_panics() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(11);
    let p = params(2, 1, 4);
    let s = rand_seq(&mut rng, 4, 6, 2, &[1, 3]);
    let (kc, vc, good) = paged(&be, &[s], 4, &p);
    let q = up(&be, &rng.vec(2 * 8, 1.0), &[2, 8]);
    be.paged_attention(&q, &kc, &vc, &good, &p).unwrap();
    let op = Op::PagedAttention;

    // Unused table entries may hold anything; a used block id outside the cache is an error.
    be.paged_attention(&q, &kc, &vc, &meta(&be, &[0, 2], &[6], &[1, 3, 99], 3), &p)
        .unwrap();
    is_shape_err(
        be.paged_attention(&q, &kc, &vc, &meta(&be, &[0, 2], &[6], &[1, 4], 2), &p),
        op,
    );
    // query_start_loc must be non-decreasing and fit q.
    is_shape_err(
        be.paged_attention(
            &q,
            &kc,
            &vc,
            &meta(&be, &[0, 2, 1], &[6, 6], &[1, 3, 1, 3], 2),
            &p,
        ),
        op,
    );
    is_shape_err(
        be.paged_attention(&q, &kc, &vc, &meta(&be, &[0, 3], &[6], &[1, 3], 2), &p),
        op,
    );
    // More query tokens than context, or more context than the table covers.
    is_shape_err(
        be.paged_attention(&q, &kc, &vc, &meta(&be, &[0, 2], &[1], &[1, 3], 2), &p),
        op,
    );
    is_shape_err(
        be.paged_attention(&q, &kc, &vc, &meta(&be, &[0, 2], &[9], &[1, 3], 2), &p),
        op,
    );
    // max_seq_len understated.
    let mut m = meta(&be, &[0, 2], &[6], &[1, 3], 2);
    m.max_seq_len = 5;
    is_shape_err(be.paged_attention(&q, &kc, &vc, &m, &p), op);
    // Shapes and params.
    is_shape_err(
        be.paged_attention(&up(&be, &[0.0; 12], &[2, 6]), &kc, &vc, &good, &p),
        op,
    );
    is_shape_err(
        be.paged_attention(&q, &kc, &vc, &good, &params(2, 2, 4)),
        op,
    );
    is_shape_err(
        be.paged_attention(&q, &kc, &vc, &good, &params(3, 2, 4)),
        op,
    );
    is_shape_err(
        be.paged_attention(
            &q,
            &kc,
            &vc,
            &good,
            &AttentionParams {
                sliding_window: Some(0),
                ..p
            },
        ),
        op,
    );
    is_unsupported(
        be.paged_attention(&up_u32(&be, &[0; 16], &[2, 8]), &kc, &vc, &good, &p),
        op,
        DType::U32,
    );
}

