//! RMSNorm over consecutive groups of `group` elements, one workgroup per group:
//! `rms_norm`: out = x * (1 / sqrt(mean(x²) + eps)) * (offset + w)
//! `add_rms_norm`: s = x + r (stored, rounded to O), out = rms_norm(s)
//! Aliases: X, R (inputs), W (weight), O (outputs). WG must be a power of two.

struct Params {
    group: u32,
    groups: u32,
    eps: f32,
    offset: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<X>;
@group(0) @binding(2) var<storage, read> w: array<W>;
@group(0) @binding(3) var<storage, read_write> out: array<O>;
@group(0) @binding(4) var<storage, read> r: array<R>;
@group(0) @binding(5) var<storage, read_write> sum_out: array<O>;

var<workgroup> partial: array<f32, WG>;

/// 1 / sqrt(mean + eps) from this thread's partial sum of squares (all threads call it;
/// `row_sum.wgsl`, SG: `ops::norm_subgroup`).
fn inv_rms(li: u32, local: f32) -> f32 {
    let variance = row_sum(li, local, WG, SG) / f32(p.group);
    return 1.0 / sqrt(variance + p.eps);
}

@compute @workgroup_size(WG)
fn rms_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let g = linear_wg(wg, nwg);
    if (g >= p.groups) {
        return;
    }
    let base = g * p.group;
    var local = 0.0;
    for (var i = li; i < p.group; i = i + WG) {
        let v = f32(x[base + i]);
        local = local + v * v;
    }
    let inv = inv_rms(li, local);
    for (var i = li; i < p.group; i = i + WG) {
        out[base + i] = O((f32(x[base + i]) * inv) * (p.offset + f32(w[i])));
    }
}

@compute @workgroup_size(WG)
fn add_rms_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let g = linear_wg(wg, nwg);
    if (g >= p.groups) {
        return;
    }
    let base = g * p.group;
    var local = 0.0;
    for (var i = li; i < p.group; i = i + WG) {
        // Round the sum to the output type first, exactly as add then rms_norm would.
        let s = O(f32(x[base + i]) + f32(r[base + i]));
        sum_out[base + i] = s;
        let v = f32(s);
        local = local + v * v;
    }
    let inv = inv_rms(li, local);
    for (var i = li; i < p.group; i = i + WG) {
        out[base + i] = O((f32(sum_out[base + i]) * inv) * (p.offset + f32(w[i])));
    }
}
