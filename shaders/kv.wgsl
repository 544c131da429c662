//! `write_kv`: scatters one of k or v [T, width] into its paged cache
//! [num_blocks, block_size, width] at `slot_mapping[t]` (u32::MAX = padding, skipped; slots
//! past the cache are skipped too). One thread per element. Aliases: C (cache), S (source).
//! `write_kv_pair`: k and v of equal widths and dtypes in one dispatch (the usual case),
//! each thread writing one element of each; with `rope_on`, k is first rotated as `rope`
//! would have done in place (the backend defers a `rope` of k into this dispatch), rounded
//! to k's type S exactly as the separate op would store it.

struct Params {
    tokens: u32,
    width: u32,
    num_slots: u32,
    _pad0: u32,
    // RoPE of k (write_kv_pair): as rope.wgsl's parameters.
    rope_on: u32,
    head_dim: u32,
    half: u32,
    interleaved: u32,
    per_token: u32,
    scaling: f32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> cache: array<C>;
@group(0) @binding(2) var<storage, read> src: array<S>;
@group(0) @binding(3) var<storage, read> slots: array<u32>;

/// Element index in the cache of source element `i`, or u32::MAX (past the end, padding,
/// or a slot outside the cache).
fn cache_index(i: u32) -> u32 {
    if (i >= p.tokens * p.width) {
        return 0xffffffffu;
    }
    let t = i / p.width;
    let slot = slots[t];
    if (slot >= p.num_slots) {
        return 0xffffffffu;
    }
    return slot * p.width + (i - t * p.width);
}

@compute @workgroup_size(WG)
fn write_kv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let i = linear_wg(wg, nwg) * WG + li;
    let dst = cache_index(i);
    if (dst != 0xffffffffu) {
        cache[dst] = C(f32(src[i]));
    }
}

@group(0) @binding(4) var<storage, read_write> v_cache: array<C>;
@group(0) @binding(5) var<storage, read> v_src: array<S>;
@group(0) @binding(6) var<storage, read> positions: array<u32>;
@group(0) @binding(7) var<storage, read> inv_freq: array<f32>;

/// k element i, rotated when `rope_on`.
fn k_value(i: u32) -> f32 {
    let x = f32(src[i]);
    if (p.rope_on == 0u) {
        return x;
    }
    let t = i / p.width;
    let d = (i - t * p.width) % p.head_dim;
    let il = p.interleaved != 0u;
    if (d >= 2u * p.half) {
        return x;
    }
    let f = inv_freq[select(0u, t * p.half, p.per_token != 0u) + rope_pair(d, p.half, il)];
    let cs = sincos_f32(f32(positions[t]) * f) * p.scaling;
    let partner = f32(src[i - d + rope_partner(d, p.half, il)]);
    return f32(S(rope_elem(x, partner, d, p.half, il, cs)));
}

@compute @workgroup_size(WG)
fn write_kv_pair(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let i = linear_wg(wg, nwg) * WG + li;
    let dst = cache_index(i);
    if (dst != 0xffffffffu) {
        cache[dst] = C(k_value(i));
        v_cache[dst] = C(f32(v_src[i]));
    }
}
