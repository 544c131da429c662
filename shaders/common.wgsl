//! Helpers every tessera shader gets (prepended after the specialization preamble, which
//! declares the storage type aliases and constants such as `WG`, the 1-D workgroup size).
//!
//! All math is f32; tensors are read with `f32(x[i])` and written with `T(v)`, so the same
//! source serves f32 and f16 storage. Transcendentals that GPUs implement loosely (`tanh`
//! overflows, `sin`/`cos` lose accuracy far from zero, `erf` does not exist) have careful
//! versions here so results match the CPU reference to ~1e-6 on any adapter.

/// Index of this workgroup in a 2-D grid laid out as x + y * num_workgroups.x (grids wider
/// than `maxComputeWorkgroupsPerDimension` wrap into y).
fn linear_wg(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x;
}

/// NaN test on the bits (compilers may fold `x != x` away).
fn is_nan_f32(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

/// tanh without overflow: Taylor series near 0, else sign(x) (1 - e) / (1 + e), e = exp(-2|x|).
fn tanh_f32(x: f32) -> f32 {
    let a = abs(x);
    if (a < 0.125) {
        let x2 = x * x;
        return x * (1.0 + x2 * (-0.33333334 + x2 * (0.13333334 + x2 * -0.053968254)));
    }
    let e = exp(-2.0 * a);
    let t = (1.0 - e) / (1.0 + e);
    return select(t, -t, x < 0.0);
}

/// erf(x) from Numerical Recipes' erfc (Chebyshev fit, fractional error < 1.2e-7).
fn erf_f32(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let erfc = t * exp(-z * z + poly);
    let r = 1.0 - erfc;
    return select(r, -r, x < 0.0);
}

/// (sin(a), cos(a)) accurate to ~1e-7 absolute for |a| < 2^17 (RoPE angles = position *
/// inv_freq). Cody-Waite reduction by pi/2 with the multiple k split in two halves so every
/// product k * C_i is exact, then cephes' minimax polynomials on [-pi/4, pi/4].
fn sincos_f32(a: f32) -> vec2<f32> {
    let k = round(a * 0.63661977236);
    let kh = floor(k / 512.0) * 512.0;
    let kl = k - kh;
    // pi/2 = C1 + C2 + C3 + C4, each with at most 15 significant bits.
    let C1 = 1.57073974609375;
    let C2 = 5.657970905303955e-05;
    let C3 = 9.92093629470503e-10;
    var r = a - kh * C1;
    r = r - kl * C1;
    r = r - kh * C2;
    r = r - kl * C2;
    r = r - k * C3;
    let r2 = r * r;
    let s = r + r * r2 * (-1.6666654611e-1 + r2 * (8.3321608736e-3 + r2 * -1.9515295891e-4));
    let c = 1.0 - 0.5 * r2 + r2 * r2 * (4.166664568298827e-2 + r2 * (-1.388731625493765e-3 + r2 * 2.443315711809948e-5));
    let q = i32(k - 4.0 * floor(k / 4.0));
    if (q == 0) { return vec2<f32>(s, c); }
    if (q == 1) { return vec2<f32>(c, -s); }
    if (q == 2) { return vec2<f32>(-s, -c); }
    return vec2<f32>(-c, s);
}

/// RoPE of one element: dim `d` of a head, given its pair partner's value (`rope_partner`),
/// `cs` = (sin, cos) * attention_scaling of the pair's angle (`rope_pair`). Dims past the
/// rotary part (d >= 2 half) stay. As `rope.wgsl` computes it, element by element.
fn rope_elem(x_d: f32, x_partner: f32, d: u32, half: u32, interleaved: bool, cs: vec2<f32>) -> f32 {
    if (d >= 2u * half) {
        return x_d;
    }
    let first = select(d < half, d % 2u == 0u, interleaved);
    if (first) {
        return x_d * cs.y - x_partner * cs.x;
    }
    return x_d * cs.y + x_partner * cs.x;
}

/// The dim paired with dim `d` (d itself past the rotary part).
fn rope_partner(d: u32, half: u32, interleaved: bool) -> u32 {
    if (d >= 2u * half) {
        return d;
    }
    if (interleaved) {
        return d ^ 1u;
    }
    return select(d - half, d + half, d < half);
}

/// Index of dim `d`'s pair in inv_freq's row.
fn rope_pair(d: u32, half: u32, interleaved: bool) -> u32 {
    return select(d % half, d / 2u, interleaved);
}

/// The gated MLP's activation: silu (0), gelu tanh (1) or exact gelu (2), in torch's formulas
/// (`act_mul` in act.wgsl, and `gated_matmul`'s epilogue).
fn act_f32(g: f32, kind: u32) -> f32 {
    if (kind == 0u) {
        return g / (1.0 + exp(-g));
    }
    if (kind == 1u) {
        // torch: kBeta = sqrt(2) * (2 / sqrt(pi)) * 0.5, kKappa = 0.044715.
        let inner = 0.7978845608028654 * (g + 0.044715 * (g * g * g));
        return 0.5 * g * (1.0 + tanh_f32(inner));
    }
    return g * 0.5 * (1.0 + erf_f32(g * 0.7071067811865476));
}
