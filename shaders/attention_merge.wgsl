//! `paged_attention` over key splits (appended to `attention.wgsl` when the kernel sets
//! SPLITS > 1): the decode rows of a small batch are too few workgroups for the GPU (one per
//! (row, head)), so each (row, head) is spread over SPLITS workgroups of at least
//! MIN_SPLIT_KEYS keys each, which leave their unnormalized partial results in `part_out`
//! (per split: m, l, -, -, the HD p-weighted sums of v), and `attention_merge` combines them:
//!
//! ```text
//! M = max_s m_s     L = sum_s l_s e^(m_s - M)     out[d] = sum_s acc_s[d] e^(m_s - M) / L
//! ```
//! Padding rows (and any row whose splits saw no key) come out as zeros.

@group(0) @binding(13) var<storage, read_write> part_out: array<f32>;

fn put_partial(i: u32, v: f32) {
    part_out[i] = v;
}

@compute @workgroup_size(WG)
fn attention_merge(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let idx = linear_wg(wg, nwg);
    if (idx >= p.tokens * p.num_heads) {
        return;
    }
    let base = idx * SPLITS * PSTRIDE;
    var mx = NEG;
    for (var s = 0u; s < SPLITS; s = s + 1u) {
        mx = max(mx, part_out[base + s * PSTRIDE]);
    }
    var l = 0.0;
    for (var s = 0u; s < SPLITS; s = s + 1u) {
        l = l + part_out[base + s * PSTRIDE + 1u] * exp(part_out[base + s * PSTRIDE] - mx);
    }
    for (var d = li; d < HD; d = d + WG) {
        var o = 0.0;
        if (l > 0.0) {
            for (var s = 0u; s < SPLITS; s = s + 1u) {
                let e = exp(part_out[base + s * PSTRIDE] - mx);
                o = o + part_out[base + s * PSTRIDE + 4u + d] * e;
            }
            o = o / l;
        }
        out[idx * HD + d] = O(o);
    }
}
