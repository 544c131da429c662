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
const SGD: u32 = max(SG, 1u);

/// 1 / sqrt(mean + eps) from this thread's partial sum of squares (all threads call it).
/// SG > 0 (a subgroup size dividing WG, `ops::norm_subgroup`): subgroup sums, then the
/// WG / SG of them in order (one barrier); else a tree. The decode matvecs' norm prologue
/// (`norm_matmul.wgsl`) adds the same way, so both round alike.
fn inv_rms(li: u32, local: f32) -> f32 {
    var total = 0.0;
    if (SG > 0u) {
        let s = sg_add(local);
        if (li % SGD == 0u) {
            partial[li / SGD] = s;
        }
        workgroupBarrier();
        total = partial[0];
        for (var j = 1u; j < WG / SGD; j = j + 1u) {
            total = total + partial[j];
        }
    } else {
        partial[li] = local;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s = s / 2u) {
            if (li < s) {
                partial[li] = partial[li] + partial[li + s];
            }
            workgroupBarrier();
        }
        total = partial[0];
    }
    let variance = total / f32(p.group);
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
