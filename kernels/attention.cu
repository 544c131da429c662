//! Paged attention over varlen queries (prefill and mixed batches; decode rows too where the
//! decode kernel of attention_decode.cu does not take the head_dim), FlashAttention-style:
//! K/V tiles staged in shared memory, online softmax in f32, and an optional split of the key
//! range (split-K) merged by a combine kernel.
//!
//! ```text
//! grid  x = count * num_splits        (seq b = seq_order[first + x / num_splits],
//!                                      split = x % num_splits)
//!       y = num_kv_heads              (kv head h_kv; its G = num_heads / num_kv_heads q heads)
//!       z = row tiles                 (ATT_ROWS consecutive rows of seq b's q_len * G rows)
//! row r of a tile  = (token tq, head g) with tq * G + g = z * ATT_ROWS + r
//!                    position p = seq_len - q_len + tq, sees keys j: p - W < j <= p
//! block = ATT_WARPS warps; warp w takes the 32-key tiles w, w + ATT_WARPS, ... of the
//!         block's key range and keeps its own (max, sum, acc) per row; the warps merge at
//!         the end. Every K/V row loaded serves all ATT_ROWS rows (GQA heads and tokens).
//! key j of seq b lives at slot block_tables[b][j / block_size] * block_size + j % block_size
//! ```
//! Lanes own key `lane` of a tile for the scores (16-byte loads of its K row from shared
//! memory) and dims `lane + 32 i` (i < DPL) for the output, so head_dim <= 32 * DPL.
//! With num_splits > 1 the blocks write unnormalised partials (acc, max, sum) per split and
//! `attention_combine` merges them. Output rows of no launched sequence stay as they were (the
//! host zeroed them; the decode kernel writes its own). Bad metadata or block ids are
//! recorded in the error word.

#define ATT_ROWS 8
#define ATT_WARPS 4
#define ATT_KEYS 32

/// Loads the padded K or V rows of keys base .. base + 32 (zeros past `hi`) into `tile`.
template <typename T>
__device__ __forceinline__ void load_kv_tile(const T* __restrict__ cache, T* tile, u32 base, u32 hi,
                                             const u32* __restrict__ table, u32 block_size, u32 num_blocks,
                                             u32 kv_width, u32 kv_off, u32 D, u32 DP, u32 row_stride,
                                             u32 vec_ok, u32 lane, u32* err, u32 seq) {
    constexpr int N = Vec16<T>::N;
    const u32 cpr = DP / N;
    // Unrolled so several (block-table, K/V row) load pairs are in flight per lane.
#pragma unroll 4
    for (u32 c = lane; c < ATT_KEYS * cpr; c += 32) {
        const u32 n = c / cpr, d0 = (c % cpr) * N;
        const u32 j = base + n;
        uint4 raw = make_uint4(0u, 0u, 0u, 0u);
        if (j < hi) {
            const u32 blk = table[j / block_size];
            if (blk < num_blocks) {
                const T* src = cache + ((u64)blk * block_size + j % block_size) * kv_width + kv_off + d0;
                if (vec_ok) {
                    raw = *reinterpret_cast<const uint4*>(src);
                } else {
                    T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
                    for (int k = 0; k < N; ++k)
                        if (d0 + k < D) e[k] = src[k];
                }
            } else {
                report_error(err, ERR_ATTN_BLOCK_ID, blk, seq);
            }
        }
        *reinterpret_cast<uint4*>(tile + n * row_stride + d0) = raw;
    }
}

