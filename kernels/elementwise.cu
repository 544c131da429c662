//! Elementwise and row-selection ops: add, softcap, dtype casts, bias add, gather_rows, argmax,
//! scatter_ids (async scheduling's token feed).
//!
//! Grid-stride loops over flat tensors (16-byte accesses when the length allows); gather_rows
//! takes a block per output row and per column span of wide rows, argmax one block per row,
//! or for a few wide rows (greedy decoding's logits) several blocks a row merged by the last
//! one to finish (`argmax_split`).

template <typename T>
__device__ __forceinline__ void add_impl(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out,
                                         u64 n, u32 vec_ok) {
    constexpr int N = Vec16<T>::N;
    const u64 stride = (u64)gridDim.x * blockDim.x;
    if (vec_ok) {
        for (u64 v = (u64)blockIdx.x * blockDim.x + threadIdx.x; v * N < n; v += stride) {
            float x[N], y[N];
            load_vec(a + v * N, x);
            load_vec(b + v * N, y);
#pragma unroll
            for (int k = 0; k < N; ++k) x[k] += y[k];
            store_vec(out + v * N, x);
        }
    } else {
        for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
            out[i] = from_f32<T>(to_f32(a[i]) + to_f32(b[i]));
    }
}

/// `tanh(x / cap) * cap`.
template <typename T>
__device__ __forceinline__ void softcap_impl(const T* __restrict__ x, T* __restrict__ out, u64 n, float cap) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x)
        out[i] = from_f32<T>(tanhf(to_f32(x[i]) / cap) * cap);
}

/// `out[m, n] += bias[n]` (bias f32), in place.
template <typename T>
__device__ __forceinline__ void bias_add_impl(T* x, const float* __restrict__ bias, u64 total, u32 cols) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (u64)gridDim.x * blockDim.x)
        x[i] = from_f32<T>(to_f32(x[i]) + bias[i % cols]);
}

/// `out[r] = x[indices[r]]`; an index >= rows is recorded and its row written as zeros.
template <typename T>
__device__ __forceinline__ void gather_rows_impl(const T* __restrict__ x, const u32* __restrict__ indices,
                                                 T* __restrict__ out, u32 rows, u32 cols, u32 vec_ok, u32* err) {
    // Block (r, y) copies columns [y * span, (y + 1) * span) of output row r (wide rows, such
    // as vocabulary logits, take several blocks).
    const u32 r = blockIdx.x;
    const u32 span = (cols + gridDim.y - 1) / gridDim.y;
    const u32 lo = blockIdx.y * span, hi = min(cols, lo + span);
    const u32 src = indices[r];
    T* o = out + (u64)r * cols;
    if (src >= rows) {
        if (threadIdx.x == 0 && blockIdx.y == 0) report_error(err, ERR_GATHER_INDEX, src, r);
        for (u32 i = lo + threadIdx.x; i < hi; i += blockDim.x) o[i] = from_f32<T>(0.0f);
        return;
    }
    const T* s = x + (u64)src * cols;
    constexpr int N = Vec16<T>::N;
    if (vec_ok) {  // span is then a multiple of N (the host rounds it)
        for (u32 i = lo + threadIdx.x * N; i < hi; i += blockDim.x * N)
            *reinterpret_cast<uint4*>(o + i) = *reinterpret_cast<const uint4*>(s + i);
    } else {
        for (u32 i = lo + threadIdx.x; i < hi; i += blockDim.x) o[i] = s[i];
    }
}

/// Whether (va, ia) ranks before (vb, ib): NaN first (as torch), then larger values, then
/// the smaller index on ties.
__device__ __forceinline__ bool arg_better(float va, u32 ia, float vb, u32 ib) {
    const bool na = va != va, nb = vb != vb;
    if (na || nb) return na && (!nb || ia < ib);
    return va > vb || (va == vb && ia < ib);
}

