//! Paged attention for decode rows (one query token per sequence), flash-decoding style: a
//! block per (sequence, kv head, group of GH query heads, key split), K/V rows read once
//! straight from the cache with 16-byte loads (K and V of U keys in flight per lane), every
//! row serving all GH query heads of its group (GQA), online softmax in f32, and with
//! num_splits > 1 f32 partials merged by `attention_decode_combine`.
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

#define DEC_WARPS 4

/// Lane layout of one (dtype, head_dim, heads per block) variant; mirrored on the host by
/// `decode_keys_per_tile` in native/src/cuda/attention.rs.
template <typename T, int D, int GH> struct DecodeShape {
    static constexpr int N = Vec16<T>::N;
    static constexpr int VECS = D / N;
    static constexpr int TG = VECS < 32 ? VECS : 32;
    static constexpr int VPL = VECS / TG;
    static constexpr int KPI = 32 / TG;
    // Loads in flight per lane; fewer where q, acc and the loads would not fit 255 registers.
    static constexpr int U0 = ((GH > 4 || (GH == 4 && VECS >= 32)) ? 4 : 8) / VPL;
    static constexpr int U = U0 < 1 ? 1 : U0;
    static constexpr int KPW = KPI * U;
    static constexpr int KPB = DEC_WARPS * KPW;
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

template <typename T, int D, int GH>
__device__ __forceinline__ void paged_attention_decode_impl(
    const T* __restrict__ q, const T* __restrict__ k_cache, const T* __restrict__ v_cache, T* __restrict__ out,
    float* __restrict__ part_acc, float* __restrict__ part_ml, const u32* __restrict__ qsl,
    const u32* __restrict__ seq_lens, const u32* __restrict__ block_tables, const u32* __restrict__ seq_order,
    u32 num_decode, u32 num_seqs, u32 num_tokens, u32 max_blocks, u32 block_size, u32 num_blocks,
    u32 num_heads, u32 num_kv_heads, float scale, float softcap, u32 window, u32 num_splits, u32 split_len,
    u32 max_seq_len, u32* err) {
    using S = DecodeShape<T, D, GH>;
    constexpr int N = S::N, TG = S::TG, VPL = S::VPL, KPI = S::KPI, U = S::U, KPW = S::KPW, KPB = S::KPB;
    constexpr int E = VPL * N;  // elements of a row per lane
    __shared__ float s_max[2][DEC_WARPS][GH];
    __shared__ __align__(16) float s_acc[DEC_WARPS][GH][D];
    __shared__ float s_l[DEC_WARPS][GH];
    __shared__ float s_m[GH];

    const u32 G = num_heads / num_kv_heads;
    const u32 chunks = (G + GH - 1) / GH;
    const u32 kvh = blockIdx.y / chunks, g0 = (blockIdx.y % chunks) * GH;
    const u32 i = blockIdx.x / num_splits, split = blockIdx.x % num_splits;
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const u32 t = lane % TG, grp = lane / TG;
    const bool reporter = threadIdx.x == 0 && split == 0 && blockIdx.y == 0;
    if (i >= num_decode) return;
    const u32 b = seq_order[i];
    if (b >= num_seqs) {
        if (reporter) report_error(err, ERR_ATTN_METADATA, b, num_seqs);
        return;
    }
    const u32 token = qsl[b], seq_len = seq_lens[b];
    if (qsl[b + 1] != token + 1 || token >= num_tokens || seq_len == 0 || seq_len > max_seq_len ||
        (u64)seq_len > (u64)max_blocks * block_size) {
        if (reporter) report_error(err, ERR_ATTN_METADATA, b, seq_len);
        return;
    }
    u32 lo = (window != 0 && seq_len > window) ? seq_len - window : 0;
    u32 hi = seq_len;
    if (num_splits > 1) {
        lo = max(lo, split * split_len);
        hi = min(hi, split * split_len + split_len);
    }
    if (lo >= hi) return;  // an empty split: its (max, sum) stay as the host zeroed them

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

    const u32* table = block_tables + (u64)b * max_blocks;
    const u64 kv_width = (u64)num_kv_heads * D;
    const u32 col = kvh * D + t * N;
    u32 buf = 0;
    for (u32 base = lo; base < hi; base += KPB) {
        uint4 kr[U][VPL], vr[U][VPL];
        bool ok[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const u32 j = base + warp * KPW + u * KPI + grp;
            ok[u] = j < hi;
            u64 row = 0;
            if (ok[u]) {
                const u32 blk = table[j / block_size];
                if (blk < num_blocks) {
                    row = (u64)blk * block_size + j % block_size;
                } else {
                    report_error(err, ERR_ATTN_BLOCK_ID, blk, b);
                    ok[u] = false;
                }
            }
#pragma unroll
            for (int v = 0; v < VPL; ++v) {
                const u64 at = row * kv_width + col + v * TG * N;
                kr[u][v] = ok[u] ? ldg16(k_cache + at) : make_uint4(0u, 0u, 0u, 0u);
                vr[u][v] = ok[u] ? ldg16(v_cache + at) : make_uint4(0u, 0u, 0u, 0u);
            }
        }

        // Scores of this lane's keys for every head of the chunk, summed over the TG lanes.
        float s[U][GH];
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

        float tmax[GH];
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
        if (lane == 0)
#pragma unroll
            for (int g = 0; g < GH; ++g) s_max[buf][warp][g] = tmax[g];
        // The only barrier of a tile: s_max alternates between two buffers, so a warp that
        // runs ahead writes the other one.
        __syncthreads();

        float mu[GH];
#pragma unroll
        for (int g = 0; g < GH; ++g) {
            float mt = s_max[buf][0][g];
#pragma unroll
            for (int w = 1; w < DEC_WARPS; ++w) mt = fmaxf(mt, s_max[buf][w][g]);
            const float m_new = fmaxf(m[g], mt);
            mu[g] = m_new == TESSERA_NEG_INF ? 0.0f : m_new;
            const float corr = expf(m[g] - mu[g]);
            l[g] *= corr;
#pragma unroll
            for (int e = 0; e < E; ++e) acc[g][e] *= corr;
            m[g] = m_new;
        }
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
        buf ^= 1;
    }

    // Add up the key groups of the warp, then the warps (all share the block's max m).
#pragma unroll
    for (int off = TG; off < 32; off <<= 1)
#pragma unroll
        for (int g = 0; g < GH; ++g) {
            l[g] += __shfl_xor_sync(0xffffffffu, l[g], off);
#pragma unroll
            for (int e = 0; e < E; ++e) acc[g][e] += __shfl_xor_sync(0xffffffffu, acc[g][e], off);
        }
    if (grp == 0) {
#pragma unroll
        for (int g = 0; g < GH; ++g) {
#pragma unroll
            for (int v = 0; v < VPL; ++v)
#pragma unroll
                for (int k = 0; k < N; k += 4)
                    *reinterpret_cast<float4*>(&s_acc[warp][g][(t + v * TG) * N + k]) =
                        make_float4(acc[g][v * N + k], acc[g][v * N + k + 1], acc[g][v * N + k + 2], acc[g][v * N + k + 3]);
            if (t == 0) s_l[warp][g] = l[g];
        }
    }
    if (threadIdx.x == 0)
#pragma unroll
        for (int g = 0; g < GH; ++g) s_m[g] = m[g];
    __syncthreads();
    for (u32 idx = threadIdx.x; idx < GH * D; idx += blockDim.x) {
        const u32 g = idx / D, d = idx % D;
        if (g0 + g >= G) break;
        float A = 0.0f, L = 0.0f;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; ++w) {
            A += s_acc[w][g][d];
            L += s_l[w][g];
        }
        const u64 head = kvh * G + g0 + g;
        if (num_splits == 1) {
            out[((u64)token * num_heads + head) * D + d] = from_f32<T>(L > 0.0f ? A / L : 0.0f);
        } else {
            const u64 o = ((u64)split * num_decode + i) * num_heads + head;
            part_acc[o * D + d] = A;
            if (d == 0) {
                part_ml[o * 2] = s_m[g];
                part_ml[o * 2 + 1] = L;
            }
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
    if (b >= num_seqs) return;
    const u32 token = qsl[b];
    if (token >= num_tokens) return;
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

#define PAGED_ATTENTION_DECODE(S, T, D, GH)                                                           \
    extern "C" __global__ void __launch_bounds__(DEC_WARPS * 32) paged_attention_decode_##S##_d##D##_g##GH( \
        const T* q, const T* k_cache, const T* v_cache, T* out, float* part_acc, float* part_ml,       \
        const u32* qsl, const u32* seq_lens, const u32* block_tables, const u32* seq_order,          \
        u32 num_decode, u32 num_seqs, u32 num_tokens, u32 max_blocks, u32 block_size,                 \
        u32 num_blocks, u32 num_heads, u32 num_kv_heads, float scale, float softcap, u32 window,      \
        u32 num_splits, u32 split_len, u32 max_seq_len, u32* err) {                                   \
        paged_attention_decode_impl<T, D, GH>(q, k_cache, v_cache, out, part_acc, part_ml, qsl,       \
                                              seq_lens, block_tables, seq_order, num_decode,          \
                                              num_seqs, num_tokens, max_blocks, block_size,           \
                                              num_blocks, num_heads, num_kv_heads, scale, softcap,    \
                                              window, num_splits, split_len, max_seq_len, err);       \
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
