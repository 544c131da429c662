//! `write_kv`: scatter this step's K and V rows into the paged caches by slot.
//!
//! ```text
//! cache [num_blocks, block_size, width]      slot = block * block_size + offset
//! k_cache[slot_mapping[t]] = k[t]; v_cache[slot_mapping[t]] = v[t]
//! slot 0xffffffff = padding token (skipped); slot >= num_slots is recorded and skipped
//! ```
//! One block per token; 16-byte copies when a row is a whole number of vectors.
//!
//! A deferred RoPE of k (`rope_pos` not null; see native/src/cuda/tensor.rs) is applied on the
//! way: thread per (head, pair) of the k row, the rope kernel's formulas (common.cuh), the
//! rotated pair rounded to T and stored into the cache; dims >= 2 * half copied as they are.
//! With `q` (pending with the same positions; grid y = 1 + ceil(q pairs / blockDim)), blocks
//! y >= 1 rotate token t's q pairs in place (q_freq, q_head_dim, q_half, ... its own rope).
//! Launched with PDL (common.cuh): the slot and the angles are read before `pdl_wait`.

template <typename T>
__device__ __forceinline__ void copy_row(const T* __restrict__ src, T* __restrict__ dst, u32 width, u32 vec_ok) {
    constexpr int N = Vec16<T>::N;
    if (vec_ok) {
        for (u32 i = threadIdx.x * N; i < width; i += blockDim.x * N)
            *reinterpret_cast<uint4*>(dst + i) = *reinterpret_cast<const uint4*>(src + i);
    } else {
        for (u32 i = threadIdx.x; i < width; i += blockDim.x) dst[i] = src[i];
    }
}

/// `dst = rope(src)` for the row of token row `t` (width = heads * head_dim); (c0, s0) are
/// this thread's first pair's (p = threadIdx.x), computed before `pdl_wait`.
template <typename T>
__device__ __forceinline__ void rope_row(const T* __restrict__ src, T* __restrict__ dst, u32 width, u32 t,
                                         const u32* __restrict__ positions, const float* __restrict__ inv_freq,
                                         u32 head_dim, u32 half, u32 per_token, u32 interleaved, float scaling,
                                         float c0, float s0) {
    const u32 heads = width / head_dim;
    for (u32 p = threadIdx.x; p < heads * half; p += blockDim.x) {
        const u32 h = p / half, i = p % half;
        float c = c0, s = s0;
        if (p != threadIdx.x) rope_cos_sin(positions, inv_freq, t, i, half, per_token, scaling, c, s);
        u32 ia, ib;
        rope_pair_index(i, half, interleaved, ia, ib);
        const u32 o = h * head_dim;
        rope_rotate<T>(to_f32(src[o + ia]), to_f32(src[o + ib]), c, s, dst[o + ia], dst[o + ib]);
    }
    const u32 rest = head_dim - 2 * half;
    for (u32 p = threadIdx.x; p < heads * rest; p += blockDim.x) {
        const u32 e = (p / rest) * head_dim + 2 * half + p % rest;
        dst[e] = src[e];
    }
}

template <typename T>
__device__ __forceinline__ void write_kv_impl(T* k_cache, T* v_cache, const T* k, const T* v,
                                              const u32* __restrict__ slots, u32 k_width, u32 v_width,
                                              u64 num_slots, u32 k_vec_ok, u32 v_vec_ok, u32* err,
                                              const u32* rope_pos, const float* rope_freq, u32 rope_head_dim,
                                              u32 rope_half, u32 rope_per_token, u32 rope_interleaved,
                                              float rope_scaling, T* q, const float* q_freq, u32 q_width,
                                              u32 q_head_dim, u32 q_half, u32 q_per_token, u32 q_interleaved,
                                              float q_scaling) {
    const u32 t = blockIdx.x;
    // Before pdl_wait: the slot and the angles (step metadata and frequencies only).
    if (blockIdx.y > 0) {
        // q of token t, rotated in place (every row, padding included: a settle).
        const u32 heads = q_width / q_head_dim;
        const u32 p = (blockIdx.y - 1) * blockDim.x + threadIdx.x;
        if (p >= heads * q_half) {
            pdl_wait_trigger();
            return;
        }
        const u32 h = p / q_half, i = p % q_half;
        float c, s;
        rope_cos_sin(rope_pos, q_freq, t, i, q_half, q_per_token, q_scaling, c, s);
        pdl_wait_trigger();
        u32 ia, ib;
        rope_pair_index(i, q_half, q_interleaved, ia, ib);
        T* head = q + (u64)t * q_width + (u64)h * q_head_dim;
        rope_rotate<T>(to_f32(head[ia]), to_f32(head[ib]), c, s, head[ia], head[ib]);
        return;
    }
    const u32 slot = slots[t];
    float c0 = 0.0f, s0 = 0.0f;
    if (rope_pos != nullptr && slot != 0xffffffffu && threadIdx.x < (k_width / rope_head_dim) * rope_half)
        rope_cos_sin(rope_pos, rope_freq, t, threadIdx.x % rope_half, rope_half, rope_per_token, rope_scaling, c0, s0);
    pdl_wait_trigger();
    if (slot == 0xffffffffu) return;
    if ((u64)slot >= num_slots) {
        if (threadIdx.x == 0) report_error(err, ERR_WRITE_KV_SLOT, slot, t);
        return;
    }
    if (rope_pos != nullptr)
        rope_row(k + (u64)t * k_width, k_cache + (u64)slot * k_width, k_width, t, rope_pos, rope_freq, rope_head_dim,
                 rope_half, rope_per_token, rope_interleaved, rope_scaling, c0, s0);
    else
        copy_row(k + (u64)t * k_width, k_cache + (u64)slot * k_width, k_width, k_vec_ok);
    copy_row(v + (u64)t * v_width, v_cache + (u64)slot * v_width, v_width, v_vec_ok);
}

#define WRITE_KV(S, T)                                                                               \
    extern "C" __global__ void write_kv_##S(T* k_cache, T* v_cache, const T* k, const T* v,          \
                                            const u32* slots, u32 k_width, u32 v_width,              \
                                            u64 num_slots, u32 k_vec_ok, u32 v_vec_ok, u32* err,     \
                                            const u32* rope_pos, const float* rope_freq,             \
                                            u32 rope_head_dim, u32 rope_half, u32 rope_per_token,    \
                                            u32 rope_interleaved, float rope_scaling, T* q,          \
                                            const float* q_freq, u32 q_width, u32 q_head_dim,        \
                                            u32 q_half, u32 q_per_token, u32 q_interleaved,          \
                                            float q_scaling) {                                       \
        write_kv_impl<T>(k_cache, v_cache, k, v, slots, k_width, v_width, num_slots, k_vec_ok,       \
                         v_vec_ok, err, rope_pos, rope_freq, rope_head_dim, rope_half,               \
                         rope_per_token, rope_interleaved, rope_scaling, q, q_freq, q_width,         \
                         q_head_dim, q_half, q_per_token, q_interleaved, q_scaling);                 \
    }
FOR_EACH_FLOAT(WRITE_KV)
