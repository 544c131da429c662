//! `rope`: rotates `x` [T, n * head_dim] in place, one thread per (token, head, pair i):
//! angle = f32(position) * inv_freq[i] (inv_freq f32, shared [half] or per token [T, half]),
//! cos/sin times attention_scaling; neox pairs (i, i + half), interleaved (2i, 2i + 1); dims
//! past rotary_dim are left alone. Alias: X (x storage).

struct Params {
    tokens: u32,
    heads: u32,
    head_dim: u32,
    half: u32,
    interleaved: u32,
    per_token: u32,
    scaling: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<X>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> inv_freq: array<f32>;

@compute @workgroup_size(WG)
fn rope(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let idx = linear_wg(wg, nwg) * WG + li;
    if (idx >= p.tokens * p.heads * p.half) {
        return;
    }
    let i = idx % p.half;
    let th = idx / p.half;
    let t = th / p.heads;
    let base = th * p.head_dim;
    let f = inv_freq[select(0u, t * p.half, p.per_token != 0u) + i];
    let angle = f32(positions[t]) * f;
    let sc = sincos_f32(angle);
    let sin_i = sc.x * p.scaling;
    let cos_i = sc.y * p.scaling;
    var ia = base + i;
    var ib = base + i + p.half;
    if (p.interleaved != 0u) {
        ia = base + 2u * i;
        ib = ia + 1u;
    }
    let a = f32(x[ia]);
    let b = f32(x[ib]);
    x[ia] = X(a * cos_i - b * sin_i);
    x[ib] = X(b * cos_i + a * sin_i);
}
