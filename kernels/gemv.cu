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
//!
//! `gemv_norm_m*` / `gemv_gated_norm_m*` take x before its RMSNorm (the `norm_*` trait ops):
//! every block first computes `h = rms_norm(x + residual)` of all m rows itself into shared
//! memory (`gemv_norm_prologue`: the sums of squares in rms_norm.cu's order, so h is bit for
//! bit what rms_norm.cu would have stored), block 0 also writing `x + residual` out, then
//! runs the products on h. K < 8192, whole 16-byte vectors (the host checks). Their grid is
//! persistent (as many blocks as fit on the SMs at once, looping over the `nblocks` blocks
//! of work), so the prologue runs once per resident block, not once per row group.
//!
//! `gemv_norm_kv_m*` (`norm_qkv_write_kv`, a decode step's q/k/v): `gemv_norm_m*` over q, k
//! and v with `write_kv` and the RoPE of q and k in the epilogue (`GemvKv`): q's and k's rows
//! are taken in RoPE-pair order (`gemv_kv_row`), so the thread of a pair's first row holds
//! both sums, rounds them to T as the product would store them, rotates them with the rope
//! kernel's formulas and stores q and k rotated; k and v also go to the caches at the token's
//! slot. The same bits as the three launches it replaces (product, rope, write_kv).
//!
//! Early W (`early`, normed kernels, `TESSERA_GEMV_EARLY_W`, on by default): the W rows a
//! block streams do not depend on x, so each resident block first hands its first block's
//! first batch of W loads to `cp.async` (into a stage in dynamic shared memory after x, when
//! the launch gave room: `gemv_early_stage`; no registers held), runs the prologue while those
//! bytes are in flight, then waits and reads them back; the FMAs run in the same order, so the
//! results are the same bits either way. With `early` = 0 the prologue runs first (the block
//! then loads W), as before. M = 1 normed kernels are built for 4 blocks an SM (<= 64
//! registers, as without the stage).

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

/// 16 bytes of x: through the read-only cache from global memory, or (XS) from shared memory.
template <bool XS> __device__ __forceinline__ uint4 ld_x(const void* p) {
    if constexpr (XS) return *reinterpret_cast<const uint4*>(p);
    else return __ldg(reinterpret_cast<const uint4*>(p));
}

/// Up to 4 matrices sharing x (plain kernels): matrix j owns blocks [f[j], f[j + 1]); one
/// struct instead of 20 arguments threaded through every helper.
template <typename T> struct GemvMats {
    const T* w[4];
    const float* b[4];
    T* o[4];
    u32 n[4];
    u32 f[4];
    u32 count;
};

/// One matrix of a plain launch: the one block `blk` works on.
template <typename T> struct GemvMat {
    const T* w;
    const float* b;
    T* o;
    u32 n;
    u32 first;
    /// Which of the launch's matrices (0..4).
    u32 index;
};

/// The matrix block `blk` works on.
template <typename T> __device__ __forceinline__ GemvMat<T> gemv_pick(const GemvMats<T>& ms, u32 blk) {
    GemvMat<T> r{ms.w[0], ms.b[0], ms.o[0], ms.n[0], 0, 0};
    if (ms.count > 1 && blk >= ms.f[1]) r = GemvMat<T>{ms.w[1], ms.b[1], ms.o[1], ms.n[1], ms.f[1], 1};
    if (ms.count > 2 && blk >= ms.f[2]) r = GemvMat<T>{ms.w[2], ms.b[2], ms.o[2], ms.n[2], ms.f[2], 2};
    if (ms.count > 3 && blk >= ms.f[3]) r = GemvMat<T>{ms.w[3], ms.b[3], ms.o[3], ms.n[3], ms.f[3], 3};
    return r;
}

/// The Vec16<T>::N values of a 16-byte register vector, widened to f32.
template <typename T> __device__ __forceinline__ void widen(const uint4& raw, float* out) {
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < Vec16<T>::N; ++i) out[i] = to_f32(e[i]);
}

