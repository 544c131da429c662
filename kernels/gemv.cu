//! Small-batch GEMV: `out[m, n] = x[m, :] · w[n, :] (+ bias[n])` for at most 8 rows of x, bound
//! by the bandwidth of reading W once for all rows (cuBLAS takes larger M). One launch can run
//! up to 4 matrices on the same x (q/k/v), or gate and up with the gated activation applied in
//! the epilogue (`act(x·gateᵀ + bg) * (x·upᵀ + bu)`).
//!
//! ```text
//! block = 8 warps, split into groups of `ks` warps (ks = K splits, 1/2/4/8, so small N still
//!         fills every SM): warp w -> group w / ks, K slice w % ks
//! group g owns R consecutive rows of one matrix (gated: R gate rows and the same R up rows)
//! lane  : 16-byte chunks c = slice*32 + lane, c += ks*32; U chunks of every W row (and for
//!         MM > 1 of every x row) loaded before use, <= 16 loads of 16 B in flight; x comes
//!         from L1 (every block reads the same x); f32 FMAs into acc[M][rows]
//! reduce: warp shuffles, then shared memory over the ks slices; one thread per (m, row) adds
//!         the bias (f32), applies the activation, rounds once and stores
//! matrices: up to 4, matrix j takes blocks [first_j, first_{j+1}) of a 1-D grid
//! ```
//! W streams through `ld.global.nc.L1::no_allocate` (read once; L1 stays for x). K not a
//! multiple of the 16-byte vector (or an unaligned pointer: `vec_ok` = 0) takes a scalar loop.
//! Entry points `gemv_m{1,2,4,8}_<dtype>` and `gemv_gated_m{1,2,4,8}_<dtype>`: MM = the most
//! rows of x; `m` <= MM are live. The rows per group (R) per MM are mirrored in
//! native/src/cuda/gemv.rs. The gated kernel rounds gate and up to the storage dtype before the
//! activation, as the unfused matmul + act_mul do, so both paths compute the same function.

#define GEMV_WARPS 8
#define GEMV_THREADS (GEMV_WARPS * 32)

/// 16 bytes of a read-once stream (W), not kept in L1.
__device__ __forceinline__ uint4 ld_stream(const void* p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

/// The Vec16<T>::N values of a 16-byte register vector, widened to f32.
template <typename T> __device__ __forceinline__ void widen(const uint4& raw, float* out) {
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < Vec16<T>::N; ++i) out[i] = to_f32(e[i]);
}

/// This warp's partial dot products of x rows [0, m) with the RR rows `w` (nullptr = a row
/// past N: contributes zeros) over its K slice, into acc (reduced over the warp on return).
template <typename T, int MM, int RR>
__device__ __forceinline__ void gemv_dot(const T* __restrict__ x, u32 m, u32 k, u32 vec_ok, const T* const (&w)[RR],
                                         u32 slice, u32 ks, u32 lane, float (&acc)[MM][RR]) {
    constexpr int V = Vec16<T>::N;
    // Loads in flight per lane: U chunks of every W row, and (MM > 1) of every x row, <= 16.
    // With one x row, x is loaded next to its use (fewer registers, more resident warps).
    constexpr bool XPRE = MM > 1;
    constexpr int LOADS = RR + (XPRE ? MM : 0);
    constexpr int U = !XPRE ? (8 / RR > 0 ? 8 / RR : 1)
                            : ((16 / LOADS) >= 8 ? 8 : ((16 / LOADS) >= 4 ? 4 : ((16 / LOADS) >= 2 ? 2 : 1)));
#pragma unroll
    for (int mi = 0; mi < MM; ++mi)
#pragma unroll
        for (int r = 0; r < RR; ++r) acc[mi][r] = 0.0f;
    const u32 step = ks * 32;
    if (vec_ok) {
        const u32 chunks = k / V;
        for (u32 c = slice * 32 + lane; c < chunks; c += U * step) {
            uint4 wv[U][RR], xv[U][XPRE ? MM : 1];
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const u32 cc = c + u * step;
#pragma unroll
                for (int r = 0; r < RR; ++r)
                    wv[u][r] = (cc < chunks && w[r] != nullptr) ? ld_stream(w[r] + (u64)cc * V) : make_uint4(0, 0, 0, 0);
#pragma unroll
                for (int mi = 0; mi < (XPRE ? MM : 0); ++mi)
                    xv[u][mi] = (cc < chunks && mi < (int)m)
                                    ? __ldg(reinterpret_cast<const uint4*>(x + (u64)mi * k + (u64)cc * V))
                                    : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const u32 cc = c + u * step;
                if (XPRE || cc < chunks) {
                    float wf[RR][V];
#pragma unroll
                    for (int r = 0; r < RR; ++r) widen<T>(wv[u][r], wf[r]);
#pragma unroll
                    for (int mi = 0; mi < MM; ++mi) {
                        uint4 xr;
                        if constexpr (XPRE) xr = xv[u][mi];
                        else xr = __ldg(reinterpret_cast<const uint4*>(x + (u64)cc * V));
                        float xf[V];
                        widen<T>(xr, xf);
#pragma unroll
                        for (int r = 0; r < RR; ++r)
#pragma unroll
                            for (int e = 0; e < V; ++e) acc[mi][r] = fmaf(xf[e], wf[r][e], acc[mi][r]);
                    }
                }
            }
        }
    } else {
        for (u32 i = slice * 32 + lane; i < k; i += step) {
            float wf[RR];
#pragma unroll
            for (int r = 0; r < RR; ++r) wf[r] = w[r] != nullptr ? to_f32(w[r][i]) : 0.0f;
#pragma unroll
            for (int mi = 0; mi < MM; ++mi) {
                if (mi < (int)m) {
                    const float xv = to_f32(x[(u64)mi * k + i]);
#pragma unroll
                    for (int r = 0; r < RR; ++r) acc[mi][r] = fmaf(xv, wf[r], acc[mi][r]);
                }
            }
        }
    }
