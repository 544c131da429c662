//! L2 prefetch of weights read soon (`Backend::prefetch`, native/src/cuda/prefetch.rs): the
//! host forks a side stream off the main one after a decode step's q/k/v GEMV and launches
//! `prefetch_l2` there, so o_proj and the first rows of gate/up arrive in L2 while the
//! latency-bound write_kv / attention / combine leave HBM idle.
//!
//! ```text
//! ranges : up to 4 (ptr, bytes), bytes a multiple of 16, ptr 16-byte aligned (the host checks)
//! chunks : PREFETCH_CHUNK bytes each, numbered range after range; thread t of the grid takes
//!          chunks t, t + threads, ... (chunk order = read order: o_proj, then gate/up rows)
//! sm_90+ : one `cp.async.bulk.prefetch.L2.global` per chunk (the SM's TMA unit fetches it;
//!          the thread does not wait, so the kernel ends at once and holds no SM resources
//!          while the bytes arrive)
//! older  : `prefetch.global.L2::evict_last` per 128-byte line of the chunk
//! ```
//! Nothing is written; the loads that later read these bytes (gemv.cu's
//! `ld.global.nc.L1::no_allocate`: no L2 eviction hint) hit in L2.

#define PREFETCH_CHUNK 8192u

/// Starts pulling `bytes` bytes at `p` into L2 (both multiples of 16 / 16-byte aligned).
__device__ __forceinline__ void prefetch_span(const char* p, u32 bytes) {
#if __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#else
    for (u32 o = 0; o < bytes; o += 128) asm volatile("prefetch.global.L2::evict_last [%0];" ::"l"(p + o));
#endif
}

extern "C" __global__ void prefetch_l2(const char* p0, u64 n0, const char* p1, u64 n1, const char* p2, u64 n2,
                                       const char* p3, u64 n3) {
    const char* ptrs[4] = {p0, p1, p2, p3};
    const u64 lens[4] = {n0, n1, n2, n3};
    u64 total = 0;
#pragma unroll
    for (int j = 0; j < 4; ++j) total += (lens[j] + PREFETCH_CHUNK - 1) / PREFETCH_CHUNK;
    const u64 threads = (u64)gridDim.x * blockDim.x;
    for (u64 c = (u64)blockIdx.x * blockDim.x + threadIdx.x; c < total; c += threads) {
        u64 local = c;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const u64 chunks = (lens[j] + PREFETCH_CHUNK - 1) / PREFETCH_CHUNK;
            if (local < chunks) {
                const u64 off = local * PREFETCH_CHUNK;
                const u64 left = lens[j] - off;
                prefetch_span(ptrs[j] + off, (u32)(left < PREFETCH_CHUNK ? left : PREFETCH_CHUNK));
                break;
            }
            local -= chunks;
        }
    }
}