/// This thread's best (value, index) of row[lo, hi) in block-stride order. `vec_ok`: the row
/// is whole 16-byte vectors and lo a multiple of a vector (16-byte loads, 4 in flight).
template <typename T>
__device__ __forceinline__ void argmax_scan(const T* __restrict__ row, u32 lo, u32 hi, u32 vec_ok, float& bv, u32& bi) {
    bv = TESSERA_NEG_INF;
    bi = 0xffffffffu;
    // arg_better is a total order, so the scan order does not change the result.
    if (vec_ok) {
        constexpr int N = Vec16<T>::N;
#pragma unroll 4
        for (u32 c = lo / N + threadIdx.x; c < hi / N; c += blockDim.x) {
            float v[N];
            load_vec(row + (u64)c * N, v);
#pragma unroll
            for (int e = 0; e < N; ++e)
                if (arg_better(v[e], c * N + e, bv, bi)) { bv = v[e]; bi = c * N + e; }
        }
    } else {
        // Unrolled: a 128k-entry vocab row is ~125 loads per thread, several kept in flight.
#pragma unroll 8
        for (u32 i = lo + threadIdx.x; i < hi; i += blockDim.x) {
            const float v = to_f32(row[i]);
            if (arg_better(v, i, bv, bi)) { bv = v; bi = i; }
        }
    }
}

/// The best (value, index) of the warp, in every lane.
__device__ __forceinline__ void argmax_warp(float& bv, u32& bi) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const u32 oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (arg_better(ov, oi, bv, bi)) { bv = ov; bi = oi; }
    }
}

/// The best (value, index) of the block, valid in thread 0 (index 0xffffffff: none).
__device__ __forceinline__ void argmax_block(float& bv, u32& bi) {
    __shared__ float sv[32];
    __shared__ u32 si[32];
    argmax_warp(bv, bi);
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) { sv[warp] = bv; si[warp] = bi; }
    __syncthreads();
    if (warp == 0) {
        const u32 nwarps = blockDim.x >> 5;
        bv = lane < nwarps ? sv[lane] : TESSERA_NEG_INF;
        bi = lane < nwarps ? si[lane] : 0xffffffffu;
        argmax_warp(bv, bi);
    }
}

/// Index of the largest value of each row (first on ties, first NaN wins), one block a row.
/// blockDim.x <= 1024.
template <typename T>
__device__ __forceinline__ void argmax_impl(const T* __restrict__ x, u32* __restrict__ out, u32 cols, u32 vec_ok) {
    float bv;
    u32 bi;
    argmax_scan(x + (u64)blockIdx.x * cols, 0, cols, vec_ok, bv, bi);
    argmax_block(bv, bi);
    if (threadIdx.x == 0) out[blockIdx.x] = bi == 0xffffffffu ? 0u : bi;
}

/// argmax of wide rows (vocabulary logits) over gridDim.y blocks a row, each a span of
/// columns (a multiple of 16 bytes when `vec_ok`): each block leaves its best in
/// part_v / part_i [row][y], counts itself done on counters[row], and the last one (which
/// resets the counter to 0 for the next launch or graph replay) reduces the partials.
template <typename T>
__device__ __forceinline__ void argmax_split_impl(const T* __restrict__ x, u32* __restrict__ out, u32 cols,
                                                  u32 vec_ok, float* __restrict__ part_v, u32* __restrict__ part_i,
                                                  u32* __restrict__ counters) {
    __shared__ u32 s_last;
    constexpr int N = Vec16<T>::N;
    const u32 r = blockIdx.x, parts = gridDim.y;
    u32 span = (cols + parts - 1) / parts;
    if (vec_ok) span = (span + N - 1) / N * N;
    const u32 lo = min(cols, blockIdx.y * span), hi = min(cols, lo + span);
    float bv;
    u32 bi;
    argmax_scan(x + (u64)r * cols, lo, hi, vec_ok, bv, bi);
    argmax_block(bv, bi);
    if (threadIdx.x == 0) {
        part_v[(u64)r * parts + blockIdx.y] = bv;
        part_i[(u64)r * parts + blockIdx.y] = bi;
        __threadfence();
        const bool last = atomicAdd(counters + r, 1u) + 1 == parts;
        if (last) atomicExch(counters + r, 0u);
        s_last = last;
    }
    __syncthreads();
    if (!s_last || threadIdx.x >= 32) return;
    __threadfence();
    bv = TESSERA_NEG_INF;
    bi = 0xffffffffu;
    for (u32 p = threadIdx.x; p < parts; p += 32) {
        const float v = __ldcg(part_v + (u64)r * parts + p);
        const u32 i = __ldcg(part_i + (u64)r * parts + p);
        if (arg_better(v, i, bv, bi)) { bv = v; bi = i; }
    }
    argmax_warp(bv, bi);
    if (threadIdx.x == 0) out[r] = bi == 0xffffffffu ? 0u : bi;
}

