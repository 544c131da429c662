//! `qmatmul`: `out[M, N] = x[M, K] · w[N, K]ᵀ (+ bias[N])` with w in a GGUF block format
//! (`gguf_blocks.wgsl`, format `QT`), dequantized while it is read, f32 accumulation.
//! Aliases: X, BT (bias), O. `wq` holds the raw blocks of rows n0 .. n0 + nc (a weight larger
//! than one storage binding is bound in row chunks); row r starts at byte r * row_bytes.
//!
//! ```text
//! qmatmul_vec    (small M, decode): workgroup = VR output columns x (WG / VR) lanes; lanes
//!                stride over the row's quarters-of-units (8 values each, adjacent lanes
//!                read adjacent bytes), partial dots reduced in workgroup memory.
//! qmatmul_tiled  (M >= 8): TS x TS threads compute a (4 TS) x (4 TS) tile, 4 x 4 per thread,
//!                over K in steps of one 32-element unit; each step stages x and the
//!                dequantized unit of w (one deq8 per thread and row quarter) in workgroup
//!                memory (2 x 32 x 64 f32 = 16 KiB, WebGPU's default limit); the register
//!                tile is `tile.wgsl`'s.
//! ```
//! The parameters, x, bias, out, `store`, the lane reduction, `qmatmul_vec`'s body
//! (`vec_body`) and the fused decode kernels (`matmul_many`, `gated_matmul`, over `vec_dot`)
//! are `matmul_many.wgsl`'s.

@group(0) @binding(2) var<storage, read> wq: array<u32>;

fn x4(i: u32) -> vec4<f32> {
    return vec4<f32>(xl(i), xl(i + 1u), xl(i + 2u), xl(i + 3u));
}

/// Quarter g (of the row's quarters-of-units) of row r of x · the row at byte `rb`.
fn quarter_dot(r: u32, rb: u32, g: u32) -> f32 {
    let u = g / 4u;
    let q = g % 4u;
    let d = deq8(rb, u, q);
    let pos = pos8(q);
    let xo = r * p.k + u * 32u;
    return dot(d.a, x4(xo + pos.x)) + dot(d.b, x4(xo + pos.y));
}

/// Lane `lane`'s part of row r of x · row c of weight slot `wsel` (`deq8` reads it through
/// `wl`): lanes stride over the row's quarters-of-units, two quarters per iteration (both
/// decoded before either product, two accumulators).
fn vec_dot(r: u32, c: u32, lane: u32) -> f32 {
    var acc0 = 0.0;
    var acc1 = 0.0;
    let rb = c * p.row_bytes;
    let quarters = p.k / 8u;
    var g = lane;
    for (; g + LANES < quarters; g = g + 2u * LANES) {
        acc0 = acc0 + quarter_dot(r, rb, g);
        acc1 = acc1 + quarter_dot(r, rb, g + LANES);
    }
    if (g < quarters) {
        acc0 = acc0 + quarter_dot(r, rb, g);
    }
    return acc0 + acc1;
}

@compute @workgroup_size(WG)
fn qmatmul_vec(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    // Grid: x (wrapping into y) = column groups, z = rows of x.
    vec_body(linear_wg(wg, nwg), wg.z, li);
}

const BK: u32 = 32u;

@compute @workgroup_size(TS, TS)
fn qmatmul_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    let tid = lid.y * TS + lid.x;
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i = i + 1u) {
        acc[i] = 0.0;
    }
    for (var k0 = 0u; k0 < p.k; k0 = k0 + BK) {
        // x[row0 .. row0 + BM, k0 .. k0 + BK] -> xs[BK][BM]; K is a whole number of units.
        for (var e = tid; e < BK * BM; e = e + TS * TS) {
            let mm = e / BK;
            let kk = e - mm * BK;
            let r = row0 + mm;
            var v = 0.0;
            if (r < p.m) {
                v = f32(x[r * p.k + k0 + kk]);
            }
            xs[kk * BM + mm] = v;
        }
        // Unit k0 / 32 of w rows col0 .. col0 + BN -> ws[BK][BN], one quarter per thread.
        let u = k0 / BK;
        for (var e = tid; e < 4u * BN; e = e + TS * TS) {
            let nn = e / 4u;
            let q = e % 4u;
            let c = col0 + nn;
            var d = D8(vec4<f32>(0.0), vec4<f32>(0.0));
            if (c < p.nc) {
                d = deq8(c * p.row_bytes, u, q);
            }
            let pos = pos8(q);
            for (var i = 0u; i < 4u; i = i + 1u) {
                ws[(pos.x + i) * BN + nn] = d.a[i];
                ws[(pos.y + i) * BN + nn] = d.b[i];
            }
        }
        workgroupBarrier();
        tile_accumulate(lid, &acc);
        workgroupBarrier();
    }
    tile_store(row0, col0, lid, &acc);
}
