//! Paged attention for decode rows (one query token per sequence), flash-decoding style: a
//! block per (sequence, kv head, group of GH query heads, key split), K/V rows read once
//! straight from the cache with 16-byte loads (K and V of U keys in flight per lane), every
//! row serving all GH query heads of its group (GQA), online softmax in f32, and with
//! num_splits > 1 f32 partials (every split writes its (max, sum), an empty one (-inf, 0), so
//! they need no zero fill) merged by `attention_decode_combine`.
//!
//! ```text
//! grid  x = num_decode * num_splits   (i = x / num_splits: seq b = seq_order[i], split = x % ..)
//!       y = num_kv_heads * ceil(G / GH) (kv head, first query head g0 of the group's chunk)
//! block = DEC_WARPS warps; a key row (D elements, VECS = D / N 16-byte vectors) is spread over
//!         TG = min(VECS, 32) lanes (VPL vectors each), so a warp covers KPI = 32 / TG keys
//!         per load and U loads deep: KPW = KPI * U keys a warp, KPB = DEC_WARPS * KPW a tile
//! tile  : lanes load K and V of their keys -> q·k partials reduced over the TG lanes ->
//!         per-warp max -> one __syncthreads -> block max -> p = exp(s - m), acc += p * v in
//!         registers (m is block-uniform, so warps only add up acc and l at the end)
//! keys of seq b: [max(0, seq_len - W), seq_len) ∩ [split * split_len, (split + 1) * split_len)
//! partials: row o = (split * num_decode + i) * num_heads + head: acc [o][D], (max, sum) [o][2]
//! ```
//! head_dim is a template constant (64, 128, 256; q pre-scaled by `scale`); other head dims
//! take the general kernel (attention.cu). Bad metadata or block ids go to the error word.
//! Both kernels are launched with PDL (common.cuh): the metadata is read before `pdl_wait`,
//! and with `early_kv` (registers and cluster variants) the first tile of the keys before a
//! row's newest too: the engine writes a decode row's K/V once, at its own step, so only the
//! newest key (this step's, written by the kernel before) must wait.
//!
//! `paged_attention_decode_cluster_*` (sm_90+, 2..8 splits, the registers variant): the
//! splits of a (sequence, head chunk) launch as one thread block cluster, keep their
//! partials in shared memory and merge them there (distributed shared memory), in the
//! combine's order: no partials in global memory and no `attention_decode_combine` launch.
//!
//! Two variants of the key loop (template PIPE; the host picks, attention.rs `DecodePipeline`):
//! - registers (`paged_attention_decode_*`, the default): a tile's K and V go to registers,
//!   then the math runs with no loads in flight, one __syncthreads a tile (block-uniform max);
//! - pipelined (`paged_attention_decode_pipelined_*`, opt-in, for grids of several waves):
//!   every lane copies its K/V vectors of a tile with cp.async into its own slots of shared
//!   memory (lane-private: no barrier), STAGES tiles deep, so two tiles are in flight while
//!   one is computed; each warp keeps its own running max (no barrier in the loop) and the
//!   warps are merged once at the end with exp(m_w - M) weights. U = 4 / VPL vectors a lane a
//!   tile (K and V: 128 bytes), 48 KB of dynamic shared memory a block, fewer registers
//!   (__launch_bounds__ for 4 blocks an SM where q and acc are 32 floats a lane or fewer and GH <= 4).
//!
//! ```text
//! Little's law (H200 4.2 TB/s x ~1 us / 132 SMs ~ 32 KB in flight an SM): registers variant:
//!   3 blocks x 32 KB, but only while no warp of the block computes; pipelined: 4 blocks x
//!   2 stages x 16 KB = 128 KB issued ahead, all the time.
//! ```

#define DEC_WARPS 4
/// Most splits a cluster merges (attention.rs `MAX_CLUSTER`, the portable cluster size).
#define DEC_MAX_CLUSTER 8