template <typename T, int DPL>
__device__ __forceinline__ void paged_attention_impl(
    const T* __restrict__ q, const T* __restrict__ k_cache, const T* __restrict__ v_cache, T* __restrict__ out,
    float* __restrict__ part_acc, float* __restrict__ part_ml, const u32* __restrict__ qsl,
    const u32* __restrict__ seq_lens, const u32* __restrict__ block_tables, const u32* __restrict__ seq_order,
    u32 first, u32 num_seqs, u32 num_tokens, u32 max_blocks, u32 block_size, u32 num_blocks, u32 num_heads,
    u32 num_kv_heads, u32 D,
    float scale, float softcap, u32 window, u32 num_splits, u32 split_len, u32 max_query_len,
    u32 max_seq_len, u32 vec_ok, u32* err) {
    constexpr int N = Vec16<T>::N;
    // The score and P·V loops unrolled 4x where registers allow it without spilling
    // (16-bit types, head_dim <= 128); 1 = the compiler's choice elsewhere.
    constexpr int ATT_UNROLL = (sizeof(T) == 2 && DPL <= 4) ? 4 : 1;
    extern __shared__ float4 smem4[];
    float* smem = reinterpret_cast<float*>(smem4);

    const u32 G = num_heads / num_kv_heads;
    const u32 b = seq_order[first + blockIdx.x / num_splits], split = blockIdx.x % num_splits;
    const u32 kvh = blockIdx.y;
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (b >= num_seqs) {
        if (threadIdx.x == 0 && split == 0 && kvh == 0 && blockIdx.z == 0) report_error(err, ERR_ATTN_METADATA, b, num_seqs);
        return;
    }

    const u32 q_start = qsl[b], q_end = qsl[b + 1], seq_len = seq_lens[b];
    const bool bad = q_end < q_start || q_end > num_tokens || q_end - q_start > seq_len ||
                     q_end - q_start > max_query_len || seq_len > max_seq_len ||
                     (u64)seq_len > (u64)max_blocks * block_size;
    if (bad) {
        if (threadIdx.x == 0 && split == 0 && kvh == 0 && blockIdx.z == 0) report_error(err, ERR_ATTN_METADATA, b, seq_len);
        return;
    }
    const u32 q_len = q_end - q_start;
    const u32 row0 = blockIdx.z * ATT_ROWS;
    if (row0 >= q_len * G) return;
    const u32 active = min((u32)ATT_ROWS, q_len * G - row0);

    // Positions of the rows; the block's key range covers all of them (and this split).
    u32 pos[ATT_ROWS];
#pragma unroll
    for (int r = 0; r < ATT_ROWS; ++r) pos[r] = seq_len - q_len + (row0 + min((u32)r, active - 1)) / G;
    const u32 first_pos = pos[0], last_pos = pos[ATT_ROWS - 1];
    u32 lo = (window != 0 && first_pos + 1 > window) ? first_pos + 1 - window : 0;
    u32 hi = last_pos + 1;
    lo = max(lo, split * split_len);
    hi = min(hi, split * split_len + split_len);

    // Shared memory: q_s [ROWS][DP] f32 | tiles [WARPS][KEYS][DP + N] T | p_s [WARPS][ROWS][KEYS]
    // (the combine step reuses everything after q_s).
    const u32 DP = (D + N - 1) / N * N;
    const u32 row_stride = DP + N;
    float* q_s = smem;
    T* tiles = reinterpret_cast<T*>(smem + ATT_ROWS * DP);
    float* p_s = reinterpret_cast<float*>(tiles + ATT_WARPS * ATT_KEYS * row_stride);
    T* tile = tiles + warp * ATT_KEYS * row_stride;
    float* p_w = p_s + warp * ATT_ROWS * ATT_KEYS;

    for (u32 idx = threadIdx.x; idx < ATT_ROWS * DP; idx += blockDim.x) {
        const u32 r = idx / DP, d = idx % DP;
        float v = 0.0f;
        if (r < active && d < D) {
            const u32 row = row0 + r;
            const u64 token = q_start + row / G, head = kvh * G + row % G;
            v = to_f32(q[(token * num_heads + head) * D + d]);
        }
        q_s[idx] = v;
    }
    __syncthreads();

    float m[ATT_ROWS], l[ATT_ROWS], acc[ATT_ROWS][DPL];
#pragma unroll
    for (int r = 0; r < ATT_ROWS; ++r) {
        m[r] = TESSERA_NEG_INF;
        l[r] = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; ++i) acc[r][i] = 0.0f;
    }

    const u32* table = block_tables + (u64)b * max_blocks;
    const u32 kv_width = num_kv_heads * D, kv_off = kvh * D;
    for (u32 base = lo + warp * ATT_KEYS; base < hi; base += ATT_WARPS * ATT_KEYS) {
        load_kv_tile(k_cache, tile, base, hi, table, block_size, num_blocks, kv_width, kv_off, D, DP,
                     row_stride, vec_ok, lane, err, b);
        __syncwarp();

        // Scores of key j = base + lane for every row.
        float s[ATT_ROWS];
#pragma unroll
        for (int r = 0; r < ATT_ROWS; ++r) s[r] = 0.0f;
        const T* krow = tile + lane * row_stride;
#pragma unroll (ATT_UNROLL)
        for (u32 d0 = 0; d0 < DP; d0 += N) {
            float kv[N];
            load_vec(krow + d0, kv);
#pragma unroll
            for (int r = 0; r < ATT_ROWS; ++r) {
                if ((u32)r < active) {
                    const float4* q4 = reinterpret_cast<const float4*>(q_s + r * DP + d0);
#pragma unroll
                    for (int k4 = 0; k4 < N / 4; ++k4) {
                        const float4 qv = q4[k4];
                        s[r] += qv.x * kv[4 * k4] + qv.y * kv[4 * k4 + 1] + qv.z * kv[4 * k4 + 2] + qv.w * kv[4 * k4 + 3];
                    }
                }
            }
        }
        const u32 j = base + lane;
#pragma unroll
        for (int r = 0; r < ATT_ROWS; ++r) {
            float v = s[r] * scale;
            if (softcap > 0.0f) v = tanhf(v / softcap) * softcap;
            const bool ok = (u32)r < active && j < hi && j <= pos[r] && (window == 0 || j + window > pos[r]);
            s[r] = ok ? v : TESSERA_NEG_INF;
        }

        // Online softmax update per row.
#pragma unroll
        for (int r = 0; r < ATT_ROWS; ++r) {
            if ((u32)r < active) {
                const float m_new = fmaxf(m[r], warp_max(s[r]));
                const float m_use = m_new == TESSERA_NEG_INF ? 0.0f : m_new;
                const float p = expf(s[r] - m_use);
                const float corr = expf(m[r] - m_use);
                l[r] = l[r] * corr + warp_sum(p);
#pragma unroll
                for (int i = 0; i < DPL; ++i) acc[r][i] *= corr;
                m[r] = m_new;
                p_w[r * ATT_KEYS + lane] = p;
            }
        }
        __syncwarp();

        // acc += P · V over the tile.
        load_kv_tile(v_cache, tile, base, hi, table, block_size, num_blocks, kv_width, kv_off, D, DP,
                     row_stride, vec_ok, lane, err, b);
        __syncwarp();
#pragma unroll (ATT_UNROLL)
        for (u32 n = 0; n < ATT_KEYS; ++n) {
            const T* vrow = tile + n * row_stride;
            float vv[DPL];
#pragma unroll
            for (int i = 0; i < DPL; ++i) {
                const u32 d = lane + 32 * i;
                vv[i] = d < D ? to_f32(vrow[d]) : 0.0f;
            }
#pragma unroll
            for (int r = 0; r < ATT_ROWS; ++r) {
                if ((u32)r < active) {
                    const float p = p_w[r * ATT_KEYS + n];
#pragma unroll
                    for (int i = 0; i < DPL; ++i) acc[r][i] += p * vv[i];
                }
            }
        }
        __syncwarp();
    }

    // Merge the warps: c_acc [WARPS][ROWS][D], c_m, c_l [WARPS][ROWS] over the tile area.
    __syncthreads();
    float* c_acc = smem + ATT_ROWS * DP;
    float* c_m = c_acc + ATT_WARPS * ATT_ROWS * D;
    float* c_l = c_m + ATT_WARPS * ATT_ROWS;
