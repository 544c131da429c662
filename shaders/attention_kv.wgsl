//! `paged_attention` with the preceding `write_kv_pair` folded in (appended to
//! `attention.wgsl` when the kernel sets FKV = 1; see that file's header): read-write caches,
//! this step's K / V rows (`k_new`, `v_new`, alias S) and their cache slots, staged per
//! workgroup in `kn` / `vn` and used for the row's last key (`key4`).

@group(0) @binding(2) var<storage, read_write> k_cache: array<KV>;
@group(0) @binding(3) var<storage, read_write> v_cache: array<KV>;
@group(0) @binding(10) var<storage, read> k_new: array<S>;
@group(0) @binding(11) var<storage, read> v_new: array<S>;
@group(0) @binding(12) var<storage, read> slots: array<u32>;
var<workgroup> kn: array<f32, 4u * HD4>;
var<workgroup> vn: array<f32, 4u * HD4>;

/// Stages row t's new K and V of head h's kv head in kn / vn (as the cache holds them:
/// K rotated and rounded to S, then both to KV); the group's first head stores them.
fn stage_new_kv(t: u32, h: u32, li: u32) {
    let kv_width = (p.num_heads / p.group) * HD;
    let off = (h / p.group) * HD;
    let base = t * kv_width + off;
    let slot = slots[t];
    let store = kv_writer && h % p.group == 0u && slot < p.num_slots;
    for (var d = li; d < 4u * HD4; d = d + WG) {
        var kf = 0.0;
        var vf = 0.0;
        if (d < HD) {
            let partner = f32(k_new[base + rope_partner(d, p.half, p.interleaved != 0u)]);
            let k = KV(f32(S(roped(t, d, f32(k_new[base + d]), partner, p.k_rope != 0u))));
            let v = KV(f32(v_new[base + d]));
            if (store) {
                k_cache[slot * kv_width + off + d] = k;
                v_cache[slot * kv_width + off + d] = v;
            }
            kf = f32(k);
            vf = f32(v);
        }
        kn[d] = kf;
        vn[d] = vf;
    }
    workgroupBarrier();
}

/// Dims 4c .. 4c + 4 of key j (row at `base` in the cache), the staged new one for j = pos.
fn key4(is_v: bool, j: u32, pos: u32, base: u32, c: u32) -> vec4<f32> {
    if (j == pos) {
        if (is_v) {
            return vec4<f32>(vn[4u * c], vn[4u * c + 1u], vn[4u * c + 2u], vn[4u * c + 3u]);
        }
        return vec4<f32>(kn[4u * c], kn[4u * c + 1u], kn[4u * c + 2u], kn[4u * c + 3u]);
    }
    return kv4(is_v, base, c);
}