/// Lane layout of one (dtype, head_dim, heads per block) variant; mirrored on the host by
/// `decode_keys_per_tile` in native/src/cuda/attention.rs.
template <typename T, int D, int GH, bool PIPE = false> struct DecodeShape {
    static constexpr int N = Vec16<T>::N;
    static constexpr int VECS = D / N;
    static constexpr int TG = VECS < 32 ? VECS : 32;
    static constexpr int VPL = VECS / TG;
    static constexpr int KPI = 32 / TG;
    // Loads in flight per lane; fewer where q, acc and the loads would not fit 255 registers.
    // Pipelined: 4 vectors of K (and of V) a lane a tile, in shared memory.
    static constexpr int U0 = PIPE ? 4 / VPL : ((GH > 4 || (GH == 4 && VECS >= 32)) ? 4 : 8) / VPL;
    static constexpr int U = U0 < 1 ? 1 : U0;
    static constexpr int KPW = KPI * U;
    static constexpr int KPB = DEC_WARPS * KPW;
    // Pipelined only: tiles in shared memory (STAGES - 1 in flight while one is computed),
    // its dynamic shared memory (the stages, reused by the final merge of the warps), and
    // the blocks an SM asked of ptxas (4 where q and acc take 32 floats a lane or fewer).
    static constexpr int STAGES = 3;
    static constexpr int STAGE_BYTES = STAGES * U * VPL * 2 * DEC_WARPS * 32 * 16;
    static constexpr int MERGE_BYTES = (DEC_WARPS * GH * D + 2 * DEC_WARPS * GH) * 4;
    static constexpr int SMEM = STAGE_BYTES > MERGE_BYTES ? STAGE_BYTES : MERGE_BYTES;
    static constexpr int MIN_BLOCKS = GH <= 4 && GH * VPL * N <= 32 ? 4 : 2;
};

/// 16 bytes of `p` through the read-only path.
template <typename T> __device__ __forceinline__ uint4 ldg16(const T* p) {
    return __ldg(reinterpret_cast<const uint4*>(p));
}

/// The N elements of a 16-byte vector widened to f32.
template <typename T> __device__ __forceinline__ void widen(const uint4& raw, float* out) {
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int k = 0; k < Vec16<T>::N; ++k) out[k] = to_f32(e[k]);
}

/// Scores of a tile for the GH heads of the chunk: this lane's slice of its U keys (`kr`)
/// dotted with q, summed over the TG lanes of a key, soft-capped, -inf where !ok[u]; `tmax`
/// gets the warp's max per head.
template <typename T, int GH, int U, int VPL, int TG>
__device__ __forceinline__ void decode_scores(const uint4 (&kr)[U][VPL], const float (&qf)[GH][VPL * Vec16<T>::N],
                                              const bool (&ok)[U], float softcap, float (&s)[U][GH],
                                              float (&tmax)[GH]) {
    constexpr int N = Vec16<T>::N, E = VPL * N;
#pragma unroll
    for (int u = 0; u < U; ++u) {
        float kf[E];
#pragma unroll
        for (int v = 0; v < VPL; ++v) widen<T>(kr[u][v], &kf[v * N]);
#pragma unroll
        for (int g = 0; g < GH; ++g) {
            float a = 0.0f;
#pragma unroll
            for (int e = 0; e < E; ++e) a = fmaf(qf[g][e], kf[e], a);
            s[u][g] = a;
        }
    }
#pragma unroll
    for (int off = TG / 2; off > 0; off >>= 1)
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
            for (int g = 0; g < GH; ++g) s[u][g] += __shfl_xor_sync(0xffffffffu, s[u][g], off);

#pragma unroll
    for (int g = 0; g < GH; ++g) tmax[g] = TESSERA_NEG_INF;
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
        for (int g = 0; g < GH; ++g) {
            float x = s[u][g];
            if (softcap > 0.0f) x = tanhf(x / softcap) * softcap;
            x = ok[u] ? x : TESSERA_NEG_INF;
            s[u][g] = x;
            tmax[g] = fmaxf(tmax[g], x);
        }
#pragma unroll
    for (int off = TG; off < 32; off <<= 1)
#pragma unroll
        for (int g = 0; g < GH; ++g) tmax[g] = fmaxf(tmax[g], __shfl_xor_sync(0xffffffffu, tmax[g], off));
}

/// Moves the running (max m, sum l, acc) of every head to the new max `m_new` (its finite
/// stand-in `mu`, 0 while nothing was seen, is what the tile's exponents subtract).
template <int GH, int E>
__device__ __forceinline__ void decode_rescale(const float (&m_new)[GH], float (&m)[GH], float (&mu)[GH],
                                               float (&l)[GH], float (&acc)[GH][E]) {
#pragma unroll
    for (int g = 0; g < GH; ++g) {
        mu[g] = m_new[g] == TESSERA_NEG_INF ? 0.0f : m_new[g];
        const float corr = expf(m[g] - mu[g]);
        l[g] *= corr;
#pragma unroll
        for (int e = 0; e < E; ++e) acc[g][e] *= corr;
        m[g] = m_new[g];
    }
}