#pragma unroll
    for (int r = 0; r < ATT_ROWS; ++r) {
        if ((u32)r < active) {
#pragma unroll
            for (int i = 0; i < DPL; ++i) {
                const u32 d = lane + 32 * i;
                if (d < D) c_acc[(warp * ATT_ROWS + r) * D + d] = acc[r][i];
            }
            if (lane == 0) {
                c_m[warp * ATT_ROWS + r] = m[r];
                c_l[warp * ATT_ROWS + r] = l[r];
            }
        }
    }
    __syncthreads();
    for (u32 idx = threadIdx.x; idx < active * D; idx += blockDim.x) {
        const u32 r = idx / D, d = idx % D;
        float M = TESSERA_NEG_INF;
#pragma unroll
        for (int w = 0; w < ATT_WARPS; ++w)
            if (c_l[w * ATT_ROWS + r] > 0.0f) M = fmaxf(M, c_m[w * ATT_ROWS + r]);
        float L = 0.0f, A = 0.0f;
#pragma unroll
        for (int w = 0; w < ATT_WARPS; ++w) {
            const float lw = c_l[w * ATT_ROWS + r];
            if (lw > 0.0f) {
                const float e = expf(c_m[w * ATT_ROWS + r] - M);
                L += lw * e;
                A += c_acc[(w * ATT_ROWS + r) * D + d] * e;
            }
        }
        const u32 row = row0 + r;
        const u64 token = q_start + row / G, head = kvh * G + row % G;
        if (num_splits == 1) {
            out[(token * num_heads + head) * D + d] = from_f32<T>(L > 0.0f ? A / L : 0.0f);
        } else {
            const u64 o = ((u64)split * num_tokens + token) * num_heads + head;
            part_acc[o * D + d] = A;
            if (d == 0) {
                part_ml[o * 2] = M;
                part_ml[o * 2 + 1] = L;
            }
        }
    }
}

