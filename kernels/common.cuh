//! Shared by every kernels/*.cu file (prepended to each one before NVRTC compiles it): dtype
//! conversions, 16-byte vector loads/stores, warp/block reductions and the device error word.
//!
//! Storage dtypes: float (f32), __half (f16), __nv_bfloat16 (bf16). All math is f32; values
//! are widened on load and rounded (round-to-nearest-even) once on store.
//!
//! Device error word `err[4]` (u32): kernels that find a bad index (token id, row, slot,
//! block id) record the first one with `report_error` and skip the bad element; the host
//! reads the word at the next synchronisation point and turns it into a BackendError.
//!   err[0] = code (0 = none), err[1], err[2] = details (index, row / sequence).
#include <cuda_fp16.h>
#include <cuda_bf16.h>

typedef unsigned int u32;
typedef unsigned long long u64;

#define TESSERA_INF __int_as_float(0x7f800000)
#define TESSERA_NEG_INF __int_as_float(0xff800000)

// Error codes; keep in sync with native/src/cuda/error.rs.
#define ERR_EMBEDDING_ID 1u
#define ERR_GATHER_INDEX 2u
#define ERR_WRITE_KV_SLOT 3u
#define ERR_ATTN_METADATA 4u
#define ERR_ATTN_BLOCK_ID 5u

__device__ __forceinline__ void report_error(u32* err, u32 code, u32 a, u32 b) {
    if (atomicCAS(err, 0u, code) == 0u) {
        err[1] = a;
        err[2] = b;
    }
}

// ---- dtype conversions ------------------------------------------------------------------

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

// ---- cp.async (global -> shared, sm_80+) ------------------------------------------------

__device__ __forceinline__ u32 smem_addr(const void* p) { return (u32)__cvta_generic_to_shared(p); }

/// 16 bytes global -> shared without a register round trip; zeros when !valid.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// ---- programmatic dependent launch (sm_90+) ---------------------------------------------
//
// The host launches the kernels that call `pdl_wait` with programmatic stream serialization
// (native/src/cuda/device.rs `PDL_KERNELS`), so such a kernel's blocks may start while the
// kernel before it still runs: everything before `pdl_wait` may read only what no earlier
// kernel of the step writes (weights, the step's metadata uploaded before the graph) and
// may write nothing global but the error word. `pdl_wait` returns once the kernel before has
// completed and its writes are visible; every block calls it before it exits (also one with
// nothing to do), so a kernel's completion implies its predecessors'. Every kernel calls
// `pdl_trigger` once its own inputs
// are ready (right after `pdl_wait`, or at its start): from then on the next kernel may start
// its blocks, so at most one kernel runs ahead of the one it depends on. Both are no-ops
// below sm_90 and for launches without the attribute.

__device__ __forceinline__ void pdl_wait() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
/// Both, for a kernel's first statement (it depends on the kernel before from the start).
__device__ __forceinline__ void pdl_wait_trigger() {
    pdl_wait();
    pdl_trigger();
}

// ---- thread block clusters (sm_90+; only launched there) ---------------------------------

/// This block's rank in its cluster and the cluster's size.
__device__ __forceinline__ u32 cluster_rank() {
    u32 r = 0;
#if __CUDA_ARCH__ >= 900
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
#endif
    return r;
}
__device__ __forceinline__ u32 cluster_size() {
    u32 r = 1;
#if __CUDA_ARCH__ >= 900
    asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(r));
#endif
    return r;
}
/// Every thread of every block of the cluster: shared-memory writes before it are visible to
/// the cluster's reads after it (also a block-wide barrier).
__device__ __forceinline__ void cluster_sync() {
#if __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#else
    __syncthreads();
#endif
}
/// The f32 at `p` (this block's shared memory) in the shared memory of cluster block `rank`.
__device__ __forceinline__ float ld_cluster(const float* p, u32 rank) {
#if __CUDA_ARCH__ >= 900
    u32 remote;
    float v;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(smem_addr(p)), "r"(rank));
    asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(remote) : "memory");
    return v;