/// acc += exp(s - mu) * v and l += exp(s - mu) over this lane's U keys (`vr`).
template <typename T, int GH, int U, int VPL>
__device__ __forceinline__ void decode_accumulate(const uint4 (&vr)[U][VPL], const float (&s)[U][GH],
                                                  const float (&mu)[GH], float (&l)[GH],
                                                  float (&acc)[GH][VPL * Vec16<T>::N]) {
    constexpr int N = Vec16<T>::N, E = VPL * N;
#pragma unroll
    for (int u = 0; u < U; ++u) {
        float vf[E];
#pragma unroll
        for (int v = 0; v < VPL; ++v) widen<T>(vr[u][v], &vf[v * N]);
#pragma unroll
        for (int g = 0; g < GH; ++g) {
            const float p = expf(s[u][g] - mu[g]);
            l[g] += p;
#pragma unroll
            for (int e = 0; e < E; ++e) acc[g][e] = fmaf(p, vf[e], acc[g][e]);
        }
    }
}

/// Adds up l and acc over the KPI key groups of a warp (every lane gets the sums).
template <int GH, int E, int TG>
__device__ __forceinline__ void decode_warp_sum(float (&l)[GH], float (&acc)[GH][E]) {
#pragma unroll
    for (int off = TG; off < 32; off <<= 1)
#pragma unroll
        for (int g = 0; g < GH; ++g) {
            l[g] += __shfl_xor_sync(0xffffffffu, l[g], off);
#pragma unroll
            for (int e = 0; e < E; ++e) acc[g][e] += __shfl_xor_sync(0xffffffffu, acc[g][e], off);
        }
}

/// One output element: out (one split) or the split's partials (A unnormalised, max M, sum L).
template <typename T>
__device__ __forceinline__ void decode_write(T* __restrict__ out, float* __restrict__ part_acc,
                                             float* __restrict__ part_ml, u32 token, u32 head, u32 d, u32 D,
                                             u32 i, u32 split, u32 num_decode, u32 num_heads, u32 num_splits,
                                             float A, float L, float M) {
    if (num_splits == 1) {
        out[((u64)token * num_heads + head) * D + d] = from_f32<T>(L > 0.0f ? A / L : 0.0f);
    } else {
        const u64 o = ((u64)split * num_decode + i) * num_heads + head;
        part_acc[o * D + d] = A;
        if (d == 0) {
            part_ml[o * 2] = M;
            part_ml[o * 2 + 1] = L;
        }
    }
}

