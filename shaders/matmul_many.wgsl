//! What `matmul.wgsl` and `qmatmul.wgsl` share (appended to both): the parameters, x, bias
//! and out (slot 0), `store`, the lane reduction of the matrix-vector kernels, and the fused
//! decode kernels over the including shader's `vec_dot(r, c, lane)` (lane's part of row r of
//! x · row c of weight slot `wsel`, read through `wl`):
//!
//! ```text
//! matmul_many   S = NW weights [n_s, K] on one x: workgroups range over the concatenated
//!               column groups (slot s from group g0[s]); out_s[r, c] = x[r] · w_s[c] (+ b_s[c])
//! gated_matmul  gate (slot 0) and up (slot 1) [n, K]: a workgroup covers VR / 2 columns,
//!               the lanes of a column's gate dot next to those of its up dot (both at
//!               once), then out[r, c] = act(O(g + bg)) * O(u + bu) (rounded to the
//!               activation dtype first, as `matmul` then `act_mul` compute it)
//! norm_*        both with the RMSNorm of x in the prologue (`norm_matmul.wgsl`, NORM = 1)
//! ```
//! Weight slot s >= 1 is binding 2 + 3 s, its bias 3 + 3 s, its output 4 + 3 s (slot 0:
//! 2, 3, 4); `kernels::slots` declares slots 1 .. NW and defines `wl`, `bias_of`, `put` and
//! `xl` (element i of x as f32; with NORM, of the normalized rows `norm_matmul.wgsl` stages).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    n0: u32,
    nc: u32,
    has_bias: u32,
    row_bytes: u32,
    /// `gated_matmul`'s activation (`act_f32`).
    act: u32,
    /// Columns of each weight slot (`matmul_many`, `gated_matmul`).
    ns: vec4<u32>,
    /// Whether each slot has a bias.
    hb: vec4<u32>,
    /// First column group of each slot (`matmul_many`).
    g0: vec4<u32>,
    /// `norm_matmul.wgsl`: (eps, weight offset, -, -).
    nrm: vec4<f32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<X>;
@group(0) @binding(3) var<storage, read> bias: array<BT>;
@group(0) @binding(4) var<storage, read_write> out: array<O>;

/// The weight slot `wl` reads.
var<private> wsel: u32;

const LANES: u32 = WG / VR;

var<workgroup> partial: array<f32, WG>;

/// Stores row r, column c of a row-chunked `matmul` (columns n0 + c of out).
fn store(r: u32, c: u32, acc: f32) {
    var v = acc;
    if (p.has_bias != 0u) {
        v = v + f32(bias[p.n0 + c]);
    }
    out[r * p.n + p.n0 + c] = O(v);
}

/// Sum of `acc` over the LANES lanes of this thread's column (valid on lane 0; also in
/// `partial[li]` of lane 0 when it returns). With subgroups (SG > 0): butterfly shuffles
/// inside the subgroup when a column's lanes fit one (SG >= LANES), else subgroup sums
/// added in workgroup memory; otherwise a tree in workgroup memory.
fn vec_reduce(li: u32, lane: u32, acc: f32) -> f32 {
    if (SG >= LANES) {
        var v = acc;
        for (var o = LANES / 2u; o > 0u; o = o / 2u) {
            v = v + sg_xor(v, o);
        }
        partial[li] = v;
        workgroupBarrier();
        return v;
    }
    if (SG > 0u) {
        partial[li] = sg_add(acc);
        workgroupBarrier();
        var v = 0.0;
        if (lane == 0u) {
            for (var j = 0u; j < LANES; j = j + SG) {
                v = v + partial[li + j];
            }
        }
        workgroupBarrier();
        partial[li] = v;
        workgroupBarrier();
        return v;
    }
    partial[li] = acc;
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s = s / 2u) {
        if (lane < s) {
            partial[li] = partial[li] + partial[li + s];
        }
        workgroupBarrier();
    }
    return partial[li];
}

/// `v` (+ b_s[c] where slot s has a bias).
fn biased(s: u32, c: u32, v: f32) -> f32 {
    if (p.hb[s] != 0u) {
        return v + bias_of(s, c);
    }
    return v;
}

/// Column group `group` of the single weight's rows n0 .. n0 + nc, row r (the
/// matrix-vector kernels `matmul_vec`, `qmatmul_vec`).
fn vec_body(group: u32, r: u32, li: u32) {
    let lane = li % LANES;
    let c = group * VR + li / LANES;
    var acc = 0.0;
    if (c < p.nc) {
        acc = vec_dot(r, c, lane);
    }
    let sum = vec_reduce(li, lane, acc);
    if (lane == 0u && c < p.nc) {
        store(r, c, sum);
    }
}

/// Column group `group` of the concatenated slots, row r (`matmul_many`, `norm_matmul_many`).
fn many_body(group: u32, r: u32, li: u32) {
    var s = 0u;
    for (var i = 1u; i < NW; i = i + 1u) {
        if (group >= p.g0[i]) {
            s = i;
        }
    }
    let lane = li % LANES;
    let n = p.ns[s];
    let c = (group - p.g0[s]) * VR + li / LANES;
    wsel = s;
    var acc = 0.0;
    if (c < n) {
        acc = vec_dot(r, c, lane);
    }
    let sum = vec_reduce(li, lane, acc);
    if (lane == 0u && c < n) {
        put(s, r * n + c, biased(s, c, sum));
    }
}

/// Columns `cgroup` * VR / 2 .. of gate and up, row r (`gated_matmul`,
/// `norm_gated_matmul`). The lane groups of a column come in pairs: the even one reduces
/// gate's dot, the odd one up's, at once.
fn gated_body(cgroup: u32, r: u32, li: u32) {
    let lane = li % LANES;
    let group = li / LANES;
    let s = group % 2u;
    let n = p.ns.x;
    let c = cgroup * (VR / 2u) + group / 2u;
    wsel = s;
    var acc = 0.0;
    if (c < n) {
        acc = vec_dot(r, c, lane);
    }
    let sum = vec_reduce(li, lane, acc);
    if (lane == 0u && s == 0u && c < n) {
        let g = biased(0u, c, sum);
        let u = biased(1u, c, partial[li + LANES]);
        out[r * n + c] = O(act_f32(f32(O(g)), p.act) * f32(O(u)));
    }
}

@compute @workgroup_size(WG)
fn matmul_many(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    // Grid: x (wrapping into y) = column groups of all slots, z = rows of x.
    many_body(linear_wg(wg, nwg), wg.z, li);
}

@compute @workgroup_size(WG)
fn gated_matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    // Grid: x (wrapping into y) = groups of VR / 2 columns, z = rows of x.
    gated_body(linear_wg(wg, nwg), wg.z, li);
}