/// Merges the split partials of one (token, head) row per block; rows no split wrote (their
/// sums were zeroed by the host: padding, or decode rows of a mixed step) are left alone.
template <typename T>
__device__ __forceinline__ void attention_combine_impl(const float* __restrict__ part_acc,
                                                       const float* __restrict__ part_ml, T* __restrict__ out,
                                                       u32 num_rows, u32 D, u32 num_splits) {
    const u64 row = blockIdx.x;
    float M = TESSERA_NEG_INF;
    for (u32 s = 0; s < num_splits; ++s) {
        const float* ml = part_ml + ((u64)s * num_rows + row) * 2;
        if (ml[1] > 0.0f) M = fmaxf(M, ml[0]);
    }
    if (M == TESSERA_NEG_INF) return;
    for (u32 d = threadIdx.x; d < D; d += blockDim.x) {
        float L = 0.0f, A = 0.0f;
        for (u32 s = 0; s < num_splits; ++s) {
            const u64 o = (u64)s * num_rows + row;
            const float lw = part_ml[o * 2 + 1];
            if (lw > 0.0f) {
                const float e = expf(part_ml[o * 2] - M);
                L += lw * e;
                A += part_acc[o * D + d] * e;
            }
        }
        out[row * D + d] = from_f32<T>(L > 0.0f ? A / L : 0.0f);
    }
}

#define PAGED_ATTENTION(S, T, DPL, NAME)                                                             \
    extern "C" __global__ void __launch_bounds__(ATT_WARPS * 32) paged_attention_##S##_##NAME(      \
        const T* q, const T* k_cache, const T* v_cache, T* out, float* part_acc, float* part_ml,     \
        const u32* qsl, const u32* seq_lens, const u32* block_tables, const u32* seq_order,         \
        u32 first, u32 num_seqs, u32 num_tokens, u32 max_blocks, u32 block_size, u32 num_blocks,    \
        u32 num_heads, u32 num_kv_heads, u32 D,                                                     \
        float scale, float softcap, u32 window, u32 num_splits, u32 split_len, u32 max_query_len,   \
        u32 max_seq_len, u32 vec_ok, u32* err) {                                                    \
        paged_attention_impl<T, DPL>(q, k_cache, v_cache, out, part_acc, part_ml, qsl, seq_lens,    \
                                     block_tables, seq_order, first, num_seqs, num_tokens,          \
                                     max_blocks, block_size, num_blocks,                            \
                                     num_heads, num_kv_heads, D, scale, softcap, window,            \
                                     num_splits, split_len, max_query_len, max_seq_len, vec_ok,     \
                                     err);                                                           \
    }

#define ATTENTION(S, T)                                                                              \
    PAGED_ATTENTION(S, T, 2, d64)                                                                    \
    PAGED_ATTENTION(S, T, 4, d128)                                                                   \
    PAGED_ATTENTION(S, T, 8, d256)                                                                   \
    extern "C" __global__ void attention_combine_##S(const float* part_acc, const float* part_ml,    \
                                                     T* out, u32 num_rows, u32 D, u32 num_splits) { \
        attention_combine_impl<T>(part_acc, part_ml, out, num_rows, D, num_splits);                  \
    }
FOR_EACH_FLOAT(ATTENTION)