template <typename T, int D, int GH, bool PIPE, bool CL = false>
__device__ __forceinline__ void paged_attention_decode_impl(
    const T* __restrict__ q, const T* __restrict__ k_cache, const T* __restrict__ v_cache, T* __restrict__ out,
    float* __restrict__ part_acc, float* __restrict__ part_ml, const u32* __restrict__ qsl,
    const u32* __restrict__ seq_lens, const u32* __restrict__ block_tables, const u32* __restrict__ seq_order,
    u32 num_decode, u32 num_seqs, u32 num_tokens, u32 max_blocks, u32 block_size, u32 num_blocks,
    u32 num_heads, u32 num_kv_heads, float scale, float softcap, u32 window, u32 num_splits, u32 split_len,
    u32 max_seq_len, u32 early_kv, u32* err) {
    using S = DecodeShape<T, D, GH, PIPE>;
    constexpr int N = S::N, TG = S::TG, VPL = S::VPL, KPI = S::KPI, U = S::U, KPW = S::KPW, KPB = S::KPB;
    constexpr int E = VPL * N;  // elements of a row per lane

    const u32 G = num_heads / num_kv_heads;
    const u32 chunks = (G + GH - 1) / GH;
    const u32 kvh = blockIdx.y / chunks, g0 = (blockIdx.y % chunks) * GH;
    const u32 i = blockIdx.x / num_splits, split = blockIdx.x % num_splits;
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const u32 t = lane % TG, grp = lane / TG;
    const bool reporter = threadIdx.x == 0 && split == 0 && blockIdx.y == 0;
    // Before pdl_wait (common.cuh): the step's metadata and the first block-table entries;
    // q and the caches (written by write_kv) after it.
    if (i >= num_decode) {
        pdl_wait_trigger();
        return;
    }
    const u32 b = seq_order[i];
    if (b >= num_seqs) {
        if (reporter) report_error(err, ERR_ATTN_METADATA, b, num_seqs);
        pdl_wait_trigger();
        return;
    }
    const u32 token = qsl[b], seq_len = seq_lens[b];
    if (qsl[b + 1] != token + 1 || token >= num_tokens || seq_len == 0 || seq_len > max_seq_len ||
        (u64)seq_len > (u64)max_blocks * block_size) {
        if (reporter) report_error(err, ERR_ATTN_METADATA, b, seq_len);
        pdl_wait_trigger();
        return;
    }
    u32 lo = (window != 0 && seq_len > window) ? seq_len - window : 0;
    u32 hi = seq_len;
    if (num_splits > 1) {
        lo = max(lo, split * split_len);
        hi = min(hi, split * split_len + split_len);
    }
    const u32* table = block_tables + (u64)b * max_blocks;
    const u64 kv_width = (u64)num_kv_heads * D;
    const u32 col = kvh * D + t * N;
    // This lane's keys j of the tile at `base` with from <= j < to into kr / vr (ok[u] set);
    // the others are left as they are.
    auto load_keys = [&](u32 base, u32 from, u32 to, uint4(&kr)[U][VPL], uint4(&vr)[U][VPL], bool(&ok)[U]) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const u32 j = base + warp * KPW + u * KPI + grp;
            if (j >= from && j < to) {
                const u32 blk = table[j / block_size];
                if (blk < num_blocks) {
                    const u64 row = (u64)blk * block_size + j % block_size;
                    ok[u] = true;
#pragma unroll
                    for (int v = 0; v < VPL; ++v) {
                        const u64 at = row * kv_width + col + v * TG * N;
                        kr[u][v] = ldg16(k_cache + at);
                        vr[u][v] = ldg16(v_cache + at);
                    }
                } else {
                    report_error(err, ERR_ATTN_BLOCK_ID, blk, b);
                }
            }
        }
    };
    auto clear_keys = [&](uint4(&kr)[U][VPL], uint4(&vr)[U][VPL], bool(&ok)[U]) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            ok[u] = false;
#pragma unroll
            for (int v = 0; v < VPL; ++v) kr[u][v] = vr[u][v] = make_uint4(0u, 0u, 0u, 0u);
        }
    };
    // Early K/V (`early_kv`, registers variant): every key before the newest (seq_len - 1,
    // this step's, which the kernel before writes) was written by an earlier step, so the
    // first tile's are loaded before pdl_wait and arrive while the q/k/v kernel finishes.
    const u32 stable = early_kv && !PIPE ? min(hi, seq_len - 1) : lo;
    uint4 kr0[U][VPL], vr0[U][VPL];
    bool ok0[U];
    clear_keys(kr0, vr0, ok0);
    if constexpr (!PIPE) {
        if (lo < stable) load_keys(lo, lo, stable, kr0, vr0, ok0);
    }
    if (lo < hi && stable <= lo) {
        // The block-table line(s) of this lane's first keys into L1 while write_kv finishes.
        const u32 j = lo + (threadIdx.x * KPB / blockDim.x);
        if (j < hi) asm volatile("prefetch.L1 [%0];" ::"l"(table + j / block_size));
    }
    pdl_wait_trigger();
    // A cluster's empty split still takes part in the merge (its key loop runs no tile: -inf, 0).
    if (!CL && lo >= hi) {
        // An empty split (trailing splits of a power-of-two count, or before a sliding
        // window): (max, sum) = (-inf, 0), so the combine skips it (no zero fill on the host).
        if (num_splits > 1 && threadIdx.x < GH && g0 + threadIdx.x < G) {
            const u64 o = ((u64)split * num_decode + i) * num_heads + kvh * G + g0 + threadIdx.x;
            part_ml[o * 2] = TESSERA_NEG_INF;
            part_ml[o * 2 + 1] = 0.0f;
        }
        return;
    }

    // This lane's slice of every row: vectors t + TG * v, v < VPL.
    float qf[GH][E];
