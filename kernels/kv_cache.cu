//! `write_kv`: scatter this step's K and V rows into the paged caches by slot.
//!
//! ```text
//! cache [num_blocks, block_size, width]      slot = block * block_size + offset
//! k_cache[slot_mapping[t]] = k[t]; v_cache[slot_mapping[t]] = v[t]
//! slot 0xffffffff = padding token (skipped); slot >= num_slots is recorded and skipped
//! ```
//! One block per token; 16-byte copies when a row is a whole number of vectors.

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

template <typename T>
__device__ __forceinline__ void write_kv_impl(T* k_cache, T* v_cache, const T* k, const T* v,
                                              const u32* __restrict__ slots, u32 k_width, u32 v_width,
                                              u64 num_slots, u32 k_vec_ok, u32 v_vec_ok, u32* err) {
    const u32 t = blockIdx.x;
    const u32 slot = slots[t];
    if (slot == 0xffffffffu) return;
    if ((u64)slot >= num_slots) {
        if (threadIdx.x == 0) report_error(err, ERR_WRITE_KV_SLOT, slot, t);
        return;
    }
    copy_row(k + (u64)t * k_width, k_cache + (u64)slot * k_width, k_width, k_vec_ok);
    copy_row(v + (u64)t * v_width, v_cache + (u64)slot * v_width, v_width, v_vec_ok);
}

#define WRITE_KV(S, T)                                                                               \
    extern "C" __global__ void write_kv_##S(T* k_cache, T* v_cache, const T* k, const T* v,          \
                                            const u32* slots, u32 k_width, u32 v_width,              \
                                            u64 num_slots, u32 k_vec_ok, u32 v_vec_ok, u32* err) {   \
        write_kv_impl<T>(k_cache, v_cache, k, v, slots, k_width, v_width, num_slots, k_vec_ok,       \
                         v_vec_ok, err);                                                             \
    }
FOR_EACH_FLOAT(WRITE_KV)