#else
    return *p;
#endif
}

// ---- 16-byte vectors --------------------------------------------------------------------

/// Elements of T in one 16-byte access.
template <typename T> struct Vec16 {
    static constexpr int N = 16 / sizeof(T);
};

/// Loads Vec16<T>::N elements at `p` (16-byte aligned) widened to f32.
template <typename T> __device__ __forceinline__ void load_vec(const T* p, float* out) {
    uint4 raw = *reinterpret_cast<const uint4*>(p);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < Vec16<T>::N; ++i) out[i] = to_f32(e[i]);
}

/// Rounds Vec16<T>::N f32 values to T and stores them at `p` (16-byte aligned).
template <typename T> __device__ __forceinline__ void store_vec(T* p, const float* in) {
    uint4 raw;
    T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int i = 0; i < Vec16<T>::N; ++i) e[i] = from_f32<T>(in[i]);
    *reinterpret_cast<uint4*>(p) = raw;
}

// ---- reductions -------------------------------------------------------------------------

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets
/// the result. `scratch` holds 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nwarps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = lane < nwarps ? scratch[lane] : 0.0f;
    return warp_sum(t);
}

/// One instantiation of `M(suffix, type)` per storage dtype.
#define FOR_EACH_FLOAT(M) M(f32, float) M(f16, __half) M(bf16, __nv_bfloat16)

// ---- gated activations (act.cu, gemv.cu) ------------------------------------------------

/// act 0 silu, 1 gelu_tanh, 2 gelu (erf), f32 math with torch's formulas (see act.cu).
__device__ __forceinline__ float activate(float g, u32 act) {
    if (act == 0) return g / (1.0f + expf(-g));
    if (act == 1) {
        const float k0 = 0.7978845608028654f;  // sqrt(2/pi) rounded to f32, as torch
        const float k1 = 0.044715f;
        const float cube = g * g * g;
        // 0.5 (1 + tanh(z)) = 1 / (1 + exp(-2z)): the same function without the cancellation
        // of 1 + tanh(z) for negative z.
        return g / (1.0f + expf(-2.0f * k0 * (g + k1 * cube)));
    }
    return g * 0.5f * (1.0f + erff(g * 0.70710678118654752f));
}

// ---- rotary embedding (rope.cu; deferred into kv_cache.cu) ------------------------------

/// cos and sin of pair `i`'s angle for token row `t`, times `scaling`: angle =
/// f32(positions[t]) * inv_freq[i] (inv_freq [half] shared, or [T, half] with `per_token`).
__device__ __forceinline__ void rope_cos_sin(const u32* __restrict__ positions, const float* __restrict__ inv_freq,
                                             u32 t, u32 i, u32 half, u32 per_token, float scaling, float& c,
                                             float& s) {
    const float f = inv_freq[per_token ? (u64)t * half + i : i];
    const float angle = (float)positions[t] * f;
    sincosf(angle, &s, &c);
    c *= scaling;
    s *= scaling;
}

/// Element indices of pair `i` in a head: neox (i, i + half), interleaved (2i, 2i + 1).
__device__ __forceinline__ void rope_pair_index(u32 i, u32 half, u32 interleaved, u32& ia, u32& ib) {
    ia = interleaved ? 2 * i : i;
    ib = interleaved ? 2 * i + 1 : i + half;
}

/// (a, b) -> (a c - b s, b c + a s), each rounded to T: the one formula every rope path uses.
/// The contraction is spelled out (one rounded product, one fma) so that every kernel
/// computes the same bits: left to the compiler, rope.cu and kv_cache.cu contracted it
/// differently (f32 results 1 ulp apart).
template <typename T>
__device__ __forceinline__ void rope_rotate(float a, float b, float c, float s, T& oa, T& ob) {
    oa = from_f32<T>(fmaf(a, c, -__fmul_rn(b, s)));
    ob = from_f32<T>(fmaf(b, c, __fmul_rn(a, s)));
}