#pragma unroll
    for (int g = 0; g < GH; ++g) {
        const bool real = g0 + g < G;
        const T* qrow = q + ((u64)token * num_heads + kvh * G + g0 + g) * D;
#pragma unroll
        for (int v = 0; v < VPL; ++v) {
            if (real) {
                widen<T>(ldg16(qrow + (t + v * TG) * N), &qf[g][v * N]);
#pragma unroll
                for (int k = 0; k < N; ++k) qf[g][v * N + k] *= scale;
            } else {
#pragma unroll
                for (int k = 0; k < N; ++k) qf[g][v * N + k] = 0.0f;
            }
        }
    }

    float m[GH], l[GH], acc[GH][E];
#pragma unroll
    for (int g = 0; g < GH; ++g) {
        m[g] = TESSERA_NEG_INF;
        l[g] = 0.0f;
#pragma unroll
        for (int e = 0; e < E; ++e) acc[g][e] = 0.0f;
    }

    if constexpr (!PIPE) {
        __shared__ float s_max[2][DEC_WARPS][GH];
        __shared__ __align__(16) float s_acc[DEC_WARPS][GH][D];
        __shared__ float s_l[DEC_WARPS][GH];
        __shared__ float s_m[GH];
        u32 buf = 0;
        // One tile's math on its loaded K / V (`ok`: the live keys).
        auto tile = [&](const uint4(&kr)[U][VPL], const uint4(&vr)[U][VPL], const bool(&ok)[U]) {
            float s[U][GH], tmax[GH];
            decode_scores<T, GH, U, VPL, TG>(kr, qf, ok, softcap, s, tmax);
            if (lane == 0)
#pragma unroll
                for (int g = 0; g < GH; ++g) s_max[buf][warp][g] = tmax[g];
            // The only barrier of a tile: s_max alternates between two buffers, so a warp that
            // runs ahead writes the other one.
            __syncthreads();

            float m_new[GH], mu[GH];
#pragma unroll
            for (int g = 0; g < GH; ++g) {
                float mt = s_max[buf][0][g];
#pragma unroll
                for (int w = 1; w < DEC_WARPS; ++w) mt = fmaxf(mt, s_max[buf][w][g]);
                m_new[g] = fmaxf(m[g], mt);
            }
            decode_rescale<GH, E>(m_new, m, mu, l, acc);
            decode_accumulate<T, GH, U, VPL>(vr, s, mu, l, acc);
            buf ^= 1;
        };
        if (lo < hi) {
            // The first tile: the keys not loaded before pdl_wait (all of them without early_kv).
            load_keys(lo, stable, hi, kr0, vr0, ok0);
            tile(kr0, vr0, ok0);
        }
        for (u32 base = lo + KPB; base < hi; base += KPB) {
            uint4 kr[U][VPL], vr[U][VPL];
            bool ok[U];
            clear_keys(kr, vr, ok);
            load_keys(base, base, hi, kr, vr, ok);
            tile(kr, vr, ok);
        }

        // Add up the key groups of the warp, then the warps (all share the block's max m).
        decode_warp_sum<GH, E, TG>(l, acc);
        if (grp == 0) {
#pragma unroll
            for (int g = 0; g < GH; ++g) {
#pragma unroll
                for (int v = 0; v < VPL; ++v)
#pragma unroll
                    for (int k = 0; k < N; k += 4)
                        *reinterpret_cast<float4*>(&s_acc[warp][g][(t + v * TG) * N + k]) = make_float4(
                            acc[g][v * N + k], acc[g][v * N + k + 1], acc[g][v * N + k + 2], acc[g][v * N + k + 3]);
                if (t == 0) s_l[warp][g] = l[g];
            }
        }
        if (threadIdx.x == 0)
#pragma unroll
            for (int g = 0; g < GH; ++g) s_m[g] = m[g];
        __syncthreads();
        __shared__ float s_lf[GH];
        for (u32 idx = threadIdx.x; idx < GH * D; idx += blockDim.x) {
            const u32 g = idx / D, d = idx % D;
            if (g0 + g >= G) break;
            float A = 0.0f, L = 0.0f;
#pragma unroll
            for (int w = 0; w < DEC_WARPS; ++w) {
                A += s_acc[w][g][d];
                L += s_l[w][g];
            }
            if constexpr (CL) {
                // This split's partial stays in shared memory (each (g, d) read above by this
                // thread alone), for the cluster's merge below.
                s_acc[0][g][d] = A;
                if (d == 0) s_lf[g] = L;
            } else {
                decode_write<T>(out, part_acc, part_ml, token, kvh * G + g0 + g, d, D, i, split, num_decode, num_heads,
                                num_splits, A, L, s_m[g]);
            }
        }
        if constexpr (CL) {
            // The cluster = the num_splits blocks of this (sequence, head chunk), rank = split:
            // block r merges elements r, r + cs * blockDim, ... of the GH x D output from every
            // split's shared memory, in attention_decode_combine's order (the same bits).
            cluster_sync();
            const u32 cs = cluster_size();
            for (u32 idx = cluster_rank() * blockDim.x + threadIdx.x; idx < GH * D; idx += cs * blockDim.x) {
                const u32 g = idx / D, d = idx % D;
                if (g0 + g >= G) break;
                // Every split's (sum, max, acc) first: the remote loads in flight together,
                // one round trip instead of one (or two) a split; then the same merge.
                float lf[DEC_MAX_CLUSTER], mf[DEC_MAX_CLUSTER], af[DEC_MAX_CLUSTER];
#pragma unroll
                for (u32 r = 0; r < DEC_MAX_CLUSTER; ++r) {
                    lf[r] = 0.0f;
                    mf[r] = TESSERA_NEG_INF;
                    af[r] = 0.0f;
                    if (r < cs) {
                        lf[r] = ld_cluster(&s_lf[g], r);
                        mf[r] = ld_cluster(&s_m[g], r);
                        af[r] = ld_cluster(&s_acc[0][g][d], r);
                    }
                }
                float M = TESSERA_NEG_INF;
#pragma unroll
                for (u32 r = 0; r < DEC_MAX_CLUSTER; ++r)
                    if (lf[r] > 0.0f) M = fmaxf(M, mf[r]);
                float L = 0.0f, A = 0.0f;
#pragma unroll
                for (u32 r = 0; r < DEC_MAX_CLUSTER; ++r) {
                    if (lf[r] > 0.0f) {
                        const float e = expf(mf[r] - M);
                        L += lf[r] * e;
                        A += af[r] * e;
                    }
                }
                out[((u64)token * num_heads + kvh * G + g0 + g) * D + d] = from_f32<T>(L > 0.0f ? A / L : 0.0f);
            }
            // No block leaves while another may still read its shared memory.
            cluster_sync();
        }
    } else {
        // Lane-private slots of (stage, key u, vector v, K = 0 | V = 1): cp.async writes and
        // reads back only this thread's, so no barrier guards them.
        extern __shared__ __align__(16) uint4 dec_smem[];
        auto slot = [&](u32 st, int u, int v, int kv) {
            return dec_smem + (((st * U + u) * VPL + v) * 2 + kv) * (DEC_WARPS * 32) + threadIdx.x;
        };
        const u32 tiles = (hi - lo + KPB - 1) / KPB;
        auto issue = [&](u32 tile) {
            const u32 st = tile % S::STAGES, base = lo + tile * KPB;
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const u32 j = base + warp * KPW + u * KPI + grp;
                bool ok = j < hi;
                u64 row = 0;
                if (ok) {
                    const u32 blk = table[j / block_size];
                    if (blk < num_blocks) {
                        row = (u64)blk * block_size + j % block_size;
                    } else {
                        report_error(err, ERR_ATTN_BLOCK_ID, blk, b);
                        ok = false;
                    }
                }
#pragma unroll
                for (int v = 0; v < VPL; ++v) {
                    const u64 at = ok ? row * kv_width + col + v * TG * N : 0;
                    cp_async16(slot(st, u, v, 0), k_cache + at, ok);
                    cp_async16(slot(st, u, v, 1), v_cache + at, ok);
                }
            }
        };
