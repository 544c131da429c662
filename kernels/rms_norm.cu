//! RMSNorm over groups of `group` elements, optionally fused with the residual add:
//!
//! ```text
//! s   = x + residual            (rounded to T and stored to sum_out: the new residual stream)
//! out = s / sqrt(mean(s²) + eps) * (offset + w)      offset = 1 for Gemma's (1 + w)
//! ```
//! Groups of up to 1024 elements take one warp each (q/k norms over head_dim, small hidden
//! sizes); larger groups take a block of 256 threads. The weight is always f32.

template <typename T>
__device__ __forceinline__ float load_sum(const T* x, const T* res, T* sum_out, u64 i) {
    float v = to_f32(x[i]);
    if (res != nullptr) {
        T s = from_f32<T>(v + to_f32(res[i]));
        sum_out[i] = s;
        v = to_f32(s);
    }
    return v;
}

/// Pass 1 for the elements `first, first+step, ...` of one group: sum of squares (and the
/// residual sum written out). `vec_ok`: the group is a whole number of 16-byte vectors.
template <typename T>
__device__ __forceinline__ float sum_squares(const T* x, const T* res, T* sum_out, u32 group,
                                             u32 first, u32 step, u32 vec_ok) {
    constexpr int N = Vec16<T>::N;
    float acc = 0.0f;
    if (vec_ok) {
        for (u32 i = first * N; i < group; i += step * N) {
            float v[N];
            load_vec(x + i, v);
            if (res != nullptr) {
                float r[N];
                load_vec(res + i, r);
#pragma unroll
                for (int k = 0; k < N; ++k) v[k] = to_f32(from_f32<T>(v[k] + r[k]));
                store_vec(sum_out + i, v);
            }
#pragma unroll
            for (int k = 0; k < N; ++k) acc += v[k] * v[k];
        }
    } else {
        for (u32 i = first; i < group; i += step) {
            float v = load_sum(x, res, sum_out, i);
            acc += v * v;
        }
    }
    return acc;
}

/// Pass 2: out = s * inv_rms * (offset + w), reading s back from x or sum_out.
template <typename T>
__device__ __forceinline__ void normalize(const T* s, const float* __restrict__ w, T* out, u32 group,
                                          u32 first, u32 step, float inv_rms, float offset, u32 vec_ok) {
    constexpr int N = Vec16<T>::N;
    if (vec_ok) {
        for (u32 i = first * N; i < group; i += step * N) {
            float v[N];
            load_vec(s + i, v);
#pragma unroll
            for (int k = 0; k < N; ++k) v[k] = (v[k] * inv_rms) * (offset + w[i + k]);
            store_vec(out + i, v);
        }
    } else {
        for (u32 i = first; i < group; i += step) out[i] = from_f32<T>((to_f32(s[i]) * inv_rms) * (offset + w[i]));
    }
}

/// One warp per group; blockDim.x = 256 (8 groups per block).
template <typename T>
__device__ __forceinline__ void rms_norm_warp_impl(const T* x, const T* res, const float* w, T* out,
                                                   T* sum_out, u32 rows, u32 group, float eps,
                                                   float offset, u32 vec_ok) {
    const u32 lane = threadIdx.x & 31;
    const u32 row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;
    const u64 base = (u64)row * group;
    const T* xr = x + base;
    const T* rr = res ? res + base : nullptr;
    T* sr = sum_out ? sum_out + base : nullptr;
    float ss = warp_sum(sum_squares(xr, rr, sr, group, lane, 32, vec_ok));
    __syncwarp();
    float variance = ss / (float)group;
    float inv_rms = 1.0f / sqrtf(variance + eps);
    normalize(rr ? (const T*)sr : xr, w, out + base, group, lane, 32, inv_rms, offset, vec_ok);
}

/// One block per group; blockDim.x a multiple of 32.
template <typename T>
__device__ __forceinline__ void rms_norm_block_impl(const T* x, const T* res, const float* w, T* out,
                                                    T* sum_out, u32 group, float eps, float offset,
                                                    u32 vec_ok) {
    __shared__ float scratch[32];
    const u64 base = (u64)blockIdx.x * group;
    const T* xr = x + base;
    const T* rr = res ? res + base : nullptr;
    T* sr = sum_out ? sum_out + base : nullptr;
    float ss = block_sum(sum_squares(xr, rr, sr, group, threadIdx.x, blockDim.x, vec_ok), scratch);
    float variance = ss / (float)group;
    float inv_rms = 1.0f / sqrtf(variance + eps);
    normalize(rr ? (const T*)sr : xr, w, out + base, group, threadIdx.x, blockDim.x, inv_rms, offset, vec_ok);
}

// `res` and `sum_out` are null for plain RMSNorm.
#define RMS_NORM(S, T)                                                                               \
    extern "C" __global__ void rms_norm_warp_##S(const T* x, const T* res, const float* w, T* out,   \
                                                 T* sum_out, u32 rows, u32 group, float eps,         \
                                                 float offset, u32 vec_ok) {                         \
        pdl_trigger();  rms_norm_warp_impl<T>(x, res, w, out, sum_out, rows, group, eps, offset, vec_ok); \
    }                                                                                                \
    extern "C" __global__ void rms_norm_block_##S(const T* x, const T* res, const float* w, T* out,  \
                                                  T* sum_out, u32 group, float eps, float offset,    \
                                                  u32 vec_ok) {                                      \
        pdl_trigger();  rms_norm_block_impl<T>(x, res, w, out, sum_out, group, eps, offset, vec_ok); \
    }
FOR_EACH_FLOAT(RMS_NORM)
