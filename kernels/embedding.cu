//! Embedding lookup: `out[t] = table[ids[t]] * scale` (Gemma scales by sqrt(hidden)).
//!
//! One block per token, threads across the row, 16-byte accesses when rows allow them.
//! An id >= vocab is recorded in the error word and its row is written as zeros.

template <typename T>
__device__ __forceinline__ void embedding_impl(const T* __restrict__ table, const u32* __restrict__ ids,
                                               T* __restrict__ out, u32 hidden, u32 vocab, float scale,
                                               u32 vec_ok, u32* err) {
    const u32 t = blockIdx.x;
    const u32 id = ids[t];
    T* o = out + (u64)t * hidden;
    if (id >= vocab) {
        if (threadIdx.x == 0) report_error(err, ERR_EMBEDDING_ID, id, t);
        for (u32 i = threadIdx.x; i < hidden; i += blockDim.x) o[i] = from_f32<T>(0.0f);
        return;
    }
    const T* row = table + (u64)id * hidden;
    constexpr int N = Vec16<T>::N;
    if (vec_ok) {
        for (u32 i = threadIdx.x * N; i < hidden; i += blockDim.x * N) {
            float v[N];
            load_vec(row + i, v);
#pragma unroll
            for (int k = 0; k < N; ++k) v[k] *= scale;
            store_vec(o + i, v);
        }
    } else {
        for (u32 i = threadIdx.x; i < hidden; i += blockDim.x) o[i] = from_f32<T>(to_f32(row[i]) * scale);
    }
}

#define EMBEDDING(S, T)                                                                              \
    extern "C" __global__ void embedding_##S(const T* table, const u32* ids, T* out, u32 hidden,     \
                                             u32 vocab, float scale, u32 vec_ok, u32* err) {         \
        pdl_trigger();  embedding_impl<T>(table, ids, out, hidden, vocab, scale, vec_ok, err);       \
    }
FOR_EACH_FLOAT(EMBEDDING)
