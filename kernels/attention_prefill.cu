//! Paged attention for prefill rows on the tensor cores (bf16 / f16; f32 stays on the SIMT
//! kernel of attention.cu), FlashAttention-2 style: `mma.sync.m16n8k16` (inline PTX, f32
//! accumulators), a warp per 16 query rows, K/V tiles of 64 keys gathered from the paged
//! cache into shared memory with `cp.async`, online softmax in f32 on the accumulators.
//!
//! ```text
//! grid  x = count                 (seq b = seq_order[first + x])
//!       y = num_kv_heads          (kv head h_kv; its G = num_heads / num_kv_heads q heads)
//!       z = row tiles             (64 consecutive rows of seq b's q_len * G rows)
//! row r of a tile = (token tq, head g) with tq * G + g = z * 64 + r (GQA heads share K/V)
//!                   position p = seq_len - q_len + tq, sees keys j: p - W < j <= p
//! block = 4 warps; warp w owns rows 16w .. 16w + 15 of the tile:
//!   S = Q K^T  (A = Q from shared memory by ldmatrix, B = K rows by ldmatrix)
//!   P = exp2(S * scale * log2 e - m)   in the accumulators' layout, packed to A fragments
//!   O += P V   (B = V rows by ldmatrix.trans)
//! shared: Q [64][D + 8] | K [64][D + 8] | V [64][D + 8]  (T; the 8-element pad spreads the
//!         ldmatrix rows over the banks)
//! ```
//! No key split: the host takes this kernel for 16-bit prefill rows when its grid has at least
//! half as many blocks as the device has SMs and splits are not forced (TensorCorePrefill in
//! native/src/cuda/mod.rs). Bad metadata or block ids go to the error word.

#define PF_WARPS 4
#define PF_ROWS 64
#define PF_KEYS 64
#define PF_LOG2E 1.4426950408889634f

__device__ __forceinline__ void ldsm_x4(u32* r, const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_x4_trans(u32* r, const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

/// c[4] += a[4] (16x16, row) * b[2] (16x8, col), f32 accumulators.
__device__ __forceinline__ void mma16816(float* c, const u32* a, const u32* b, __nv_bfloat16) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void mma16816(float* c, const u32* a, const u32* b, __half) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/// Two f32 values rounded to T and packed low-first (an A-fragment register).
__device__ __forceinline__ u32 pack2(float lo, float hi, __nv_bfloat16) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<u32*>(&v);
}
__device__ __forceinline__ u32 pack2(float lo, float hi, __half) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<u32*>(&v);
}

/// Gathers the K or V rows of keys base .. base + 64 (zeros past `hi`) into `tile`.
template <typename T, int D>
__device__ __forceinline__ void pf_load_kv(const T* __restrict__ cache, T* tile, u32 base, u32 hi,
                                           const u32* __restrict__ table, u32 block_size, u32 num_blocks,
                                           u64 kv_width, u32 kv_off, u32* err, u32 seq) {
    constexpr int CPR = D / 8;  // 16-byte chunks a row
#pragma unroll 4
    for (u32 c = threadIdx.x; c < PF_KEYS * CPR; c += PF_WARPS * 32) {
        const u32 n = c / CPR, d0 = (c % CPR) * 8;
        const u32 j = base + n;
        bool ok = j < hi;
        const T* src = cache;
        if (ok) {
            const u32 blk = table[j / block_size];
            if (blk < num_blocks) {
                src = cache + ((u64)blk * block_size + j % block_size) * kv_width + kv_off + d0;
            } else {
                report_error(err, ERR_ATTN_BLOCK_ID, blk, seq);
                ok = false;
            }
        }
        cp_async16(tile + n * (D + 8) + d0, src, ok);
    }
}

