//! On-device sampling, one block of 1024 threads per row, reproducing
//! `tessera_core::sample::sample_row` exactly (same candidate set, same inverse-CDF order):
//!
//! ```text
//! t < 1e-5            -> argmax (first max; NaN never wins; all NaN -> last index)
//! w_i = exp((f64(x_i) - f64(max)) / f64(t)), candidates: w_i > 0, sorted by (w desc, id asc)
//! top_k > 0           keep the first k           top_p < 1: keep up to the first token whose
//! min_p > 0           keep w >= min_p            inclusive mass >= top_p * mass
//! draw                first token whose inclusive mass > u * mass of the candidates
//! ```
//! No sort: w is monotone in x, so the order is that of key = (ordered bits of x) << 32 |
//! ~id, and every cut is "the largest key whose mass (or count) of keys >= it crosses a
//! threshold", found by an 8-bit radix descent over the 64-bit key (mass histograms in
//! shared memory, f64), stopping early once the chosen bucket holds a single token.

#define SAMPLE_THREADS 1024

struct SampleShared {
    double mass[256];
    u32 cnt[256];
    double red[32];
    u64 redk[32];
    float redv[32];
    u32 redi[32];
    int chosen;
    u32 count;
    double above;
    u64 key;
};

/// Order-preserving u32 of a non-NaN float (-0 is +0).
__device__ __forceinline__ u32 ord_f32(float x) {
    if (x == 0.0f) x = 0.0f;
    const u32 b = __float_as_uint(x);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ u64 sample_key(float x, u32 i) {
    return ((u64)ord_f32(x) << 32) | (u64)(0xffffffffu - i);
}

__device__ __forceinline__ double block_sum_f64(double v, SampleShared& sh) {
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (lane == 0) sh.red[warp] = v;
    __syncthreads();
    v = lane < (blockDim.x >> 5) ? sh.red[lane] : 0.0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ u64 block_min_u64(u64 v, SampleShared& sh) {
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) { const u64 x = __shfl_xor_sync(0xffffffffu, v, o); v = x < v ? x : v; }
    __syncthreads();
    if (lane == 0) sh.redk[warp] = v;
    __syncthreads();
    v = lane < (blockDim.x >> 5) ? sh.redk[lane] : ~0ull;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) { const u64 x = __shfl_xor_sync(0xffffffffu, v, o); v = x < v ? x : v; }
    return v;
}

/// The sampler's argmax: first index of the largest non-NaN value; all NaN -> vocab - 1.
template <typename T>
__device__ __forceinline__ u32 sampler_argmax(const T* row, u32 vocab, SampleShared& sh) {
    float bv = TESSERA_NEG_INF;
    u32 bi = 0xffffffffu;
    for (u32 i = threadIdx.x; i < vocab; i += blockDim.x) {
        const float v = to_f32(row[i]);
        if (v == v && (bi == 0xffffffffu || v > bv)) { bv = v; bi = i; }
    }
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const u32 oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (oi != 0xffffffffu && (bi == 0xffffffffu || ov > bv || (ov == bv && oi < bi))) { bv = ov; bi = oi; }
    }
    __syncthreads();
    if (lane == 0) { sh.redv[warp] = bv; sh.redi[warp] = bi; }
    __syncthreads();
    bv = lane < (blockDim.x >> 5) ? sh.redv[lane] : TESSERA_NEG_INF;
    bi = lane < (blockDim.x >> 5) ? sh.redi[lane] : 0xffffffffu;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const u32 oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (oi != 0xffffffffu && (bi == 0xffffffffu || ov > bv || (ov == bv && oi < bi))) { bv = ov; bi = oi; }
    }
    return bi == 0xffffffffu ? vocab - 1 : bi;
}

/// One candidate: whether token i is in the set {w > 0, key >= lo, w >= wmin}, with w, key.
template <typename T>
__device__ __forceinline__ bool candidate(const T* row, u32 i, float mx, double t, u64 lo, double wmin,
                                          double& w, u64& key) {
    const float x = to_f32(row[i]);
    if (x != x) return false;
    w = exp(((double)x - (double)mx) / t);
    if (!(w > 0.0) || w < wmin) return false;
    key = sample_key(x, i);
    return key >= lo;
}

