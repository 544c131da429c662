//! The inner loop of `paged_attention`: one task = some query rows of one sequence × some
//! heads sharing a KV head, attended over the sequence's keys in blocks of `KB` with an
//! online (flash-attention) softmax, so scores never materialize beyond one block.
//!
//! ```text
//! for each key block j0 .. j0+KB (slots from the block table):
//!   S[i, jj] = (scale·q_i) · k_j           (16-lane partial sums over D, tree-summed)
//!   S[i, jj] = −inf where j > pos_i or j ≤ pos_i − W;  tanh(S/cap)·cap with softcap
//!   m' = max(m, max_jj S);  c = e^(m − m');  l = l·c + Σ e^(S − m');  o = o·c + Σ e^(S − m')·v_j
//! out_i = o_i / l_i
//! ```
//! The per-block steps (scores, block softmax, P·V) come in a portable version and AVX2 /
//! AVX-512 ones (`attn_x86.rs`), picked from the backend's detected ISA; results agree with
//! the two-pass softmax to f32 rounding, and a row's arithmetic never depends on the other
//! rows of its task (chunked prefill and batching give bit-identical outputs).

use std::cell::RefCell;

use super::fastmath::{exp, Simd};

/// Keys per block.
pub(crate) const KB: usize = 16;

/// The per-block steps of one instruction set.
trait BlockOps {
    /// `out[jj] = q · keys[jj]` for `jj < kb`.
    fn scores(q: &[f32], keys: &[&[f32]; KB], kb: usize, out: &mut [f32; KB]);
    /// Masks lanes outside `lo..=hi` (`lo ≤ hi < KB`), then `m' = max(m, max s)`,
    /// `s = exp(s − m')` (masked lanes 0); returns `(m', Σ s)`.
    fn softmax(s: &mut [f32; KB], lo: usize, hi: usize, m: f32) -> (f32, f32);
    /// `o = o · corr + Σ_{jj < kb} p[jj] · values[jj]`.
    fn pv(o: &mut [f32], corr: f32, p: &[f32; KB], values: &[&[f32]; KB], kb: usize);
}

struct Portable;

impl BlockOps for Portable {
    fn scores(q: &[f32], keys: &[&[f32]; KB], kb: usize, out: &mut [f32; KB]) {
        for (o, k) in out.iter_mut().zip(keys).take(kb) {
            // 16 lanes, tree-summed (independent of the key's neighbours).
            let mut acc = [0.0f32; 16];
            let (cq, ck) = (q.chunks_exact(16), k.chunks_exact(16));
            let tail: f32 = cq.remainder().iter().zip(ck.remainder()).map(|(x, y)| x * y).sum();
            for (x, y) in cq.zip(ck) {
                for l in 0..16 {
                    acc[l] += x[l] * y[l];
                }
            }
            let mut w = 8;
            while w > 0 {
                for l in 0..w {
                    acc[l] += acc[l + w];
                }
                w /= 2;
            }
            *o = acc[0] + tail;
        }
    }
    fn softmax(s: &mut [f32; KB], lo: usize, hi: usize, m: f32) -> (f32, f32) {
        let mut mnew = m;
        for (jj, v) in s.iter_mut().enumerate() {
            if jj < lo || jj > hi {
                *v = f32::NEG_INFINITY;
            }
            mnew = mnew.max(*v);
        }
        let mut sum = 0.0f32;
        for v in s.iter_mut() {
            *v = exp::<false>(*v - mnew);
            sum += *v;
        }
        (mnew, sum)
    }
    fn pv(o: &mut [f32], corr: f32, p: &[f32; KB], values: &[&[f32]; KB], kb: usize) {
        for (t, x) in o.iter_mut().enumerate() {
            let mut acc = *x * corr;
            for jj in 0..kb {
                acc += p[jj] * values[jj][t];
            }
            *x = acc;
        }
    }
}

/// AVX-512 steps; only instantiated for `Simd::Avx512` and head dims that are multiples of 16.
#[cfg(target_arch = "x86_64")]
struct Avx512;

#[cfg(target_arch = "x86_64")]
impl BlockOps for Avx512 {
    fn scores(q: &[f32], keys: &[&[f32]; KB], kb: usize, out: &mut [f32; KB]) {
        // SAFETY: `Avx512` is used only when AVX-512 F/BW/DQ/VL + FMA were detected
        // (`attend`), and every row has the head dim, a multiple of 16.
        unsafe { super::attn_x86::scores512(q, keys, kb, out) }
    }
    fn softmax(s: &mut [f32; KB], lo: usize, hi: usize, m: f32) -> (f32, f32) {
        // SAFETY: as in `scores`.
        unsafe { super::attn_x86::softmax512(s, lo, hi, m) }
    }
    fn pv(o: &mut [f32], corr: f32, p: &[f32; KB], values: &[&[f32]; KB], kb: usize) {
        // SAFETY: as in `scores`.
        unsafe { super::attn_x86::pv512(o, corr, p, values, kb) }
    }
}

/// AVX2 steps; only instantiated when AVX2 + FMA were detected and head dims are
/// multiples of 8.
#[cfg(target_arch = "x86_64")]
struct Avx2;

