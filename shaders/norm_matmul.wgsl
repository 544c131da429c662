//! The decode matvecs of `matmul_many.wgsl` with the RMSNorm of their input folded into the
//! prologue (appended to `matmul.wgsl` / `qmatmul.wgsl` when the kernel sets NORM):
//!
//! ```text
//! norm_matmul_many   = matmul_many  of rms_norm(x (+ res)) with weight nw
//! norm_gated_matmul  = gated_matmul of rms_norm(x (+ res)) with weight nw
//! ```
//! Each workgroup stages its row r (grid z) of the normalized input in `xn` (K = NK f32
//! values, read by `vec_dot` through `xl`), computed exactly as `rms_norm.wgsl` computes it:
//! s = O(x + res) (the sum the unfused `add_rms_norm` stores; column group 0 of each row
//! stores it here, to `sum_out`), sum of squares strided over NWG threads and reduced in
//! the same order (subgroup sums where NSG > 0), then O(s * inv * (offset + nw)), so the
//! products see the same rounded values as `rms_norm` then `matmul_many`. `kernels::slots` declares `nw` (binding 20, alias
//! NWT), `res` / `sum_out` (21, 22, with a residual: HR = 1) and defines `norm_in(i, store)`
//! (the rounded input element i, stored to `sum_out` if `store`).

var<workgroup> xn: array<f32, NK>;

/// First element of the staged row (`xl` reads `xn[i - xbase]`).
var<private> xbase: u32;

/// Elements of the row a thread sums (NWG threads) and normalizes (WG threads).
const NI: u32 = (NK + NWG - 1u) / NWG;
const NJ: u32 = (NK + WG - 1u) / WG;

/// Stages row r of the normalized input in `xn` (all threads call it). Every load is issued
/// first (the norm weights, then x and res, loops of constant trips), so the row costs one
/// memory round trip, not one per element a thread sums; the arithmetic and its order are
/// `rms_norm.wgsl`'s.
fn norm_stage(r: u32, li: u32, store_sum: bool) {
    xbase = r * NK;
    var nv: array<f32, NJ>;
    for (var u = 0u; u < NJ; u = u + 1u) {
        let i = li + u * WG;
        if (i < NK) {
            nv[u] = f32(nw[i]);
        }
    }
    var xv: array<f32, NI>;
    var local = 0.0;
    if (li < NWG) {
        for (var u = 0u; u < NI; u = u + 1u) {
            let i = li + u * NWG;
            if (i < NK) {
                xv[u] = norm_in(xbase + i, store_sum);
            }
        }
        for (var u = 0u; u < NI; u = u + 1u) {
            let i = li + u * NWG;
            if (i < NK) {
                xn[i] = xv[u];
                local = local + xv[u] * xv[u];
            }
        }
    }
    // As `rms_norm.wgsl` adds (`row_sum.wgsl`; NSG: `ops::norm_subgroup`).
    let total = row_sum(li, local, NWG, NSG);
    let variance = total / f32(NK);
    let inv = 1.0 / sqrt(variance + p.nrm.x);
    for (var u = 0u; u < NJ; u = u + 1u) {
        let i = li + u * WG;
        if (i < NK) {
            xn[i] = f32(O((xn[i] * inv) * (p.nrm.y + nv[u])));
        }
    }
    // xn complete, and partial[0] read by all before vec_reduce reuses it.
    workgroupBarrier();
}

@compute @workgroup_size(WG)
fn norm_matmul_many(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let group = linear_wg(wg, nwg);
    norm_stage(wg.z, li, group == 0u);
    many_body(group, wg.z, li);
}

@compute @workgroup_size(WG)
fn norm_gated_matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    let group = linear_wg(wg, nwg);
    norm_stage(wg.z, li, group == 0u);
    gated_body(group, wg.z, li);
}