/// Loads per lane of `gemv_dot`: U chunks of every W row, and (MM > 1) of every x row, <= 16.
/// With one x row, x is loaded next to its use (fewer registers, more resident warps).
template <int MM, int RR> struct GemvBatch {
    static constexpr bool XPRE = MM > 1;
    static constexpr int LOADS = RR + (XPRE ? MM : 0);
    static constexpr int U = !XPRE ? (8 / RR > 0 ? 8 / RR : 1)
                                   : ((16 / LOADS) >= 8 ? 8 : ((16 / LOADS) >= 4 ? 4 : ((16 / LOADS) >= 2 ? 2 : 1)));
    /// 16-byte vectors of an early W batch's stage (`gemv_dot`): the first batch of every
    /// thread (native/src/cuda/gemv.rs `stage_bytes` mirrors it).
    static constexpr u32 STAGE = U * RR * GEMV_THREADS;
};

/// The W chunks c + u·step (u < U) of the RR rows `w` into wv (zeros past the row or for a
/// null row).
template <typename T, int U, int RR>
__device__ __forceinline__ void gemv_load_w(const T* const (&w)[RR], u32 c, u32 step, u32 chunks, uint4 (&wv)[U][RR]) {
    constexpr int V = Vec16<T>::N;
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const u32 cc = c + u * step;
#pragma unroll
        for (int r = 0; r < RR; ++r)
            wv[u][r] = (cc < chunks && w[r] != nullptr) ? ld_stream(w[r] + (u64)cc * V) : make_uint4(0, 0, 0, 0);
    }
}

/// `gemv_load_w`'s chunks as `cp.async` copies into this thread's slots of `stage`
/// (`[U][RR][GEMV_THREADS]` vectors: no registers held while they are in flight).
template <typename T, int U, int RR>
__device__ __forceinline__ void gemv_stage_w(const T* const (&w)[RR], u32 c, u32 step, u32 chunks, uint4* stage) {
    constexpr int V = Vec16<T>::N;
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const u32 cc = c + u * step;
#pragma unroll
        for (int r = 0; r < RR; ++r)
            if (cc < chunks && w[r] != nullptr)
                cp_async16(stage + (u * RR + r) * GEMV_THREADS + threadIdx.x, w[r] + (u64)cc * V, true);
    }
    cp_async_commit();
}

/// Waits for `gemv_stage_w`'s copies, then reads them as `gemv_load_w` would have loaded them.
template <typename T, int U, int RR>
__device__ __forceinline__ void gemv_unstage_w(const T* const (&w)[RR], u32 c, u32 step, u32 chunks, const uint4* stage,
                                               uint4 (&wv)[U][RR]) {
    asm volatile("cp.async.wait_all;\n" ::: "memory");
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const u32 cc = c + u * step;
#pragma unroll
        for (int r = 0; r < RR; ++r)
            wv[u][r] = (cc < chunks && w[r] != nullptr) ? stage[(u * RR + r) * GEMV_THREADS + threadIdx.x] : make_uint4(0, 0, 0, 0);
    }
}

