//! `x · wᵀ (+ bias)`: x [M, K], w [N, K] (HF Linear layout), bias [N] -> out [M, N], f32
//! accumulation. Aliases: X, W, BT (bias), O. A weight larger than one storage binding is
//! bound in row chunks: this dispatch sees rows n0 .. n0 + nc of w as `w[0 ..]`.
//!
//! ```text
//! matmul_tiled  (M >= 8): workgroup TS x TS threads computes a (4 TS) x (4 TS) output tile,
//!               4 x 4 per thread, over K in steps of BK staged in workgroup memory.
//! matmul_vec    (small M, decode): workgroup = VR output columns x (WG / VR) lanes; lanes
//!               stride over K in runs of 4 elements (`vec_dot`), partial dots reduced in
//!               workgroup memory (`vec_reduce`).
//! ```
//! The register tile is `tile.wgsl`'s (shared with `qmatmul_tiled`, which dequantizes GGUF
//! blocks of w while staging them). The parameters, x, bias, out, `store`, the lane
//! reduction, `matmul_vec`'s body (`vec_body`, shared with `qmatmul_vec`) and the fused
//! decode kernels (`matmul_many`, `gated_matmul`, over `vec_dot`) are in `matmul_many.wgsl`,
//! appended with the weight slots `wl` reads (`kernels::slots`).

@group(0) @binding(2) var<storage, read> w: array<W>;

const BK: u32 = 16u;

@compute @workgroup_size(TS, TS)
fn matmul_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    let tid = lid.y * TS + lid.x;
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i = i + 1u) {
        acc[i] = 0.0;
    }
    for (var k0 = 0u; k0 < p.k; k0 = k0 + BK) {
        // Stage x[row0 .. row0 + BM, k0 .. k0 + BK] and w[col0 .. col0 + BN, k0 .. k0 + BK],
        // transposed to [BK][BM] / [BK][BN]; zeros past the edges.
        for (var e = tid; e < BK * BM; e = e + TS * TS) {
            let mm = e / BK;
            let kk = e - mm * BK;
            let r = row0 + mm;
            let kg = k0 + kk;
            var v = 0.0;
            if (r < p.m && kg < p.k) {
                v = f32(x[r * p.k + kg]);
            }
            xs[kk * BM + mm] = v;
        }
        for (var e = tid; e < BK * BN; e = e + TS * TS) {
            let nn = e / BK;
            let kk = e - nn * BK;
            let c = col0 + nn;
            let kg = k0 + kk;
            var v = 0.0;
            if (c < p.nc && kg < p.k) {
                v = f32(w[c * p.k + kg]);
            }
            ws[kk * BN + nn] = v;
        }
        workgroupBarrier();
        tile_accumulate(lid, &acc);
        workgroupBarrier();
    }
    tile_store(row0, col0, lid, &acc);
}

/// Elements i .. i + 4 of weight slot `wsel` (`wl`) and of x (`xl`).
fn w4(i: u32) -> vec4<f32> {
    return vec4<f32>(f32(wl(i)), f32(wl(i + 1u)), f32(wl(i + 2u)), f32(wl(i + 3u)));
}

fn xl4(i: u32) -> vec4<f32> {
    return vec4<f32>(xl(i), xl(i + 1u), xl(i + 2u), xl(i + 3u));
}

/// Lane `lane`'s part of row r of x · row c of weight slot `wsel` (`wl`): runs of 4 elements
/// per lane, two runs per iteration (both loads in flight before either product, two
/// accumulators), then the tail.
fn vec_dot(r: u32, c: u32, lane: u32) -> f32 {
    var acc0 = 0.0;
    var acc1 = 0.0;
    let xb = r * p.k;
    let wb = c * p.k;
    let k4 = p.k / 4u * 4u;
    let step = 4u * LANES;
    var kk = 4u * lane;
    for (; kk + step < k4; kk = kk + 2u * step) {
        let w0 = w4(wb + kk);
        let w1 = w4(wb + kk + step);
        acc0 = acc0 + dot(xl4(xb + kk), w0);
        acc1 = acc1 + dot(xl4(xb + kk + step), w1);
    }
    if (kk < k4) {
        acc0 = acc0 + dot(xl4(xb + kk), w4(wb + kk));
    }
    for (var t = k4 + lane; t < p.k; t = t + LANES) {
        acc1 = acc1 + xl(xb + t) * f32(wl(wb + t));
    }
    return acc0 + acc1;
}

@compute @workgroup_size(WG)
fn matmul_vec(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    // Grid: x (wrapping into y) = column groups, z = rows of x.
    vec_body(linear_wg(wg, nwg), wg.z, li);
}
