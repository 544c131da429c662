//! Rotary position embedding, in place on `x` `[T, width]` (width = n_heads * head_dim).
//!
//! ```text
//! angle_i = f32(position[t]) * inv_freq[i]      inv_freq f32 [half] shared, or [T, half]
//! c, s    = cos(angle_i) * scaling, sin(angle_i) * scaling
//! neox:        pair (i, i + half)      interleaved: pair (2i, 2i + 1)
//! (a, b) -> (a c - b s, b c + a s);  dims >= rotary_dim of each head pass through untouched
//! ```
//! One thread per (token, head, pair); each pair is read and written by one thread only. The
//! formulas live in common.cuh (`rope_cos_sin`, `rope_rotate`): write_kv (kv_cache.cu)
//! applies a deferred rope to k and q with the same ones.

template <typename T>
__device__ __forceinline__ void rope_impl(T* x, const u32* __restrict__ positions, const float* __restrict__ inv_freq,
                                          u32 tokens, u32 width, u32 head_dim, u32 half, u32 per_token,
                                          u32 interleaved, float scaling) {
    const u32 heads = width / head_dim;
    const u64 total = (u64)tokens * heads * half;
    for (u64 idx = (u64)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (u64)gridDim.x * blockDim.x) {
        const u32 i = (u32)(idx % half);
        const u64 th = idx / half;
        const u32 h = (u32)(th % heads);
        const u32 t = (u32)(th / heads);
        float c, s;
        rope_cos_sin(positions, inv_freq, t, i, half, per_token, scaling, c, s);
        T* head = x + (u64)t * width + (u64)h * head_dim;
        u32 ia, ib;
        rope_pair_index(i, half, interleaved, ia, ib);
        rope_rotate<T>(to_f32(head[ia]), to_f32(head[ib]), c, s, head[ia], head[ib]);
    }
}

#define ROPE(S, T)                                                                                   \
    extern "C" __global__ void rope_##S(T* x, const u32* positions, const float* inv_freq, u32 tokens,\
                                        u32 width, u32 head_dim, u32 half, u32 per_token,            \
                                        u32 interleaved, float scaling) {                            \
        rope_impl<T>(x, positions, inv_freq, tokens, width, head_dim, half, per_token, interleaved,  \
                     scaling);                                                                       \
    }
FOR_EACH_FLOAT(ROPE)
