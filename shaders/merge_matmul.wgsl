//! The decode matvec of `matmul.wgsl` / `qmatmul.wgsl` with `attention_merge` folded into its
//! prologue (appended when the kernel sets MRG = 1): x is the output of a paged attention
//! over key splits whose merge was not recorded; each workgroup merges its row r (grid z)
//! from the partials (`part_in`, binding 20: per (row, head, split) m, l, -, -, HD sums;
//! MH heads of MHD, MS splits, MPS floats a split) into `xn` (K = NK values, read by
//! `vec_dot` through `xl`), with exactly `attention_merge`'s arithmetic and rounding; column
//! group 0 also stores the row to the attention output (`merged_out`, binding 21):
//!
//! ```text
//! M = max_s m_s     L = sum_s l_s e^(m_s - M)     x[h HD + d] = O(sum_s acc_s[d] e^(m_s - M) / L)
//! ```
//! One dependent dispatch a layer fewer (the o_proj after a split decode attention).

var<workgroup> xn: array<f32, NK>;
/// Per (head, split): m, then e^(m - M); per head: L.
var<workgroup> mm: array<f32, MH * MS>;
var<workgroup> me: array<f32, MH * MS>;
var<workgroup> ml: array<f32, MH>;

/// First element of the staged row (`xl` reads `xn[i - xbase]`).
var<private> xbase: u32;

const MNEG: f32 = -3.0e38;

/// Stages row r of the merged attention output in `xn` (all threads call it); `store`: also
/// to `merged_out` (the attention output itself, for any later reader).
fn merge_stage(r: u32, li: u32, store: bool) {
    xbase = r * p.k;
    let base = r * MH * MS * MPS;
    for (var j = li; j < MH * MS; j = j + WG) {
        mm[j] = part_in[base + j * MPS];
    }
    workgroupBarrier();
    for (var j = li; j < MH * MS; j = j + WG) {
        let h0 = (j / MS) * MS;
        var mx = MNEG;
        for (var s = 0u; s < MS; s = s + 1u) {
            mx = max(mx, mm[h0 + s]);
        }
        me[j] = exp(mm[j] - mx);
        if (j == h0) {
            var l = 0.0;
            for (var s = 0u; s < MS; s = s + 1u) {
                l = l + part_in[base + (h0 + s) * MPS + 1u] * exp(mm[h0 + s] - mx);
            }
            ml[j / MS] = l;
        }
    }
    workgroupBarrier();
    for (var i = li; i < p.k; i = i + WG) {
        let h = i / MHD;
        let d = i % MHD;
        let l = ml[h];
        var o = 0.0;
        if (l > 0.0) {
            for (var s = 0u; s < MS; s = s + 1u) {
                o = o + part_in[base + (h * MS + s) * MPS + 4u + d] * me[h * MS + s];
            }
            o = o / l;
        }
        let v = O(o);
        xn[i] = f32(v);
        if (store) {
            merged_out[xbase + i] = v;
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(WG)
fn merge_matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let group = linear_wg(wg, nwg);
    merge_stage(wg.z, li, group == 0u);
    vec_body(group, wg.z, li);
}