#define ELEMENTWISE(S, T)                                                                            \
    extern "C" __global__ void add_##S(const T* a, const T* b, T* out, u64 n, u32 vec_ok) {          \
        pdl_trigger();  add_impl<T>(a, b, out, n, vec_ok);                                           \
    }                                                                                                \
    extern "C" __global__ void softcap_##S(const T* x, T* out, u64 n, float cap) {                   \
        softcap_impl<T>(x, out, n, cap);                                                             \
    }                                                                                                \
    extern "C" __global__ void bias_add_##S(T* x, const float* bias, u64 total, u32 cols) {          \
        bias_add_impl<T>(x, bias, total, cols);                                                      \
    }                                                                                                \
    extern "C" __global__ void gather_rows_##S(const T* x, const u32* indices, T* out, u32 rows,     \
                                               u32 cols, u32 vec_ok, u32* err) {                     \
        pdl_trigger();  gather_rows_impl<T>(x, indices, out, rows, cols, vec_ok, err);               \
    }                                                                                                \
    extern "C" __global__ void argmax_##S(const T* x, u32* out, u32 cols, u32 vec_ok) {              \
        argmax_impl<T>(x, out, cols, vec_ok);                                                        \
    }                                                                                                \
    extern "C" __global__ void argmax_split_##S(const T* x, u32* out, u32 cols, u32 vec_ok,          \
                                                float* part_v, u32* part_i, u32* counters) {         \
        argmax_split_impl<T>(x, out, cols, vec_ok, part_v, part_i, counters);                        \
    }
FOR_EACH_FLOAT(ELEMENTWISE)

/// `out[i] = D(in[i])`: uploads widen or round weights to the activation dtype on the device.
template <typename S, typename D>
__device__ __forceinline__ void cast_impl(const S* __restrict__ in, D* __restrict__ out, u64 n) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x)
        out[i] = from_f32<D>(to_f32(in[i]));
}

#define CAST(SN, ST, DN, DT)                                                                         \
    extern "C" __global__ void cast_##SN##_##DN(const ST* in, DT* out, u64 n) {                      \
        cast_impl<ST, DT>(in, out, n);                                                               \
    }
CAST(f32, float, f16, __half)
CAST(f32, float, bf16, __nv_bfloat16)
CAST(f16, __half, f32, float)
CAST(bf16, __nv_bfloat16, f32, float)
CAST(f16, __half, bf16, __nv_bfloat16)
CAST(bf16, __nv_bfloat16, f16, __half)

/// `dst[pairs[2i]] = src[pairs[2i + 1]]`: the ids the previous step sampled, still on the
/// device, into this step's input ids. Out-of-range pairs are skipped.
extern "C" __global__ void scatter_ids_u32(u32* dst, const u32* __restrict__ src, const u32* __restrict__ pairs, u32 n,
                                           u32 dst_len, u32 src_len) {
    for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const u32 d = pairs[2 * i], s = pairs[2 * i + 1];
        if (d < dst_len && s < src_len) dst[d] = src[s];
    }
}