/// This warp's partial dot products of x rows [0, m) with the RR rows `w` (nullptr = a row
/// past N: contributes zeros) over its K slice, into acc (reduced over the warp on return).
/// `before()` runs once before x is read (the normed kernels' prologue, which writes x; the
/// plain kernels' `pdl_wait`); with a `stage` (GemvBatch::STAGE vectors of shared memory),
/// after this lane's first batch of W is already on its way there (`gemv_stage_w`), else with
/// PRE after that batch is on its way to registers (the plain kernels: nothing else is live
/// then). The FMAs run in the same order either way.
template <typename T, int MM, int RR, bool XS, bool PRE, typename Before>
__device__ __forceinline__ void gemv_dot(const T* __restrict__ x, u32 m, u32 k, u32 vec_ok, const T* const (&w)[RR],
                                         u32 slice, u32 ks, u32 lane, float (&acc)[MM][RR], uint4* stage, Before&& before) {
    constexpr int V = Vec16<T>::N;
    constexpr bool XPRE = GemvBatch<MM, RR>::XPRE;
    constexpr int U = GemvBatch<MM, RR>::U;
#pragma unroll
    for (int mi = 0; mi < MM; ++mi)
#pragma unroll
        for (int r = 0; r < RR; ++r) acc[mi][r] = 0.0f;
    const u32 step = ks * 32;
    if (vec_ok) {
        const u32 chunks = k / V;
        // The FMAs of the batch at chunk c: wv (and for MM > 1 xv) loaded.
        auto fma_batch = [&](u32 c, const uint4 (&wv)[U][RR], const uint4 (&xv)[U][XPRE ? MM : 1]) {
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
                        else xr = ld_x<XS>(x + (u64)cc * V);
                        float xf[V];
                        widen<T>(xr, xf);
#pragma unroll
                        for (int r = 0; r < RR; ++r)
#pragma unroll
                            for (int e = 0; e < V; ++e) acc[mi][r] = fmaf(xf[e], wf[r][e], acc[mi][r]);
                    }
                }
            }
        };
        auto load_x = [&](u32 c, uint4 (&xv)[U][XPRE ? MM : 1]) {
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const u32 cc = c + u * step;
#pragma unroll
                for (int mi = 0; mi < (XPRE ? MM : 0); ++mi)
                    xv[u][mi] = (cc < chunks && mi < (int)m) ? ld_x<XS>(x + (u64)mi * k + (u64)cc * V) : make_uint4(0, 0, 0, 0);
            }
        };
        u32 c = slice * 32 + lane;
        if (stage != nullptr) {
            // The first batch through shared memory, copied while before() runs.
            gemv_stage_w<T, U, RR>(w, c, step, chunks, stage);
            before();
            if (c < chunks) {
                uint4 wv[U][RR], xv[U][XPRE ? MM : 1];
                gemv_unstage_w<T, U, RR>(w, c, step, chunks, stage, wv);
                load_x(c, xv);
                fma_batch(c, wv, xv);
            }
            c += U * step;
        } else if (PRE) {
            // The first batch in registers, in flight while before() waits for x.
            uint4 wv[U][RR], xv[U][XPRE ? MM : 1];
            gemv_load_w<T, U, RR>(w, c, step, chunks, wv);
            before();
            if (c < chunks) {
                load_x(c, xv);
                fma_batch(c, wv, xv);
            }
            c += U * step;
        } else {
            before();
        }
        for (; c < chunks; c += U * step) {
            uint4 wv[U][RR], xv[U][XPRE ? MM : 1];
            gemv_load_w<T, U, RR>(w, c, step, chunks, wv);
            load_x(c, xv);
            fma_batch(c, wv, xv);
        }
    } else {
        before();
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

/// No prologue (`gemv_dot`'s `before` of a normed block's later rows).
struct GemvNoop {
    __device__ __forceinline__ void operator()() const {}
};

/// The plain kernels' `before`: wait for the kernel that wrote x (common.cuh, PDL).
struct GemvPdl {
    __device__ __forceinline__ void operator()() const { pdl_wait_trigger(); }
};

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

/// The q/k/v launch's RoPE and cache store (`gemv_norm_kv_m*`, module docs): matrix 0 is q,
/// 1 is k, 2 is v; q and k are rotated (half = 0: no rope), k and v also stored at
/// `slots[mi]` of the caches (`write_kv`'s rules: u32::MAX = padding, skipped; a slot past
/// `num_slots` is reported and skipped).
template <typename T> struct GemvKv {
    T* k_cache;
    T* v_cache;
    const u32* slots;
    u64 num_slots;
    u32* err;
    const u32* pos;
    const float* freq;
    u32 head_dim, half, per_token, interleaved;
    float scaling;
};

/// Virtual row v of a rotated matrix -> its row: the first 2·half virtual rows of a head are
/// its RoPE pairs side by side (pair i = virtual rows 2i and 2i + 1 = elements ia and ib of
/// `rope_pair_index`), the rest stay where they are; so a block's even run of rows holds
/// whole pairs, and one thread rotates each pair from the two sums.
template <typename T> __device__ __forceinline__ u32 gemv_kv_row(const GemvKv<T>& kv, u32 v) {
    const u32 head = v / kv.head_dim, j = v - head * kv.head_dim;
    if (j >= 2 * kv.half) return v;
    u32 ia, ib;
    rope_pair_index(j >> 1, kv.half, kv.interleaved, ia, ib);
    return head * kv.head_dim + ((j & 1) ? ib : ia);
}

/// Stores element `col` of row mi of matrix `mat` (k: 1, v: 2) into its cache at `slot`
/// (`kv.slots[mi]`).
template <typename T> __device__ __forceinline__ void gemv_kv_cache(const GemvKv<T>& kv, u32 mat, u32 mi, u32 width, u32 col, T val, u32 slot) {
    if (mat == 0 || mat > 2) return;
    if (slot == 0xffffffffu) return;
    if ((u64)slot >= kv.num_slots) {
        report_error(kv.err, ERR_WRITE_KV_SLOT, slot, mi);
        return;
    }
    (mat == 1 ? kv.k_cache : kv.v_cache)[(u64)slot * width + col] = val;
}

/// Plain GEMV of block `blk` over up to 4 matrices sharing x (see the module docs); `stage`,
/// `before`: see `gemv_dot`. With KV (`kv` not null), the q/k/v epilogue of `GemvKv`.
template <typename T, int MM, int R, bool XS, bool PRE, bool KV = false, typename Before>
__device__ __forceinline__ void gemv_plain(u32 blk, const T* __restrict__ x, u32 m, u32 k, u32 vec_ok, u32 ks,
                                           const GemvMats<T>& ms, uint4* stage, Before&& before,
                                           const GemvKv<T>* kv = nullptr) {
    static_assert(GEMV_WARPS * MM * R <= GEMV_THREADS, "one epilogue entry a thread at most");
    __shared__ float red[GEMV_WARPS][MM * R];
    const u32 groups = GEMV_WARPS / ks;
    // This block's matrix.
    const GemvMat<T> mt = gemv_pick(ms, blk);
    const T* w = mt.w;
    const float* bias = mt.b;
    T* out = mt.o;
    const u32 n = mt.n;
    const u32 row0 = (blk - mt.first) * groups * R;
    const u32 warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const u32 g = warp / ks, slice = warp % ks;
    // KV: q's and k's rows in RoPE-pair order (`gemv_kv_row`).
    const bool roped = KV && mt.index < 2 && kv->half > 0;
    const T* rows[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const u32 row = row0 + g * R + r;
        const u32 at = roped && row < n ? gemv_kv_row(*kv, row) : row;
        rows[r] = row < n ? w + (u64)at * k : nullptr;
    }
    // KV, one row of x (EARLY): the cache slot and RoPE angle of this thread's output entry
    // (thread t takes entry t: groups * MM * R <= GEMV_THREADS), from step metadata and the
    // frequencies only, so read before `before()` (its pdl_wait), off the epilogue's critical
    // path (single stream +0.45 % on an H200; batch 4 measured 1.4 % slower with it, so
    // batches read them in the epilogue as before).
    constexpr bool EARLY = KV && MM == 1;
    u32 slot = 0xffffffffu;
    float rc = 1.0f, rs = 0.0f;
    if constexpr (EARLY) {
        const u32 gi = threadIdx.x / (MM * R), idx = threadIdx.x % (MM * R);
        const u32 mi = idx / R, row = row0 + gi * R + idx % R;
        if (gi < groups && mi < m && row < n) {
            if (mt.index == 1 || mt.index == 2) slot = kv->slots[mi];
            if (roped && row % kv->head_dim < 2 * kv->half && !(row & 1))
                rope_cos_sin(kv->pos, kv->freq, mi, (row % kv->head_dim) >> 1, kv->half, kv->per_token, kv->scaling, rc, rs);
        }
    }
    float acc[MM][R];
    gemv_dot<T, MM, R, XS, PRE>(x, m, k, vec_ok, rows, slice, ks, lane, acc, stage, before);
    gemv_share<MM, R>(acc, red, warp, lane);
    // The sum of output (group gi, entry idx) over the K slices.
    auto sum_of = [&](u32 gi, u32 idx) {
        float s = 0.0f;
        for (u32 j = 0; j < ks; ++j) s += red[gi * ks + j][idx];
        return s;
    };
    for (u32 t = threadIdx.x; t < groups * MM * R; t += blockDim.x) {
        const u32 gi = t / (MM * R), idx = t % (MM * R);
        const u32 mi = idx / R, row = row0 + gi * R + idx % R;
        if (mi >= m || row >= n) continue;
        float s = sum_of(gi, idx);
        if constexpr (KV) {
            if (roped && row % kv->head_dim < 2 * kv->half) {
                // A pair: the even virtual row's thread rotates both (the odd one's sum is
                // the next entry of this block, rows per block being even).
                if (row & 1) continue;
                const u32 l2 = gi * R + idx % R + 1;
                float s2 = sum_of(l2 / R, mi * R + l2 % R);
                const u32 pa = gemv_kv_row(*kv, row), pb = gemv_kv_row(*kv, row + 1);
                if (bias != nullptr) {
                    s += bias[pa];
                    s2 += bias[pb];
                }
                if constexpr (!EARLY) {
                    slot = kv->slots[mi];
                    rope_cos_sin(kv->pos, kv->freq, mi, (row % kv->head_dim) >> 1, kv->half, kv->per_token, kv->scaling, rc, rs);
                }
                T oa, ob;
                // Rounded to T first, as the product's output the rope kernel would read.
                rope_rotate<T>(to_f32(from_f32<T>(s)), to_f32(from_f32<T>(s2)), rc, rs, oa, ob);
                out[(u64)mi * n + pa] = oa;
                out[(u64)mi * n + pb] = ob;
                gemv_kv_cache(*kv, mt.index, mi, n, pa, oa, slot);
                gemv_kv_cache(*kv, mt.index, mi, n, pb, ob, slot);
                continue;
            }
        }
        if (bias != nullptr) s += bias[row];
        const T o = from_f32<T>(s);
        out[(u64)mi * n + row] = o;
        if constexpr (KV && !EARLY) slot = kv->slots[mi];
        if constexpr (KV) gemv_kv_cache(*kv, mt.index, mi, n, row, o, slot);
    }
}

/// `out = act(x·gateᵀ + bg) * (x·upᵀ + bu)`, gate and up rounded to T first; `stage`,
/// `before`: see `gemv_dot`.
template <typename T, int MM, int R, bool XS, bool PRE, typename Before>
__device__ __forceinline__ void gemv_gated(u32 blk, const T* __restrict__ x, u32 m, u32 k, u32 vec_ok, u32 ks, u32 act,
                                           const T* gate, const float* bg, const T* up, const float* bu, T* out, u32 n,
                                           uint4* stage, Before&& before) {
    constexpr int RR = 2 * R;
    __shared__ float red[GEMV_WARPS][MM * RR];
    const u32 groups = GEMV_WARPS / ks;
    const u32 row0 = blk * groups * R;
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
    gemv_dot<T, MM, RR, XS, PRE>(x, m, k, vec_ok, rows, slice, ks, lane, acc, stage, before);
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

/// The normed kernels' prologue: `xs[mi][:] = rms_norm(x[mi] + res[mi])` for the m rows, in
/// shared memory, computed as kernels/rms_norm.cu does (rows of K <= 1024: a warp per row,
/// lane stride; larger: the whole block of 256 threads, block_sum), rounded to T; block 0
/// writes the rounded sums `x + res` to `sum_out` (res null: plain RMSNorm, no sum).
template <typename T>
__device__ __forceinline__ void gemv_norm_prologue(const T* __restrict__ x, const T* __restrict__ res,
                                                   T* __restrict__ sum_out, const float* __restrict__ nw, float eps,
                                                   float offset, u32 m, u32 k, T* xs) {
    constexpr int N = Vec16<T>::N;
    __shared__ float scratch[32];
    __shared__ float inv_rms[8];
    const u32 warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const bool write_sum = res != nullptr && blockIdx.x == 0;  // (persistent grid: block 0 exists)
    // The norm weights of this thread's first pass-2 vector, loaded now (off the critical path).
    const u32 i0 = threadIdx.x * N;
    float nw0[N];
#pragma unroll
    for (int e = 0; e < N; ++e) nw0[e] = i0 + e < k ? nw[i0 + e] : 0.0f;
    // Pass 1 over elements first*N, (first+step)*N, ... of row mi: s = x (+ res) rounded to T
    // into xs (and sum_out), sum of squares in rms_norm.cu's order.
    auto pass1 = [&](u32 mi, u32 first, u32 step) {
        float acc = 0.0f;
        // Not unrolled: fewer registers (the M = 2 normed kernels 89 -> 80, 3 blocks an SM);
        // at K 2048 it is one round anyway, and with early W it runs under the W loads.
#pragma unroll 1
        for (u32 i = first * N; i < k; i += step * N) {
            const u64 at = (u64)mi * k + i;
            float v[N];
            load_vec(x + at, v);
            if (res != nullptr) {
                float r[N];
                load_vec(res + at, r);
#pragma unroll
                for (int e = 0; e < N; ++e) v[e] = to_f32(from_f32<T>(v[e] + r[e]));
                if (write_sum) store_vec(sum_out + at, v);
            }
            store_vec(xs + at, v);
#pragma unroll
            for (int e = 0; e < N; ++e) acc += v[e] * v[e];
        }
        return acc;
    };
    if (k <= 1024) {
        for (u32 mi = warp; mi < m; mi += GEMV_WARPS) {
            const float ss = warp_sum(pass1(mi, lane, 32));
            if (lane == 0) inv_rms[mi] = 1.0f / sqrtf(ss / (float)k + eps);
        }
    } else {
        for (u32 mi = 0; mi < m; ++mi) {
            const float ss = block_sum(pass1(mi, threadIdx.x, blockDim.x), scratch);
            if (threadIdx.x == 0) inv_rms[mi] = 1.0f / sqrtf(ss / (float)k + eps);
        }
    }
    __syncthreads();
    // Pass 2, in place: h = s * inv_rms * (offset + w), rounded to T.
    for (u32 mi = 0; mi < m; ++mi) {
        const float inv = inv_rms[mi];
#pragma unroll 1
        for (u32 i = i0; i < k; i += blockDim.x * N) {
            float v[N];
            load_vec(xs + (u64)mi * k + i, v);
#pragma unroll
            for (int e = 0; e < N; ++e) v[e] = (v[e] * inv) * (offset + (i == i0 ? nw0[e] : nw[i + e]));
            store_vec(xs + (u64)mi * k + i, v);
        }
    }
    __syncthreads();
}

#define GEMV_MATS_PARAMS(T)                                                                                        \
    u32 nmats, const T *w0, const float *b0, T *o0, u32 n0, u32 f1, const T *w1, const float *b1, T *o1, u32 n1,   \
        u32 f2, const T *w2, const float *b2, T *o2, u32 n2, u32 f3, const T *w3, const float *b3, T *o3, u32 n3
#define GEMV_MATS(T)                                                                                               \
    const GemvMats<T> ms{{w0, w1, w2, w3}, {b0, b1, b2, b3}, {o0, o1, o2, o3}, {n0, n1, n2, n3}, {0, f1, f2, f3}, nmats}

/// Bytes of dynamic shared memory this launch has.
__device__ __forceinline__ u32 gemv_dynamic_smem() {
    u32 r;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(r));
    return r;
}

/// The normed kernels' early W stage (module docs): in dynamic shared memory after x (m·k of
/// T, rounded up to 16 bytes), when `early` and the launch has the room; else null.
template <typename T, int MM, int RR>
__device__ __forceinline__ uint4* gemv_early_stage(unsigned char* smem, u32 early, u32 m, u32 k) {
    const u32 at = (m * k * (u32)sizeof(T) + 15u) & ~15u;
    const bool room = at + GemvBatch<MM, RR>::STAGE * 16u <= gemv_dynamic_smem();
    return early && room ? reinterpret_cast<uint4*>(smem + at) : nullptr;
}

/// The normed plain kernels: `gemv_norm_prologue` once per resident block (with `early`, while
/// its first block's first W batch is on its way to shared memory; module docs), then its
/// blocks of work.
template <typename T, int MM, int R, bool KV = false>
__device__ __forceinline__ void gemv_norm_plain(const T* __restrict__ x, const T* __restrict__ res, T* __restrict__ sum_out,
                                                const float* __restrict__ nw, float eps, float offset, u32 nblocks, u32 m,
                                                u32 k, u32 vec_ok, u32 ks, u32 early, const GemvMats<T>& ms,
                                                unsigned char* smem, const GemvKv<T>* kv = nullptr) {
    T* xs = reinterpret_cast<T*>(smem);
    uint4* stage = gemv_early_stage<T, MM, R>(smem, early, m, k);
    if (blockIdx.x >= nblocks) pdl_wait_trigger();
    for (u32 blk = blockIdx.x; blk < nblocks; blk += gridDim.x) {
        const bool first = blk == blockIdx.x;
        gemv_plain<T, MM, R, true, false, KV>(blk, xs, m, k, vec_ok, ks, ms, first ? stage : nullptr, [&] {
            if (first) {
                pdl_wait_trigger();
                gemv_norm_prologue<T>(x, res, sum_out, nw, eps, offset, m, k, xs);
            }
        }, kv);
        __syncthreads();
    }
}

/// The normed gated kernels, as `gemv_norm_plain`.
template <typename T, int MM, int R>
__device__ __forceinline__ void gemv_norm_gated(const T* __restrict__ x, const T* __restrict__ res, T* __restrict__ sum_out,
                                                const float* __restrict__ nw, float eps, float offset, u32 nblocks, u32 m,
                                                u32 k, u32 vec_ok, u32 ks, u32 early, u32 act, const T* gate,
                                                const float* bg, const T* up, const float* bu, T* out, u32 n,
                                                unsigned char* smem) {
    T* xs = reinterpret_cast<T*>(smem);
    uint4* stage = gemv_early_stage<T, MM, 2 * R>(smem, early, m, k);
    if (blockIdx.x >= nblocks) pdl_wait_trigger();
    for (u32 blk = blockIdx.x; blk < nblocks; blk += gridDim.x) {
        const bool first = blk == blockIdx.x;
        gemv_gated<T, MM, R, true, false>(blk, xs, m, k, vec_ok, ks, act, gate, bg, up, bu, out, n, first ? stage : nullptr, [&] {
            if (first) {
                pdl_wait_trigger();
                gemv_norm_prologue<T>(x, res, sum_out, nw, eps, offset, m, k, xs);
            }
        });
        __syncthreads();
    }
}

/// Blocks an SM the normed kernels are built for: M = 1 keeps the 4 (<= 64 registers) it had
/// before the early W stage (whose pointer and flag stay live over the prologue).
#define GEMV_NORM_MIN_BLOCKS(MM) ((MM) == 1 ? 4 : 1)

#define GEMV_PLAIN(S, T, MM, R)                                                                                    \
    extern "C" __global__ void __launch_bounds__(GEMV_THREADS, 1)                                                  \
        gemv_m##MM##_##S(const T* x, u32 m, u32 k, u32 vec_ok, u32 ks, GEMV_MATS_PARAMS(T)) {                      \
        GEMV_MATS(T);                                                                                              \
        gemv_plain<T, MM, R, false, true>(blockIdx.x, x, m, k, vec_ok, ks, ms, nullptr, GemvPdl{});                           \
    }                                                                                                              \
    extern "C" __global__ void __launch_bounds__(GEMV_THREADS, GEMV_NORM_MIN_BLOCKS(MM)) gemv_norm_m##MM##_##S(      \
        const T* x, const T* res, T* sum_out, const float* nw, float eps, float offset, u32 nblocks, u32 m, u32 k, \
        u32 vec_ok, u32 ks, u32 early, GEMV_MATS_PARAMS(T)) {                                                      \
        GEMV_MATS(T);                                                                                              \
        extern __shared__ __align__(16) unsigned char gemv_xs[];                                                   \
        gemv_norm_plain<T, MM, R>(x, res, sum_out, nw, eps, offset, nblocks, m, k, vec_ok, ks, early, ms, gemv_xs); \
    }                                                                                                              \
    extern "C" __global__ void __launch_bounds__(GEMV_THREADS, GEMV_NORM_MIN_BLOCKS(MM)) gemv_norm_kv_m##MM##_##S(   \
        const T* x, const T* res, T* sum_out, const float* nw, float eps, float offset, u32 nblocks, u32 m, u32 k, \
        u32 vec_ok, u32 ks, u32 early, GEMV_MATS_PARAMS(T), T* k_cache, T* v_cache, const u32* slots,             \
        u64 num_slots, u32* err, const u32* pos, const float* freq, u32 head_dim, u32 half, u32 per_token,         \
        u32 interleaved, float scaling) {                                                                          \
        GEMV_MATS(T);                                                                                              \
        const GemvKv<T> kv{k_cache, v_cache, slots, num_slots, err, pos, freq, head_dim, half, per_token,          \
                           interleaved, scaling};                                                                  \
        extern __shared__ __align__(16) unsigned char gemv_xs[];                                                   \
        gemv_norm_plain<T, MM, R, true>(x, res, sum_out, nw, eps, offset, nblocks, m, k, vec_ok, ks, early, ms,    \
                                        gemv_xs, &kv);                                                             \
    }