#pragma unroll
        for (int p = 0; p < S::STAGES - 1; ++p) {
            if (p < tiles) issue(p);
            cp_async_commit();
        }
        for (u32 it = 0; it < tiles; ++it) {
            // Refill the stage computed last iteration, then wait for this tile's (one group a
            // tile, empty past the end, so the count of groups still pending is fixed).
            if (it + S::STAGES - 1 < tiles) issue(it + S::STAGES - 1);
            cp_async_commit();
            cp_async_wait<S::STAGES - 1>();
            const u32 st = it % S::STAGES, base = lo + it * KPB;
            uint4 kr[U][VPL];
            bool ok[U];
#pragma unroll
            for (int u = 0; u < U; ++u) {
                ok[u] = base + warp * KPW + u * KPI + grp < hi;
#pragma unroll
                for (int v = 0; v < VPL; ++v) kr[u][v] = *slot(st, u, v, 0);
            }
            float s[U][GH], tmax[GH];
            decode_scores<T, GH, U, VPL, TG>(kr, qf, ok, softcap, s, tmax);
            // The warp's own running max: no barrier; the warps are merged at the end.
            float m_new[GH], mu[GH];
#pragma unroll
            for (int g = 0; g < GH; ++g) m_new[g] = fmaxf(m[g], tmax[g]);
            decode_rescale<GH, E>(m_new, m, mu, l, acc);
            uint4 vr[U][VPL];
#pragma unroll
            for (int u = 0; u < U; ++u)
#pragma unroll
                for (int v = 0; v < VPL; ++v) vr[u][v] = *slot(st, u, v, 1);
            decode_accumulate<T, GH, U, VPL>(vr, s, mu, l, acc);
        }
        cp_async_wait<0>();

        // Every warp done with its stages (the barrier): they become the merge area.
        decode_warp_sum<GH, E, TG>(l, acc);
        __syncthreads();
        float* s_acc = reinterpret_cast<float*>(dec_smem);  // [DEC_WARPS][GH][D]
        float* s_l = s_acc + DEC_WARPS * GH * D;              // [DEC_WARPS][GH]
        float* s_m = s_l + DEC_WARPS * GH;                    // [DEC_WARPS][GH]
        if (grp == 0) {
#pragma unroll
            for (int g = 0; g < GH; ++g) {
#pragma unroll
                for (int v = 0; v < VPL; ++v)
#pragma unroll
                    for (int k = 0; k < N; k += 4)
                        *reinterpret_cast<float4*>(&s_acc[(warp * GH + g) * D + (t + v * TG) * N + k]) = make_float4(
                            acc[g][v * N + k], acc[g][v * N + k + 1], acc[g][v * N + k + 2], acc[g][v * N + k + 3]);
                if (t == 0) {
                    s_l[warp * GH + g] = l[g];
                    s_m[warp * GH + g] = m[g];
                }
            }
        }
        __syncthreads();
        for (u32 idx = threadIdx.x; idx < GH * D; idx += blockDim.x) {
            const u32 g = idx / D, d = idx % D;
            if (g0 + g >= G) break;
            // A warp that saw no key has l = 0 (and m = -inf): it weighs nothing.
            float M = TESSERA_NEG_INF;
#pragma unroll
            for (int w = 0; w < DEC_WARPS; ++w)
                if (s_l[w * GH + g] > 0.0f) M = fmaxf(M, s_m[w * GH + g]);
            float A = 0.0f, L = 0.0f;
#pragma unroll
            for (int w = 0; w < DEC_WARPS; ++w) {
                const float lw = s_l[w * GH + g];
                if (lw > 0.0f) {
                    const float e = expf(s_m[w * GH + g] - M);
                    A += s_acc[(w * GH + g) * D + d] * e;
                    L += lw * e;
                }
            }
            decode_write<T>(out, part_acc, part_ml, token, kvh * G + g0 + g, d, D, i, split, num_decode, num_heads,
                            num_splits, A, L, M);
        }
    }
}

