//! `argmax`: index of the largest value of each row of x [M, N], one workgroup per row;
//! the first index on ties, NaN counts as the largest (torch). Alias: X. WG a power of two.

struct Params {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<X>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

/// Whether (va, ia) beats (vb, ib): NaN first, then larger, then the lower index.
fn beats(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
    let na = is_nan_f32(va);
    let nb = is_nan_f32(vb);
    if (na || nb) {
        return na && (!nb || ia < ib);
    }
    return va > vb || (va == vb && ia < ib);
}

@compute @workgroup_size(WG)
fn argmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let row = linear_wg(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var bv = 0.0;
    var bi = 0xffffffffu;
    for (var j = li; j < p.cols; j = j + WG) {
        let v = f32(x[base + j]);
        if (bi == 0xffffffffu || beats(v, j, bv, bi)) {
            bv = v;
            bi = j;
        }
    }
    best_v[li] = bv;
    best_i[li] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            let oi = best_i[li + s];
            if (oi != 0xffffffffu && (best_i[li] == 0xffffffffu || beats(best_v[li + s], oi, best_v[li], best_i[li]))) {
                best_v[li] = best_v[li + s];
                best_i[li] = oi;
            }
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        out[row] = best_i[0];
    }
}