#define GEMV_GATED(S, T, MM, R)                                                                                    \
    extern "C" __global__ void __launch_bounds__(GEMV_THREADS, 1) gemv_gated_m##MM##_##S(                            \
        const T* x, u32 m, u32 k, u32 vec_ok, u32 ks, u32 act, const T* gate, const float* bg, const T* up,        \
        const float* bu, T* out, u32 n) {                                                                          \
        gemv_gated<T, MM, R, false, true>(blockIdx.x, x, m, k, vec_ok, ks, act, gate, bg, up, bu, out, n, nullptr, GemvPdl{}); \
    }                                                                                                              \
    extern "C" __global__ void __launch_bounds__(GEMV_THREADS, GEMV_NORM_MIN_BLOCKS(MM)) gemv_gated_norm_m##MM##_##S(\
        const T* x, const T* res, T* sum_out, const float* nw, float eps, float offset, u32 nblocks, u32 m, u32 k, \
        u32 vec_ok, u32 ks, u32 early, u32 act, const T* gate, const float* bg, const T* up, const float* bu,      \
        T* out, u32 n) {                                                                                           \
        extern __shared__ __align__(16) unsigned char gemv_xs[];                                                   \
        gemv_norm_gated<T, MM, R>(x, res, sum_out, nw, eps, offset, nblocks, m, k, vec_ok, ks, early, act, gate,   \
                                  bg, up, bu, out, n, gemv_xs);                                                    \
    }

// (MM, R): keep in sync with PLAIN_ROWS / GATED_ROWS in native/src/cuda/gemv.rs.
#define GEMV_ALL(S, T)                                                                                             \
    GEMV_PLAIN(S, T, 1, 1) GEMV_PLAIN(S, T, 2, 2) GEMV_PLAIN(S, T, 4, 2) GEMV_PLAIN(S, T, 8, 4)                    \
    GEMV_GATED(S, T, 1, 1) GEMV_GATED(S, T, 2, 1) GEMV_GATED(S, T, 4, 1) GEMV_GATED(S, T, 8, 2)
FOR_EACH_FLOAT(GEMV_ALL)