template <typename T, int D>
__device__ __forceinline__ void paged_attention_tc_impl(
    const T* __restrict__ q, const T* __restrict__ k_cache, const T* __restrict__ v_cache, T* __restrict__ out,
    const u32* __restrict__ qsl, const u32* __restrict__ seq_lens, const u32* __restrict__ block_tables,
    const u32* __restrict__ seq_order, u32 first, u32 num_seqs, u32 num_tokens, u32 max_blocks, u32 block_size,
    u32 num_blocks, u32 num_heads, u32 num_kv_heads, float scale, float softcap, u32 window, u32 max_query_len,
    u32 max_seq_len, u32* err) {
    constexpr int DS = D + 8;  // shared row stride (elements)
    constexpr int NT = PF_KEYS / 8;  // key n-tiles of S
    constexpr int DT = D / 8;  // dim n-tiles of O
    extern __shared__ float4 smem4[];
    T* q_s = reinterpret_cast<T*>(smem4);
    T* k_s = q_s + PF_ROWS * DS;
    T* v_s = k_s + PF_KEYS * DS;

    const u32 G = num_heads / num_kv_heads;
    const u32 b = seq_order[first + blockIdx.x];
    const u32 kvh = blockIdx.y;
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const bool reporter = threadIdx.x == 0 && kvh == 0 && blockIdx.z == 0;
    if (b >= num_seqs) {
        if (reporter) report_error(err, ERR_ATTN_METADATA, b, num_seqs);
        return;
    }
    const u32 q_start = qsl[b], q_end = qsl[b + 1], seq_len = seq_lens[b];
    if (q_end < q_start || q_end > num_tokens || q_end - q_start > seq_len || q_end - q_start > max_query_len ||
        seq_len > max_seq_len || (u64)seq_len > (u64)max_blocks * block_size) {
        if (reporter) report_error(err, ERR_ATTN_METADATA, b, seq_len);
        return;
    }
    const u32 q_len = q_end - q_start;
    const u32 row0 = blockIdx.z * PF_ROWS;
    if (row0 >= q_len * G) return;
    const u32 active = min((u32)PF_ROWS, q_len * G - row0);
    const u32 ctx0 = seq_len - q_len;  // position of the sequence's first query token

    // The block's key range covers its first and last rows.
    const u32 first_pos = ctx0 + row0 / G, last_pos = ctx0 + (row0 + active - 1) / G;
    const u32 lo = (window != 0 && first_pos + 1 > window) ? first_pos + 1 - window : 0;
    const u32 hi = last_pos + 1;

    // Q rows (zeros past `active`).
    {
        constexpr int CPR = D / 8;
        for (u32 c = threadIdx.x; c < PF_ROWS * CPR; c += PF_WARPS * 32) {
            const u32 r = c / CPR, d0 = (c % CPR) * 8;
            const bool ok = r < active;
            const u32 row = row0 + r;
            const T* src = ok ? q + ((u64)(q_start + row / G) * num_heads + kvh * G + row % G) * D + d0 : q;
            cp_async16(q_s + r * DS + d0, src, ok);
        }
        cp_async_commit();
    }

    // This thread's two rows (of the accumulator layout): g and g + 8 of the warp's 16.
    const u32 g = lane >> 2, tq4 = lane & 3;
    u32 pos[2];
    bool live[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const u32 r = warp * 16 + g + 8 * h;
        live[h] = r < active;
        pos[h] = ctx0 + (row0 + min(r, active - 1)) / G;
    }
    const bool warp_live = warp * 16 < active;

    float o[DT][4];
#pragma unroll
    for (int i = 0; i < DT; ++i)
#pragma unroll
        for (int k = 0; k < 4; ++k) o[i][k] = 0.0f;
    float m[2] = {TESSERA_NEG_INF, TESSERA_NEG_INF}, l[2] = {0.0f, 0.0f};
    const float sl2 = scale * PF_LOG2E;

    const u32* table = block_tables + (u64)b * max_blocks;
    const u64 kv_width = (u64)num_kv_heads * D;
    const u32 kv_off = kvh * D;
    const T tag = T();
    for (u32 base = lo; base < hi; base += PF_KEYS) {
        pf_load_kv<T, D>(k_cache, k_s, base, hi, table, block_size, num_blocks, kv_width, kv_off, err, b);
        cp_async_commit();
        pf_load_kv<T, D>(v_cache, v_s, base, hi, table, block_size, num_blocks, kv_width, kv_off, err, b);
        cp_async_commit();
        cp_async_wait<1>();  // Q and K are in; V may still be on its way
        __syncthreads();

        float s[NT][4];
#pragma unroll
        for (int i = 0; i < NT; ++i)
#pragma unroll
            for (int k = 0; k < 4; ++k) s[i][k] = 0.0f;
        if (warp_live) {
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
                u32 a[4];
                ldsm_x4(a, q_s + (warp * 16 + (lane & 15)) * DS + kk * 16 + (lane >> 4) * 8);
#pragma unroll
                for (int p = 0; p < NT / 2; ++p) {
                    u32 bf[4];
                    ldsm_x4(bf, k_s + (p * 16 + (lane & 7) + (lane >> 4) * 8) * DS + kk * 16 + ((lane >> 3) & 1) * 8);
                    mma16816(s[2 * p], a, bf, tag);
                    mma16816(s[2 * p + 1], a, bf + 2, tag);
                }
            }
        }

        // Scale, softcap, mask (log2 units); row max over the 4 lanes sharing a row.
        float mx[2] = {TESSERA_NEG_INF, TESSERA_NEG_INF};
#pragma unroll
        for (int i = 0; i < NT; ++i)
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const int h = k >> 1;
                const u32 j = base + i * 8 + 2 * tq4 + (k & 1);
                float x = s[i][k];
                if (softcap > 0.0f) {
                    x = tanhf(x * scale / softcap) * softcap * PF_LOG2E;
                } else {
                    x *= sl2;
                }
                const bool ok = live[h] && j < hi && j <= pos[h] && (window == 0 || j + window > pos[h]);
                x = ok ? x : TESSERA_NEG_INF;
                s[i][k] = x;
                mx[h] = fmaxf(mx[h], x);
            }
        float mu[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
            mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
            const float m_new = fmaxf(m[h], mx[h]);
            mu[h] = m_new == TESSERA_NEG_INF ? 0.0f : m_new;
            const float corr = exp2f(m[h] - mu[h]);
            l[h] *= corr;
#pragma unroll
            for (int i = 0; i < DT; ++i) {
                o[i][2 * h] *= corr;
                o[i][2 * h + 1] *= corr;
            }
            m[h] = m_new;
        }
