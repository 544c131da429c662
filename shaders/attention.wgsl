//! `paged_attention`: causal attention of varlen queries over paged K/V, one workgroup per
//! (query row t, head h), all WG threads over the keys, online softmax in f32 over chunks of
//! up to CH keys.
//!
//! ```text
//! seq b of row t: query_start_loc[b] <= t < query_start_loc[b+1] (binary search)
//! position  pos = seq_lens[b] - q_len_b + (t - query_start_loc[b])
//! keys      j in [first, pos], first = max(0, pos + 1 - window) (window 0 = none)
//! slot(j)   = block_tables[b, j / block_size] * block_size + j % block_size
//! kv head   = h / (num_heads / num_kv_heads)
//! per chunk of n <= CH keys:
//!   scores   thread i: keys i, i + WG, ...: s_j = q·k_j * scale (softcapped) -> sc[], slot -> sl[]
//!   softmax  m_new = max(m, max_j s_j); p_j = exp(s_j - m_new); l = l * alpha + sum p_j
//!   values   thread (column c of 4 dims, key group g): acc += p_j v_j[4c .. 4c + 4] over
//!            keys j = g, g + G, ... (G = WG / HD4 groups; adjacent threads read adjacent dims)
//! end: the G partial sums of each column are added (subgroup butterflies where a subgroup
//!      holds several key groups, else a tree in workgroup memory), / l.
//! ```
//! EK = 1 (EKN = HD4, head_dim <= 128): the first chunk's K rows and V vectors are loaded before
//! the barrier that publishes q, so their latency overlaps q's staging (`row_layout` per
//! thread); the same FMAs in the same order either way. EK = 0: EKN = 1, unused.
//! Rows past query_start_loc[num_seqs] are padding and come out as zeros. Aliases: Q, KV
//! (caches), O. Constants: WG (a power of two), HD (head_dim), HD4 = ceil(HD / 4) <= WG, CH.
//!
//! PFN > 0: workgroups past the attention's own prefetch the weights read next into L2
//! (`attention_pf.wgsl`).
//!
//! FKV = 1 (decode rows only: each row's last key is its own new token): the preceding
//! `write_kv_pair` is done here. Each workgroup stages row t's new K (rotated by k's deferred
//! rope when `k_rope`) and V of its kv head, rounded as the cache would hold them, uses
//! them for key `pos` instead of the cache, and the workgroup of the group's first head
//! stores them at `slots[t]`. The caches, `stage_new_kv` and `key4` are appended by
//! `kernels::fused_kv`: `attention_kv.wgsl` with FKV (read-write caches, the new rows and
//! slots at bindings 10 .. 12, alias S), else read-only caches and the cache alone.