#[cfg(target_arch = "x86_64")]
impl BlockOps for Avx2 {
    fn scores(q: &[f32], keys: &[&[f32]; KB], kb: usize, out: &mut [f32; KB]) {
        // SAFETY: `Avx2` is used only when AVX2 + FMA were detected (`attend`), and every
        // row has the head dim, a multiple of 8.
        unsafe { super::attn_x86::scores256(q, keys, kb, out) }
    }
    fn softmax(s: &mut [f32; KB], lo: usize, hi: usize, m: f32) -> (f32, f32) {
        // SAFETY: as in `scores`.
        unsafe { super::attn_x86::softmax256(s, lo, hi, m) }
    }
    fn pv(o: &mut [f32], corr: f32, p: &[f32; KB], values: &[&[f32]; KB], kb: usize) {
        // SAFETY: as in `scores`.
        unsafe { super::attn_x86::pv256(o, corr, p, values, kb) }
    }
}

thread_local! {
    /// Per-thread scratch of `attend` (q rows, accumulators, scores), reused across tasks.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// What every task of one call shares.
pub(crate) struct Shared<'a> {
    pub q: &'a [f32],
    pub k_cache: &'a [f32],
    pub v_cache: &'a [f32],
    /// q row width (`num_heads * head_dim`) and cache row width (`num_kv_heads * head_dim`).
    pub q_width: usize,
    pub kv_width: usize,
    pub head_dim: usize,
    pub scale: f32,
    pub softcap: Option<f32>,
    pub window: Option<usize>,
    /// The sequence's block table and the block size.
    pub block_size: usize,
}

/// One task: q rows `t0 .. t0 + rows` (positions `pos0 ..`), heads `h0 .. h0 + heads`, all
/// reading KV head `kv_head` through `table`.
pub(crate) struct Task<'a> {
    pub t0: usize,
    pub rows: usize,
    pub pos0: usize,
    pub h0: usize,
    pub heads: usize,
    pub kv_head: usize,
    pub table: &'a [u32],
}

/// Runs `task`, writing `out[r * heads * D + hh * D ..][..D]` for its rows and heads.
pub(crate) fn attend(simd: Simd, s: &Shared, task: &Task, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    let d = s.head_dim;
    SCRATCH.with_borrow_mut(|scratch| match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 if d % 16 == 0 => attend_body::<Avx512>(s, task, out, scratch),
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 | Simd::Avx2 if d % 8 == 0 => attend_body::<Avx2>(s, task, out, scratch),
        _ => attend_body::<Portable>(s, task, out, scratch),
    })
}

fn attend_body<O: BlockOps>(s: &Shared, task: &Task, out: &mut [f32], scratch: &mut Vec<f32>) {
    let d = s.head_dim;
    let nq = task.rows * task.heads;
    let kv_off = task.kv_head * d;
    // q rows (pre-scaled), output accumulators, running max and sum; i = r * heads + hh.
    scratch.clear();
    scratch.resize(2 * nq * d + 2 * nq, 0.0);
    let (qs, rest) = scratch.split_at_mut(nq * d);
    let (o, rest) = rest.split_at_mut(nq * d);
    let (m, l) = rest.split_at_mut(nq);
    m.fill(f32::NEG_INFINITY);
    for r in 0..task.rows {
        for hh in 0..task.heads {
            let src = &s.q[(task.t0 + r) * s.q_width + (task.h0 + hh) * d..][..d];
            for (dst, &v) in qs[(r * task.heads + hh) * d..][..d].iter_mut().zip(src) {
                *dst = v * s.scale;
            }
        }
    }
    let last = task.pos0 + task.rows - 1;
    let first = s.window.map_or(0, |w| (task.pos0 + 1).saturating_sub(w));
    let slot = |j: usize| task.table[j / s.block_size] as usize * s.block_size + j % s.block_size;
    let mut krow: [&[f32]; KB] = [&[]; KB];
    let mut vrow: [&[f32]; KB] = [&[]; KB];
    let mut sc = [0.0f32; KB];
    // Blocks on a fixed grid of KB from key 0, so a row's arithmetic does not depend on
    // which other rows share its task.
    let mut j0 = first / KB * KB;
    while j0 <= last {
        let kb = KB.min(last + 1 - j0);
        for jj in 0..kb {
            // Keys before `first` (window) are masked below; read a valid slot for them.
            let at = slot((j0 + jj).max(first)) * s.kv_width + kv_off;
            krow[jj] = &s.k_cache[at..at + d];
            vrow[jj] = &s.v_cache[at..at + d];
        }
        for i in 0..nq {
            // Valid keys of this row in the block: lo..=hi (causal, window, block end).
            let pos = task.pos0 + i / task.heads;
            let row_lo = s.window.map_or(0, |w| (pos + 1).saturating_sub(w));
            let (lo, hi) = (row_lo.max(j0) - j0, pos.min(j0 + kb - 1));
            if pos < j0 || hi < j0 + lo {
                continue;
            }
            O::scores(&qs[i * d..(i + 1) * d], &krow, kb, &mut sc);
            if let Some(cap) = s.softcap {
                for v in sc.iter_mut() {
                    *v = super::kernels::softcap(*v, cap);
                }
            }
            // Online softmax and P·V.
            let (mnew, psum) = O::softmax(&mut sc, lo, hi - j0, m[i]);
            let corr = exp::<false>(m[i] - mnew);
            m[i] = mnew;
            l[i] = l[i] * corr + psum;
            O::pv(&mut o[i * d..(i + 1) * d], corr, &sc, &vrow, kb);
        }
        j0 += kb;
    }
    for i in 0..nq {
        let inv = 1.0 / l[i];
        for (dst, &v) in out[i * d..(i + 1) * d].iter_mut().zip(&o[i * d..(i + 1) * d]) {
            *dst = v * inv;
        }
    }
}