#pragma unroll
        for (int i = 0; i < NT; ++i)
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const float p = exp2f(s[i][k] - mu[k >> 1]);
                s[i][k] = p;
                l[k >> 1] += p;
            }

        cp_async_wait<0>();
        __syncthreads();
        if (warp_live) {
#pragma unroll
            for (int kk = 0; kk < PF_KEYS / 16; ++kk) {
                u32 a[4];
                a[0] = pack2(s[2 * kk][0], s[2 * kk][1], tag);
                a[1] = pack2(s[2 * kk][2], s[2 * kk][3], tag);
                a[2] = pack2(s[2 * kk + 1][0], s[2 * kk + 1][1], tag);
                a[3] = pack2(s[2 * kk + 1][2], s[2 * kk + 1][3], tag);
#pragma unroll
                for (int p = 0; p < DT / 2; ++p) {
                    u32 bf[4];
                    ldsm_x4_trans(bf, v_s + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * DS + p * 16 + (lane >> 4) * 8);
                    mma16816(o[2 * p], a, bf, tag);
                    mma16816(o[2 * p + 1], a, bf + 2, tag);
                }
            }
        }
        __syncthreads();  // the next tile overwrites K and V
    }
    cp_async_wait<0>();

    // Row sums over the 4 lanes of a row, then O / l as T pairs.
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
        l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        if (!live[h]) continue;
        const u32 row = row0 + warp * 16 + g + 8 * h;
        const u64 token = q_start + row / G, head = kvh * G + row % G;
        T* orow = out + (token * num_heads + head) * D;
        const float inv = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;
#pragma unroll
        for (int i = 0; i < DT; ++i)
            *reinterpret_cast<u32*>(orow + i * 8 + 2 * tq4) = pack2(o[i][2 * h] * inv, o[i][2 * h + 1] * inv, tag);
    }
}

#define PAGED_ATTENTION_TC(S, T, D)                                                                   \
    extern "C" __global__ void __launch_bounds__(PF_WARPS * 32) paged_attention_tc_##S##_d##D(       \
        const T* q, const T* k_cache, const T* v_cache, T* out, const u32* qsl, const u32* seq_lens,  \
        const u32* block_tables, const u32* seq_order, u32 first, u32 num_seqs, u32 num_tokens,      \
        u32 max_blocks, u32 block_size, u32 num_blocks, u32 num_heads, u32 num_kv_heads,             \
        float scale, float softcap, u32 window, u32 max_query_len, u32 max_seq_len, u32* err) {      \
        paged_attention_tc_impl<T, D>(q, k_cache, v_cache, out, qsl, seq_lens, block_tables,          \
                                      seq_order, first, num_seqs, num_tokens, max_blocks,             \
                                      block_size, num_blocks, num_heads, num_kv_heads, scale,         \
                                      softcap, window, max_query_len, max_seq_len, err);              \
    }

#define ATTENTION_TC(S, T)                                                                            \
    PAGED_ATTENTION_TC(S, T, 64)                                                                      \
    PAGED_ATTENTION_TC(S, T, 128)                                                                     \
    PAGED_ATTENTION_TC(S, T, 256)
ATTENTION_TC(f16, __half)
ATTENTION_TC(bf16, __nv_bfloat16)
