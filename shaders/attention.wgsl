//! `paged_attention`: causal attention of varlen queries over paged K/V, one workgroup per
//! (query row t, head h), online softmax in f32 over chunks of WG keys.
//!
//! ```text
//! seq b of row t: query_start_loc[b] <= t < query_start_loc[b+1] (binary search)
//! position  pos = seq_lens[b] - q_len_b + (t - query_start_loc[b])
//! keys      j in [first, pos], first = max(0, pos + 1 - window) (window 0 = none)
//! slot(j)   = block_tables[b, j / block_size] * block_size + j % block_size
//! kv head   = h / (num_heads / num_kv_heads)
//! per chunk: scores s_j = q·k_j * scale (softcapped), running max m, sum l, acc over V
//! ```
//! Rows past query_start_loc[num_seqs] are padding and come out as zeros. Thread i keeps
//! output dims i, i + WG, ... (ACC of them). Aliases: Q, KV (caches), O. WG a power of two.

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
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<Q>;
@group(0) @binding(2) var<storage, read> k_cache: array<KV>;
@group(0) @binding(3) var<storage, read> v_cache: array<KV>;
@group(0) @binding(4) var<storage, read> query_start_loc: array<u32>;
@group(0) @binding(5) var<storage, read> seq_lens: array<u32>;
@group(0) @binding(6) var<storage, read> block_tables: array<u32>;
@group(0) @binding(7) var<storage, read_write> out: array<O>;

const NEG: f32 = -3.0e38;

var<workgroup> qs: array<f32, ACC * WG>;
var<workgroup> probs: array<f32, WG>;
var<workgroup> slots: array<u32, WG>;
var<workgroup> red: array<f32, WG>;
// Row layout, computed by thread 0: (seq, pos, first key, valid).
var<workgroup> row_info: vec4<u32>;

fn reduce_max(li: u32, v: f32) -> f32 {
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

fn slot_of(b: u32, j: u32) -> u32 {
    let blk = block_tables[b * p.max_blocks + j / p.block_size];
    return blk * p.block_size + j % p.block_size;
}

@compute @workgroup_size(WG)
fn paged_attention(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let idx = linear_wg(wg, nwg);
    if (idx >= p.tokens * p.num_heads) {
        return;
    }
    let t = idx / p.num_heads;
    let h = idx - t * p.num_heads;
    let d_len = p.head_dim;
    let out_base = t * p.num_heads * d_len + h * d_len;
    if (li == 0u) {
        var info = vec4<u32>(0u, 0u, 0u, 0u);
        if (t < query_start_loc[p.num_seqs]) {
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
            info = vec4<u32>(lo, pos, first, 1u);
        }
        row_info = info;
    }
    let info = workgroupUniformLoad(&row_info);
    if (info.w == 0u) {
        for (var d = li; d < d_len; d = d + WG) {
            out[out_base + d] = O(0.0);
        }
        return;
    }
    let b = info.x;
    let pos = info.y;
    let first = info.z;
    let kv_width = (p.num_heads / p.group) * d_len;
    let kv_off = (h / p.group) * d_len;
    for (var d = li; d < d_len; d = d + WG) {
        qs[d] = f32(q[out_base + d]);
    }
    workgroupBarrier();

    var m = NEG;
    var l = 0.0;
    var acc: array<f32, ACC>;
    for (var a = 0u; a < ACC; a = a + 1u) {
        acc[a] = 0.0;
    }
    for (var j0 = first; j0 <= pos; j0 = j0 + WG) {
        let j = j0 + li;
        var s = NEG;
        if (j <= pos) {
            let slot = slot_of(b, j);
            slots[li] = slot;
            let kb = slot * kv_width + kv_off;
            var qk = 0.0;
            for (var d = 0u; d < d_len; d = d + 1u) {
                qk = qk + qs[d] * f32(k_cache[kb + d]);
            }
            s = qk * p.scale;
            if (p.softcap > 0.0) {
                s = tanh_f32(s / p.softcap) * p.softcap;
            }
        }
        let m_new = max(m, reduce_max(li, s));
        var pj = 0.0;
        if (j <= pos) {
            pj = exp(s - m_new);
        }
        probs[li] = pj;
        let alpha = exp(m - m_new);
        l = l * alpha + reduce_sum(li, pj);
        m = m_new;
        let count = min(WG, pos + 1u - j0);
        for (var a = 0u; a < ACC; a = a + 1u) {
            let d = li + a * WG;
            if (d < d_len) {
                var v = acc[a] * alpha;
                for (var jj = 0u; jj < count; jj = jj + 1u) {
                    v = v + probs[jj] * f32(v_cache[slots[jj] * kv_width + kv_off + d]);
                }
                acc[a] = v;
            }
        }
        workgroupBarrier();
    }
    for (var a = 0u; a < ACC; a = a + 1u) {
        let d = li + a * WG;
        if (d < d_len) {
            out[out_base + d] = O(acc[a] / l);
        }
    }
}