#pragma unroll
    for (int mi = 0; mi < MM; ++mi)
#pragma unroll
        for (int r = 0; r < RR; ++r) acc[mi][r] = warp_sum(acc[mi][r]);
}

/// Writes each warp's sums to `red[warp][mi * RR + r]`, then waits for the block.
template <int MM, int RR>
__device__ __forceinline__ void gemv_share(float (&acc)[MM][RR], float (*red)[MM * RR], u32 warp, u32 lane) {
    if (lane == 0) {
#pragma unroll
        for (int mi = 0; mi < MM; ++mi)
#pragma unroll
            for (int r = 0; r < RR; ++r) red[warp][mi * RR + r] = acc[mi][r];
    }
    __syncthreads();
}

/// Plain GEMV over up to 4 matrices sharing x (see the module docs).
template <typename T, int MM, int R>
__device__ __forceinline__ void gemv_plain(const T* __restrict__ x, u32 m, u32 k, u32 vec_ok, u32 ks, u32 nmats,
                                           const T* w0, const float* b0, T* o0, u32 n0, u32 f1,
                                           const T* w1, const float* b1, T* o1, u32 n1, u32 f2,
                                           const T* w2, const float* b2, T* o2, u32 n2, u32 f3,
                                           const T* w3, const float* b3, T* o3, u32 n3) {
    __shared__ float red[GEMV_WARPS][MM * R];
    // This block's matrix.
    u32 blk = blockIdx.x, first = 0;
    const T* w = w0;
    const float* bias = b0;
    T* out = o0;
    u32 n = n0;
    if (nmats > 1 && blk >= f1) { w = w1; bias = b1; out = o1; n = n1; first = f1; }
    if (nmats > 2 && blk >= f2) { w = w2; bias = b2; out = o2; n = n2; first = f2; }
    if (nmats > 3 && blk >= f3) { w = w3; bias = b3; out = o3; n = n3; first = f3; }
    const u32 groups = GEMV_WARPS / ks;
    const u32 row0 = (blk - first) * groups * R;
    const u32 warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const u32 g = warp / ks, slice = warp % ks;
    const T* rows[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const u32 row = row0 + g * R + r;
        rows[r] = row < n ? w + (u64)row * k : nullptr;
    }
    float acc[MM][R];
    gemv_dot<T, MM, R>(x, m, k, vec_ok, rows, slice, ks, lane, acc);
    gemv_share<MM, R>(acc, red, warp, lane);
    for (u32 t = threadIdx.x; t < groups * MM * R; t += blockDim.x) {
        const u32 gi = t / (MM * R), idx = t % (MM * R);
        const u32 mi = idx / R, row = row0 + gi * R + idx % R;
        if (mi >= m || row >= n) continue;
        float s = 0.0f;
        for (u32 j = 0; j < ks; ++j) s += red[gi * ks + j][idx];
        if (bias != nullptr) s += bias[row];
        out[(u64)mi * n + row] = from_f32<T>(s);
    }
}