/// The largest candidate key K with sum_{candidates, key >= K} f >= thr (> thr if `strict`),
/// f = w (`mass`) or 1; 0 when no key qualifies. Block-uniform result.
template <typename T>
__device__ u64 descend(const T* row, u32 vocab, float mx, double t, u64 lo, double wmin, bool mass,
                       double thr, bool strict, SampleShared& sh) {
    u64 prefix = 0, mask = 0;
    double above = 0.0;
    for (int s = 56; s >= 0; s -= 8) {
        for (u32 b = threadIdx.x; b < 256; b += blockDim.x) { sh.mass[b] = 0.0; sh.cnt[b] = 0; }
        __syncthreads();
        for (u32 i = threadIdx.x; i < vocab; i += blockDim.x) {
            double w;
            u64 key;
            if (candidate(row, i, mx, t, lo, wmin, w, key) && (key & mask) == prefix) {
                const u32 b = (u32)(key >> s) & 255u;
                atomicAdd(&sh.mass[b], mass ? w : 1.0);
                atomicAdd(&sh.cnt[b], 1u);
            }
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            double cum = above;
            int chosen = -1;
            for (int b = 255; b >= 0; --b) {
                if (sh.cnt[b] == 0) continue;
                const double next = cum + sh.mass[b];
                if (strict ? next > thr : next >= thr) { chosen = b; break; }
                cum = next;
            }
            sh.chosen = chosen;
            sh.above = cum;
            sh.count = chosen >= 0 ? sh.cnt[chosen] : 0u;
        }
        __syncthreads();
        const int chosen = sh.chosen;
        const u32 count = sh.count;
        above = sh.above;
        __syncthreads();
        if (chosen < 0) return 0;
        prefix |= (u64)chosen << s;
        mask |= (u64)0xff << s;
        if (count == 1 && s > 0) {
            // A single token left in the bucket: its key is the answer.
            for (u32 i = threadIdx.x; i < vocab; i += blockDim.x) {
                double w;
                u64 key;
                if (candidate(row, i, mx, t, lo, wmin, w, key) && (key & mask) == prefix) sh.key = key;
            }
            __syncthreads();
            const u64 k = sh.key;
            __syncthreads();
            return k;
        }
    }
    return prefix;
}

template <typename T>
__device__ __forceinline__ void sample_impl(const T* __restrict__ logits, u32 vocab, const float* __restrict__ temperature,
                                            const u32* __restrict__ top_k, const float* __restrict__ top_p,
                                            const float* __restrict__ min_p, const double* __restrict__ uniform,
                                            u32* __restrict__ out) {
    __shared__ SampleShared sh;
    const u32 r = blockIdx.x;
    const T* row = logits + (u64)r * vocab;
    const float t = temperature[r];
    if (!(t >= 1e-5f)) {
        const u32 best = sampler_argmax(row, vocab, sh);
        if (threadIdx.x == 0) out[r] = best;
        return;
    }
    // max over non-NaN values (fmaxf ignores NaN)
    float mx = TESSERA_NEG_INF;
    for (u32 i = threadIdx.x; i < vocab; i += blockDim.x) mx = fmaxf(mx, to_f32(row[i]));
    mx = warp_max(mx);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sh.redv[threadIdx.x >> 5] = mx;
    __syncthreads();
    mx = (threadIdx.x & 31) < (blockDim.x >> 5) ? sh.redv[threadIdx.x & 31] : TESSERA_NEG_INF;
    mx = warp_max(mx);
    if (mx == TESSERA_NEG_INF) {
        const u32 best = sampler_argmax(row, vocab, sh);
        if (threadIdx.x == 0) out[r] = best;
        return;
    }
    const double td = (double)t;
    u64 lo = 0;
    if (top_k[r] > 0) {
        const u64 k = descend(row, vocab, mx, td, 0, 0.0, false, (double)top_k[r], false, sh);
        if (k != 0) lo = k;
    }
    if (top_p[r] < 1.0f) {
        double part = 0.0;
        for (u32 i = threadIdx.x; i < vocab; i += blockDim.x) {
            double w;
            u64 key;
            if (candidate(row, i, mx, td, lo, 0.0, w, key)) part += w;
        }
        const double limit = (double)top_p[r] * block_sum_f64(part, sh);
        const u64 k = descend(row, vocab, mx, td, lo, 0.0, true, limit, false, sh);
        if (k != 0) lo = k;
    }
    const double wmin = min_p[r] > 0.0f ? (double)min_p[r] : 0.0;
    double part = 0.0;
    u64 last = ~0ull;
    for (u32 i = threadIdx.x; i < vocab; i += blockDim.x) {
        double w;
        u64 key;
        if (candidate(row, i, mx, td, lo, wmin, w, key)) {
            part += w;
            last = key < last ? key : last;
        }
    }
    const double total = block_sum_f64(part, sh);
    last = block_min_u64(last, sh);
    u64 k = descend(row, vocab, mx, td, lo, wmin, true, uniform[r] * total, true, sh);
    if (k == 0) k = last;
    if (threadIdx.x == 0) out[r] = 0xffffffffu - (u32)(k & 0xffffffffull);
}

#define SAMPLE(S, T)                                                                                 \
    extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS) sample_##S(                        \
        const T* logits, u32 vocab, const float* temperature, const u32* top_k, const float* top_p,   \
        const float* min_p, const double* uniform, u32* out) {                                        \
        sample_impl<T>(logits, vocab, temperature, top_k, top_p, min_p, uniform, out);                \
    }
FOR_EACH_FLOAT(SAMPLE)