/// Merges the split partials of one (decode sequence, head) row per block.
template <typename T>
__device__ __forceinline__ void attention_decode_combine_impl(const float* __restrict__ part_acc,
                                                              const float* __restrict__ part_ml, T* __restrict__ out,
                                                              const u32* __restrict__ qsl,
                                                              const u32* __restrict__ seq_order, u32 num_decode,
                                                              u32 num_seqs, u32 num_tokens, u32 num_heads, u32 D,
                                                              u32 num_splits) {
    const u32 i = blockIdx.x, head = blockIdx.y;
    const u32 b = seq_order[i];
    const u32 token = b < num_seqs ? qsl[b] : num_tokens;
    pdl_wait_trigger();  // the partials (the kernel before) after the metadata
    if (b >= num_seqs || token >= num_tokens) return;
    float M = TESSERA_NEG_INF;
    for (u32 s = 0; s < num_splits; ++s) {
        const float* ml = part_ml + (((u64)s * num_decode + i) * num_heads + head) * 2;
        if (ml[1] > 0.0f) M = fmaxf(M, ml[0]);
    }
    for (u32 d = threadIdx.x; d < D; d += blockDim.x) {
        float L = 0.0f, A = 0.0f;
        for (u32 s = 0; s < num_splits; ++s) {
            const u64 o = ((u64)s * num_decode + i) * num_heads + head;
            const float lw = part_ml[o * 2 + 1];
            if (lw > 0.0f) {
                const float e = expf(part_ml[o * 2] - M);
                L += lw * e;
                A += part_acc[o * D + d] * e;
            }
        }
        out[((u64)token * num_heads + head) * D + d] = from_f32<T>(L > 0.0f ? A / L : 0.0f);
    }
}