/// `out = act(x·gateᵀ + bg) * (x·upᵀ + bu)`, gate and up rounded to T first.
template <typename T, int MM, int R>
__device__ __forceinline__ void gemv_gated(const T* __restrict__ x, u32 m, u32 k, u32 vec_ok, u32 ks, u32 act,
                                           const T* gate, const float* bg, const T* up, const float* bu, T* out, u32 n) {
    constexpr int RR = 2 * R;
    __shared__ float red[GEMV_WARPS][MM * RR];
    const u32 groups = GEMV_WARPS / ks;
    const u32 row0 = blockIdx.x * groups * R;
    const u32 warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const u32 g = warp / ks, slice = warp % ks;
    const T* rows[RR];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const u32 row = row0 + g * R + r;
        rows[r] = row < n ? gate + (u64)row * k : nullptr;
        rows[R + r] = row < n ? up + (u64)row * k : nullptr;
    }
    float acc[MM][RR];
    gemv_dot<T, MM, RR>(x, m, k, vec_ok, rows, slice, ks, lane, acc);
    gemv_share<MM, RR>(acc, red, warp, lane);
    for (u32 t = threadIdx.x; t < groups * MM * R; t += blockDim.x) {
        const u32 gi = t / (MM * R), idx = t % (MM * R);
        const u32 mi = idx / R, r = idx % R, row = row0 + gi * R + r;
        if (mi >= m || row >= n) continue;
        float gs = 0.0f, us = 0.0f;
        for (u32 j = 0; j < ks; ++j) {
            gs += red[gi * ks + j][mi * RR + r];
            us += red[gi * ks + j][mi * RR + R + r];
        }
        if (bg != nullptr) gs += bg[row];
        if (bu != nullptr) us += bu[row];
        const float gr = to_f32(from_f32<T>(gs)), ur = to_f32(from_f32<T>(us));
        out[(u64)mi * n + row] = from_f32<T>(activate(gr, act) * ur);
    }
}

#define GEMV_PLAIN(S, T, MM, R)                                                                                    \
    extern "C" __global__ void __launch_bounds__(GEMV_THREADS, 1) gemv_m##MM##_##S(                                  \
        const T* x, u32 m, u32 k, u32 vec_ok, u32 ks, u32 nmats, const T* w0, const float* b0, T* o0, u32 n0,      \
        u32 f1, const T* w1, const float* b1, T* o1, u32 n1, u32 f2, const T* w2, const float* b2, T* o2, u32 n2,  \
        u32 f3, const T* w3, const float* b3, T* o3, u32 n3) {                                                     \
        gemv_plain<T, MM, R>(x, m, k, vec_ok, ks, nmats, w0, b0, o0, n0, f1, w1, b1, o1, n1, f2, w2, b2, o2, n2,   \
                             f3, w3, b3, o3, n3);                                                                  \
    }

#define GEMV_GATED(S, T, MM, R)                                                                                    \
    extern "C" __global__ void __launch_bounds__(GEMV_THREADS, 1) gemv_gated_m##MM##_##S(                            \
        const T* x, u32 m, u32 k, u32 vec_ok, u32 ks, u32 act, const T* gate, const float* bg, const T* up,        \
        const float* bu, T* out, u32 n) {                                                                          \
        gemv_gated<T, MM, R>(x, m, k, vec_ok, ks, act, gate, bg, up, bu, out, n);                                  \
    }

// (MM, R): keep in sync with PLAIN_ROWS / GATED_ROWS in native/src/cuda/gemv.rs.
#define GEMV_ALL(S, T)                                                                                             \
    GEMV_PLAIN(S, T, 1, 1) GEMV_PLAIN(S, T, 2, 2) GEMV_PLAIN(S, T, 4, 2) GEMV_PLAIN(S, T, 8, 4)                    \
    GEMV_GATED(S, T, 1, 1) GEMV_GATED(S, T, 2, 1) GEMV_GATED(S, T, 4, 1) GEMV_GATED(S, T, 8, 2)
FOR_EACH_FLOAT(GEMV_ALL)