struct Params {
    tokens: u32,
    num_heads: u32,
    group: u32,
    head_dim: u32,
    num_seqs: u32,
    max_blocks: u32,
    block_size: u32,
    window: u32,
    scale: f32,
    softcap: f32,
    /// FKV: slots in the cache, whether k's rope (q's parameters) applies to the new K.
    num_slots: u32,
    k_rope: u32,
    // RoPE of q (deferred `rope` of q, applied as q is loaded): as rope.wgsl's parameters.
    rope_on: u32,
    half: u32,
    interleaved: u32,
    per_token: u32,
    rope_scaling: f32,
    /// PFN > 0: the first of the prefetch workgroups (`attention_pf.wgsl`).
    pf_base: u32,
    _pad3: u32,
    _pad4: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<Q>;
@group(0) @binding(4) var<storage, read> query_start_loc: array<u32>;
@group(0) @binding(5) var<storage, read> seq_lens: array<u32>;
@group(0) @binding(6) var<storage, read> block_tables: array<u32>;
@group(0) @binding(7) var<storage, read_write> out: array<O>;
@group(0) @binding(8) var<storage, read> positions: array<u32>;
@group(0) @binding(9) var<storage, read> inv_freq: array<f32>;

/// Element d of a head of row t (x_d, its rope partner x_partner), rotated by the deferred
/// rope when `on` (not rounded).
fn roped(t: u32, d: u32, x: f32, x_partner: f32, on: bool) -> f32 {
    if (!on || d >= 2u * p.half) {
        return x;
    }
    let il = p.interleaved != 0u;
    let f = inv_freq[select(0u, t * p.half, p.per_token != 0u) + rope_pair(d, p.half, il)];
    let cs = sincos_f32(f32(positions[t]) * f) * p.rope_scaling;
    return rope_elem(x, x_partner, d, p.half, il, cs);
}

/// Element d of q row t, head h (base = its first element), rotated when `rope_on` and
/// rounded to Q as the separate `rope` would have stored it.
fn q_value(t: u32, base: u32, d: u32) -> f32 {
    let partner = q[base + rope_partner(d, p.half, p.interleaved != 0u)];
    return f32(Q(roped(t, d, f32(q[base + d]), f32(partner), p.rope_on != 0u)));
}

const NEG: f32 = -3.0e38;
const G: u32 = WG / HD4;

var<workgroup> qs: array<vec4<f32>, HD4>;
var<workgroup> sc: array<f32, CH>;
var<workgroup> sl: array<u32, CH>;
var<workgroup> part: array<vec4<f32>, WG>;
var<workgroup> red: array<f32, WG>;
// Row layout, computed by the last thread: (seq, pos, first key, valid).
var<workgroup> row_info: vec4<u32>;

/// With subgroups: each subgroup's result in `red[li / SG]`, then every thread combines the
/// WG / SG of them (one barrier each side instead of a tree).
const SGD: u32 = max(SG, 1u);

fn sg_reduce(li: u32, v: f32, is_max: bool) -> f32 {
    var s = sg_add(v);
    if (is_max) {
        s = sg_max(v);
    }
    if (li % SGD == 0u) {
        red[li / SGD] = s;
    }
    workgroupBarrier();
    var r = red[0];
    for (var j = 1u; j < WG / SGD; j = j + 1u) {
        r = select(r + red[j], max(r, red[j]), is_max);
    }
    workgroupBarrier();
    return r;
}

fn reduce_max(li: u32, v: f32) -> f32 {
    if (SG > 0u) {
        return sg_reduce(li, v, true);
    }
    red[li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            red[li] = max(red[li], red[li + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(li: u32, v: f32) -> f32 {
    if (SG > 0u) {
        return sg_reduce(li, v, false);
    }
    red[li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            red[li] = red[li] + red[li + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

/// Whether this workgroup stores the new K/V (FKV: split 0 of the kv group's first head).
var<private> kv_writer: bool = true;

/// Floats of one split's partial result: m, l, 2 unused, then HD4 vec4 of the weighted sum.
const PSTRIDE: u32 = 4u + 4u * HD4;

/// Keys [x, y) of `split` among keys first ..= pos: SPLITS chunks of at least MIN_SPLIT_KEYS
/// (trailing splits of a short context get none).
fn split_range(first: u32, pos: u32, split: u32) -> vec2<u32> {
    if (SPLITS == 1u) {
        return vec2<u32>(first, pos + 1u);
    }
    let chunk = max((pos + 1u - first + SPLITS - 1u) / SPLITS, MIN_SPLIT_KEYS);
    let lo = min(first + split * chunk, pos + 1u);
    return vec2<u32>(lo, min(lo + chunk, pos + 1u));
}

fn slot_of(b: u32, j: u32) -> u32 {
    let blk = block_tables[b * p.max_blocks + j / p.block_size];
    return blk * p.block_size + j % p.block_size;
}

/// Element i of the K cache (`is_v` false) or the V cache.
fn kv_at(is_v: bool, i: u32) -> f32 {
    if (is_v) {
        return f32(v_cache[i]);
    }
    return f32(k_cache[i]);
}

/// Dims 4c .. 4c + 4 of a K or V row starting at element `base` (zeros past HD).
fn kv4(is_v: bool, base: u32, c: u32) -> vec4<f32> {
    let d = base + 4u * c;
    if (HD % 4u == 0u || 4u * c + 3u < HD) {
        return vec4<f32>(kv_at(is_v, d), kv_at(is_v, d + 1u), kv_at(is_v, d + 2u), kv_at(is_v, d + 3u));
    }
    var r = vec4<f32>(0.0);
    for (var i = 0u; 4u * c + i < HD; i = i + 1u) {
        r[i] = kv_at(is_v, d + i);
    }
    return r;
}

/// Row t's layout: (seq b, position pos, first key, 1), or zeros for a padding row.
fn row_layout(t: u32) -> vec4<u32> {
    if (t >= query_start_loc[p.num_seqs]) {
        return vec4<u32>(0u, 0u, 0u, 0u);
    }
    var lo = 0u;
    var hi = p.num_seqs;
    while (hi - lo > 1u) {
        let mid = (lo + hi) / 2u;
        if (query_start_loc[mid] <= t) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let start = query_start_loc[lo];
    let q_len = query_start_loc[lo + 1u] - start;
    let pos = seq_lens[lo] - q_len + (t - start);
    var first = 0u;
    if (p.window > 0u && pos + 1u > p.window) {
        first = pos + 1u - p.window;
    }
    return vec4<u32>(lo, pos, first, 1u);
}

/// `early` where `ok` (loaded before q's barrier, EK), else dims 4c .. 4c + 4 of V row j.
fn v_or_early(ok: bool, early: vec4<f32>, j: u32, pos: u32, base: u32, c: u32) -> vec4<f32> {
    if (ok) {
        return early;
    }
    return key4(true, j, pos, base, c);
}

/// Whether key j of a row at `pos` is this step's own (FKV: staged, not yet in the cache).
fn is_new_key(j: u32, pos: u32) -> bool {
    return FKV == 1u && j == pos;
}

@compute @workgroup_size(WG)
fn paged_attention(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    // SPLITS > 1: workgroup (row, head, split) over its split's keys (`split_range`).
    let widx = linear_wg(wg, nwg);
    if (PFN > 0u && widx >= p.pf_base) {
        prefetch_weights(widx - p.pf_base, li);
        return;
    }
    let split = widx % SPLITS;
    let idx = widx / SPLITS;
    if (idx >= p.tokens * p.num_heads) {
        return;
    }
    kv_writer = split == 0u;
    let t = idx / p.num_heads;
    let h = idx - t * p.num_heads;
    let out_base = t * p.num_heads * HD + h * HD;
    let kv_width = (p.num_heads / p.group) * HD;
    let kv_off = (h / p.group) * HD;
    // Value phase mapping: column c (4 dims), key group g.
    let c = li % HD4;
    let g = li / HD4;
    // The row's layout (a binary search: dependent loads) by the last thread, while the
    // first ones stage q and the new K/V, which do not depend on it: one wait for all three.
    // EK = 1: every thread also works it out itself and loads its keys of the first chunk
    // (the score phase's K row of key li, the value phase's V vectors of keys g and g + G)
    // now, so they arrive while q is staged; a step's own key (`is_new_key`) is read staged,
    // after the barrier.
    var ek: array<vec4<f32>, EKN>;
    var ev0 = vec4<f32>(0.0);
    var ev1 = vec4<f32>(0.0);
    var ek_ok = false;
    var ev0_ok = false;
    var ev1_ok = false;
    if (EK == 1u) {
        let e = row_layout(t);
        if (e.w != 0u) {
            let r = split_range(e.z, e.y, split);
            let n0 = min(CH, r.y - r.x);
            if (li < n0 && !is_new_key(r.x + li, e.y)) {
                let kb = slot_of(e.x, r.x + li) * kv_width + kv_off;
                for (var cc = 0u; cc < EKN; cc = cc + 1u) {
                    ek[cc] = kv4(false, kb, cc);
                }
                ek_ok = true;
            }
            if (g < G && g < n0 && !is_new_key(r.x + g, e.y)) {
                ev0 = kv4(true, slot_of(e.x, r.x + g) * kv_width + kv_off, c);
                ev0_ok = true;
            }
            if (g < G && g + G < n0 && !is_new_key(r.x + g + G, e.y)) {
                ev1 = kv4(true, slot_of(e.x, r.x + g + G) * kv_width + kv_off, c);
                ev1_ok = true;
            }
        }
    }
    if (li == WG - 1u) {
        row_info = row_layout(t);
    }
    for (var c = li; c < HD4; c = c + WG) {
        var v = vec4<f32>(0.0);
        for (var i = 0u; i < 4u && 4u * c + i < HD; i = i + 1u) {
            v[i] = q_value(t, out_base, 4u * c + i);
        }
        qs[c] = v;
    }
    stage_new_kv(t, h, li);
    // (A barrier: row_info, qs, and the staged K/V are complete.)
    let info = workgroupUniformLoad(&row_info);
    if (info.w == 0u) {
        for (var d = li; d < HD; d = d + WG) {
            out[out_base + d] = O(0.0);
        }
        return;
    }
    let b = info.x;
    let pos = info.y;
    let keys = split_range(info.z, pos, split);
    var m = NEG;
    var l = 0.0;
    var acc = vec4<f32>(0.0);
    for (var j0 = keys.x; j0 < keys.y; j0 = j0 + CH) {
        let n = min(CH, keys.y - j0);
        var local_max = NEG;
        for (var i = li; i < n; i = i + WG) {
            let slot = slot_of(b, j0 + i);
            sl[i] = slot;
            let kb = slot * kv_width + kv_off;
            var qk = 0.0;
            if (ek_ok && j0 == keys.x && i == li) {
                for (var cc = 0u; cc < EKN; cc = cc + 1u) {
                    qk = qk + dot(qs[cc], ek[cc]);
                }
            } else {
                for (var cc = 0u; cc < HD4; cc = cc + 1u) {
                    qk = qk + dot(qs[cc], key4(false, j0 + i, pos, kb, cc));
                }
            }
            var s = qk * p.scale;
            if (p.softcap > 0.0) {
                s = tanh_f32(s / p.softcap) * p.softcap;
            }
            sc[i] = s;
            local_max = max(local_max, s);
        }
        let m_new = max(m, reduce_max(li, local_max));
        var local_sum = 0.0;
        for (var i = li; i < n; i = i + WG) {
            let e = exp(sc[i] - m_new);
            sc[i] = e;
            local_sum = local_sum + e;
        }
        let alpha = exp(m - m_new);
        l = l * alpha + reduce_sum(li, local_sum);
        m = m_new;
        acc = acc * alpha;
        if (g < G) {
            // Two keys per iteration: both V rows in flight before either product.
            var acc1 = vec4<f32>(0.0);
            var i = g;
            // Keys g and g + G of the first chunk: loaded early where EK (ev0_ok / ev1_ok).
            let first = j0 == keys.x;
            for (; i + G < n; i = i + 2u * G) {
                let v0 = v_or_early(first && i == g && ev0_ok, ev0, j0 + i, pos, sl[i] * kv_width + kv_off, c);
                let v1 = v_or_early(first && i == g && ev1_ok, ev1, j0 + i + G, pos, sl[i + G] * kv_width + kv_off, c);
                acc = acc + sc[i] * v0;
                acc1 = acc1 + sc[i + G] * v1;
            }
            if (i < n) {
                acc = acc + sc[i] * v_or_early(first && i == g && ev0_ok, ev0, j0 + i, pos, sl[i] * kv_width + kv_off, c);
            }
            acc = acc + acc1;
        }
        workgroupBarrier();
    }
    // The G partial sums of each column, left as gn of them in `part` (stride HD4): with
    // subgroups that hold several key groups (thread li = g HD4 + c, HD4 a power of two, SG >=
    // 2 HD4), butterflies over the groups inside each subgroup, then one sum a subgroup (one
    // barrier); else G a power of two: a tree over the groups (log2 G barriers); else all G.
    var gn = G;
    if (SG >= 2u * HD4 && (HD4 & (HD4 - 1u)) == 0u) {
        var a = acc;
        for (var k = HD4; k < SG; k = k * 2u) {
            a = a + vec4<f32>(sg_xor(a.x, k), sg_xor(a.y, k), sg_xor(a.z, k), sg_xor(a.w, k));
        }
        if (li % SGD < HD4) {
            part[(li / SGD) * HD4 + li % SGD] = a;
        }
        workgroupBarrier();
        gn = WG / SGD;
    } else {
        part[li] = acc;
        workgroupBarrier();
        if ((G & (G - 1u)) == 0u) {
            for (var s = G / 2u; s > 0u; s = s / 2u) {
                if (g < s) {
                    part[li] = part[li] + part[li + s * HD4];
                }
                workgroupBarrier();
            }
            gn = 1u;
        }
    }
    for (var cc = li; cc < HD4; cc = cc + WG) {
        var sum = vec4<f32>(0.0);
        for (var gg = 0u; gg < gn; gg = gg + 1u) {
            sum = sum + part[gg * HD4 + cc];
        }
        if (SPLITS > 1u) {
            // Unnormalized, with this split's (m, l) (`attention_merge.wgsl`).
            let pb = widx * PSTRIDE;
            if (cc == 0u) {
                put_partial(pb, m);
                put_partial(pb + 1u, l);
            }
            for (var i = 0u; i < 4u; i = i + 1u) {
                put_partial(pb + 4u + 4u * cc + i, sum[i]);
            }
            continue;
        }
        let o = sum / l;
        for (var i = 0u; i < 4u && 4u * cc + i < HD; i = i + 1u) {
            out[out_base + 4u * cc + i] = O(o[i]);
        }
    }
}