#define DECODE_PARAMS(T)                                                                               \
    const T *q, const T *k_cache, const T *v_cache, T *out, float *part_acc, float *part_ml, const u32 *qsl, \
        const u32 *seq_lens, const u32 *block_tables, const u32 *seq_order, u32 num_decode, u32 num_seqs,  \
        u32 num_tokens, u32 max_blocks, u32 block_size, u32 num_blocks, u32 num_heads, u32 num_kv_heads,   \
        float scale, float softcap, u32 window, u32 num_splits, u32 split_len, u32 max_seq_len, u32 early_kv, u32 *err
#define DECODE_ARGS                                                                                    \
    q, k_cache, v_cache, out, part_acc, part_ml, qsl, seq_lens, block_tables, seq_order, num_decode,   \
        num_seqs, num_tokens, max_blocks, block_size, num_blocks, num_heads, num_kv_heads, scale,      \
        softcap, window, num_splits, split_len, max_seq_len, early_kv, err

// The registers variant and the pipelined one (dynamic shared memory DecodeShape::SMEM).
#define PAGED_ATTENTION_DECODE(S, T, D, GH)                                                           \
    extern "C" __global__ void __launch_bounds__(DEC_WARPS * 32)                                      \
        paged_attention_decode_##S##_d##D##_g##GH(DECODE_PARAMS(T)) {                                 \
        paged_attention_decode_impl<T, D, GH, false>(DECODE_ARGS);                                    \
    }                                                                                                 \
    extern "C" __global__ void __launch_bounds__(DEC_WARPS * 32, (DecodeShape<T, D, GH, true>::MIN_BLOCKS)) \
        paged_attention_decode_pipelined_##S##_d##D##_g##GH(DECODE_PARAMS(T)) {                       \
        paged_attention_decode_impl<T, D, GH, true>(DECODE_ARGS);                                     \
    }                                                                                                 \
    extern "C" __global__ void __launch_bounds__(DEC_WARPS * 32)                                      \
        paged_attention_decode_cluster_##S##_d##D##_g##GH(DECODE_PARAMS(T)) {                         \
        paged_attention_decode_impl<T, D, GH, false, true>(DECODE_ARGS);                              \
    }

#define DECODE_HEADS(S, T, D)                                                                          \
    PAGED_ATTENTION_DECODE(S, T, D, 1)                                                                 \
    PAGED_ATTENTION_DECODE(S, T, D, 2)                                                                 \
    PAGED_ATTENTION_DECODE(S, T, D, 4)                                                                 \
    PAGED_ATTENTION_DECODE(S, T, D, 8)

#define ATTENTION_DECODE(S, T)                                                                         \
    DECODE_HEADS(S, T, 64)                                                                             \
    DECODE_HEADS(S, T, 128)                                                                            \
    DECODE_HEADS(S, T, 256)                                                                            \
    extern "C" __global__ void attention_decode_combine_##S(                                          \
        const float* part_acc, const float* part_ml, T* out, const u32* qsl, const u32* seq_order,    \
        u32 num_decode, u32 num_seqs, u32 num_tokens, u32 num_heads, u32 D, u32 num_splits) {         \
        attention_decode_combine_impl<T>(part_acc, part_ml, out, qsl, seq_order, num_decode,          \
                                         num_seqs, num_tokens, num_heads, D, num_splits);             \
    }
FOR_EACH_FLOAT(ATTENTION_DECODE)
