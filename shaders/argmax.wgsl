//! `argmax`: index of the largest value of each row of x [M, N]; the first index on ties,
//! NaN counts as the largest (torch). Alias: X. WG a power of two.
//!
//! ```text
//! argmax          one workgroup per row (short rows, or TESSERA_WGPU_ARGMAX_CHUNK=0)
//! argmax_part     PARTS workgroups per row, each over CHUNK values: (best value bits, index)
//!                 of its range into `part` [M, PARTS, 2]
//! argmax_merge    one workgroup per row over its PARTS pairs (in range order, so the first
//!                 index still wins ties)
//! ```

struct Params {
    rows: u32,
    cols: u32,
    /// Workgroups per row of `argmax_part` (`argmax_merge`'s pairs a row).
    parts: u32,
    /// Values per `argmax_part` workgroup.
    chunk: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<X>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<storage, read_write> part: array<u32>;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

const NONE: u32 = 0xffffffffu;

/// Whether (va, ia) beats (vb, ib): NaN first, then larger, then the lower index.
fn beats(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
    let na = is_nan_f32(va);
    let nb = is_nan_f32(vb);
    if (na || nb) {
        return na && (!nb || ia < ib);
    }
    return va > vb || (va == vb && ia < ib);
}

/// The workgroup's best of the threads' (bv, bi) (index NONE: no value), in best_v[0] /
/// best_i[0] when it returns.
fn wg_best(li: u32, bv: f32, bi: u32) {
    best_v[li] = bv;
    best_i[li] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            let oi = best_i[li + s];
            if (oi != NONE && (best_i[li] == NONE || beats(best_v[li + s], oi, best_v[li], best_i[li]))) {
                best_v[li] = best_v[li + s];
                best_i[li] = oi;
            }
        }
        workgroupBarrier();
    }
}

/// This thread's best of x[base + j], j = begin + li, begin + li + WG, .. < end.
fn scan(base: u32, begin: u32, end: u32, li: u32, best: ptr<function, vec2<u32>>) {
    var bv = 0.0;
    var bi = NONE;
    for (var j = begin + li; j < end; j = j + WG) {
        let v = f32(x[base + j]);
        if (bi == NONE || beats(v, j, bv, bi)) {
            bv = v;
            bi = j;
        }
    }
    *best = vec2<u32>(bitcast<u32>(bv), bi);
}

@compute @workgroup_size(WG)
fn argmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let row = linear_wg(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    var b: vec2<u32>;
    scan(row * p.cols, 0u, p.cols, li, &b);
    wg_best(li, bitcast<f32>(b.x), b.y);
    if (li == 0u) {
        out[row] = best_i[0];
    }
}

@compute @workgroup_size(WG)
fn argmax_part(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let g = linear_wg(wg, nwg);
    let row = g / p.parts;
    if (row >= p.rows) {
        return;
    }
    let begin = (g % p.parts) * p.chunk;
    var b: vec2<u32>;
    scan(row * p.cols, begin, min(p.cols, begin + p.chunk), li, &b);
    wg_best(li, bitcast<f32>(b.x), b.y);
    if (li == 0u) {
        part[2u * g] = bitcast<u32>(best_v[0]);
        part[2u * g + 1u] = best_i[0];
    }
}

@compute @workgroup_size(WG)
fn argmax_merge(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let row = linear_wg(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    var bv = 0.0;
    var bi = NONE;
    for (var j = li; j < p.parts; j = j + WG) {
        let k = 2u * (row * p.parts + j);
        let v = bitcast<f32>(part[k]);
        let i = part[k + 1u];
        if (i != NONE && (bi == NONE || beats(v, i, bv, bi))) {
            bv = v;
            bi = i;
        }
    }
    wg_best(li, bv, bi);
    if (li == 0u) {
        out[row] = best_i[0];
    }
}
