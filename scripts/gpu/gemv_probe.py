#!/usr/bin/env python3
"""How close can an M = 1 bf16 GEMV get to the H200's read bandwidth? (device machine, CuPy)

A probe for the single-stream work, not part of the engine: times three kernels on the
SmolLM3-3B decode shapes over rotating weight copies (more bytes than L2), CUDA events around
back-to-back launches:
  ldg   one warp a row, 16-byte `ld.global.nc` loads, one batch a lane (kernels/gemv.cu's shape
        for K = 2048, ks = 1)
  bulk  a persistent grid, one block an SM: a producer thread streams the block's contiguous
        rows into an S-stage shared-memory ring with `cp.async.bulk` (the TMA unit, completing
        on mbarriers); 8 consumer warps multiply each stage against x held in registers
  drain the bulk kernel's stream with no math (its bandwidth ceiling)
and checks ldg / bulk against a float64 reference. Prints one line per (shape, kernel).
Usage: python3 gemv_probe.py [STAGE_KB ...]
"""
import sys

import cupy as cp
import numpy as np

SRC = r"""
#include <cuda_bf16.h>
typedef unsigned int u32;
typedef unsigned long long u64;

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ void dot8(uint4 w, uint4 x, float& acc) {
    const __nv_bfloat162* a = reinterpret_cast<const __nv_bfloat162*>(&w);
    const __nv_bfloat162* b = reinterpret_cast<const __nv_bfloat162*>(&x);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        float2 fa = __bfloat1622float2(a[i]), fb = __bfloat1622float2(b[i]);
        acc = fmaf(fa.x, fb.x, acc);
        acc = fmaf(fa.y, fb.y, acc);
    }
}
__device__ __forceinline__ uint4 ld_stream(const void* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

// One warp a row, K = 32 * 8 * U elements... any K: U batches of 8 chunks a lane.
extern "C" __global__ void __launch_bounds__(256) gemv_ldg(const __nv_bfloat16* __restrict__ w,
        const __nv_bfloat16* __restrict__ x, __nv_bfloat16* out, u32 n, u32 k) {
    const u32 row = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= n) return;
    const u32 chunks = k / 8;
    const __nv_bfloat16* wr = w + (u64)row * k;
    float acc = 0.f;
    for (u32 c0 = lane; c0 < chunks; c0 += 256) {
        uint4 wv[8];
#pragma unroll
        for (int u = 0; u < 8; ++u) { u32 c = c0 + u * 32; wv[u] = c < chunks ? ld_stream(wr + (u64)c * 8) : make_uint4(0,0,0,0); }
#pragma unroll
        for (int u = 0; u < 8; ++u) { u32 c = c0 + u * 32; if (c < chunks) dot8(wv[u], __ldg(reinterpret_cast<const uint4*>(x + c * 8)), acc); }
    }
    acc = warp_sum(acc);
    if (lane == 0) out[row] = __float2bfloat16(acc);
}

__device__ __forceinline__ u32 smem(const void* p) { return (u32)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbar_init(u64* b, u32 count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(smem(b)), "r"(count));
}
__device__ __forceinline__ void mbar_expect(u64* b, u32 bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(smem(b)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(u64* b) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" :: "r"(smem(b)) : "memory");
}
__device__ __forceinline__ void mbar_wait(u64* b, u32 parity) {
    asm volatile("{\n .reg .pred p;\n W: mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n @!p bra W;\n}"
                 :: "r"(smem(b)), "r"(parity) : "memory");
}
__device__ __forceinline__ void bulk_load(void* dst, const void* src, u32 bytes, u64* bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                 :: "r"(smem(dst)), "l"(src), "r"(bytes), "r"(smem(bar)) : "memory");
}

#define MAXS 16
// Persistent: block b owns rows [b*n/G, (b+1)*n/G); a stage = RS whole rows (RS*k*2 bytes);
// warps 0..7 consume (warp w: row w / (8/RS) of the stage, K slice w % (8/RS)), warp 8 produces.
// MATH = 0: consumers only wait and release (the stream's ceiling).
extern "C" __global__ void __launch_bounds__(288, 1) gemv_bulk(const __nv_bfloat16* __restrict__ w,
        const __nv_bfloat16* __restrict__ x, __nv_bfloat16* out, u32 n, u32 k, u32 rs, u32 stages, u32 math) {
    extern __shared__ __align__(128) unsigned char ring[];
    __shared__ __align__(8) u64 full[MAXS], empty[MAXS];
    __shared__ float red[2][8];
    const u32 warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const u32 r0 = (u64)blockIdx.x * n / gridDim.x, r1 = (u64)(blockIdx.x + 1) * n / gridDim.x;
    const u32 row_bytes = k * 2, stage_bytes = rs * row_bytes;
    const u32 nst = (r1 - r0 + rs - 1) / rs;
    if (threadIdx.x == 0) {
        for (u32 s = 0; s < stages; ++s) { mbar_init(&full[s], 1); mbar_init(&empty[s], 1); }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    if (warp == 8) {
        if (lane == 0) {
            for (u32 i = 0; i < nst; ++i) {
                const u32 s = i % stages;
                if (i >= stages) mbar_wait(&empty[s], ((i / stages) - 1) & 1);
                const u32 rows = min(rs, r1 - r0 - i * rs);
                mbar_expect(&full[s], rows * row_bytes);
                bulk_load(ring + (u64)s * stage_bytes, w + (u64)(r0 + i * rs) * k, rows * row_bytes, &full[s]);
            }
        }
        return;
    }
    const u32 wpr = 8 / rs, rl = warp / wpr, slice = warp % wpr;
    const u32 chunks = k / 8, per = (chunks + wpr - 1) / wpr;
    const u32 c_lo = slice * per, c_hi = min(chunks, c_lo + per);
    // x of this warp's slice: at most 8 chunks a lane kept in registers (K slice <= 2048 here).
    uint4 xv[8];
#pragma unroll
    for (int u = 0; u < 8; ++u) { u32 c = c_lo + lane + u * 32; xv[u] = c < c_hi ? __ldg(reinterpret_cast<const uint4*>(x + c * 8)) : make_uint4(0,0,0,0); }
    for (u32 i = 0; i < nst; ++i) {
        const u32 s = i % stages;
        mbar_wait(&full[s], (i / stages) & 1);
        const u32 rows = min(rs, r1 - r0 - i * rs);
        float acc = 0.f;
        if (math && rl < rows) {
            const uint4* st = reinterpret_cast<const uint4*>(ring + (u64)s * stage_bytes + (u64)rl * row_bytes);
#pragma unroll
            for (int u = 0; u < 8; ++u) { u32 c = c_lo + lane + u * 32; if (c < c_hi) dot8(st[c], xv[u], acc); }
            acc = warp_sum(acc);
        }
        if (lane == 0) red[i & 1][warp] = acc;
        asm volatile("bar.sync 1, 256;" ::: "memory");
        if (threadIdx.x == 0) mbar_arrive(&empty[s]);
        if (math && threadIdx.x < rows) {
            float sum = 0.f;
            for (u32 j = 0; j < wpr; ++j) sum += red[i & 1][threadIdx.x * wpr + j];
            out[r0 + i * rs + threadIdx.x] = __float2bfloat16(sum);
        }
    }
}
"""


def bf16(a):
    """float32 -> bf16 bits (truncated) as uint16: no bfloat16 dtype needed."""
    return (a.view(cp.uint32) >> 16).astype(cp.uint16)


def f64(b):
    return (b.astype(cp.uint32) << 16).view(cp.float32).astype(cp.float64)


def timed(fn, copies, reps=60):
    for c in range(copies):
        fn(c)
    cp.cuda.Device().synchronize()
    a, b = cp.cuda.Event(), cp.cuda.Event()
    a.record()
    for r in range(reps):
        fn(r % copies)
    b.record()
    b.synchronize()
    return cp.cuda.get_elapsed_time(a, b) * 1e3 / reps  # us


def main():
    mod = cp.RawModule(code=SRC, options=("-std=c++17", "--gpu-architecture=sm_90"))
    ldg, bulk = mod.get_function("gemv_ldg"), mod.get_function("gemv_bulk")
    props = cp.cuda.runtime.getDeviceProperties(0)
    sms = props["multiProcessorCount"]
    print(f"PROBE {props['name'].decode()} {sms} SMs, L2 {props['l2CacheSize'] >> 20} MiB")
    stage_kbs = [int(a) for a in sys.argv[1:]] or [16, 32]
    # (name, N, K): gate+up as one 22016-row matrix, down, o, lm_head
    for name, n, k in [("gate_up", 22016, 2048), ("down", 2048, 11008), ("o", 2048, 2048), ("lm_head", 128256, 2048)]:
        bytes_ = n * k * 2
        copies = max(2, -(-400_000_000 // bytes_))
        ws = [bf16(cp.random.standard_normal((n, k), dtype=cp.float32) * 0.05) for _ in range(copies)]
        x = bf16(cp.random.standard_normal(k, dtype=cp.float32))
        ref = (f64(ws[0]) @ f64(x)).get()
        out = cp.zeros(n, dtype=cp.uint16)

        def check(tag):
            got = f64(out).get()
            err = np.abs(got - ref).max() / (np.abs(ref).max() + 1e-9)
            return f"maxrel {err:.1e}" + ("" if err < 2e-2 else "  MISMATCH")

        run_ldg = lambda c: ldg(((n + 7) // 8,), (256,), (ws[c], x, out, np.uint32(n), np.uint32(k)))
        run_ldg(0)
        cp.cuda.Device().synchronize()
        chk = check("ldg")
        us = timed(run_ldg, copies)
        print(f"PROBE {name:<8} {bytes_ / 1e6:7.1f} MB  ldg              {us:8.2f} us {bytes_ / us / 1e3:7.0f} GB/s  {chk}")
        for kb in stage_kbs:
            # A warp keeps at most 256 chunks of x (8 a lane) in registers: a row's K slice
            # (k / 8 chunks over 8 / rs warps) must fit.
            most = max(1, 8 // -(-(k // 8) // 256))
            rs = max(1, min(8, most, kb * 1024 // (k * 2)))
            rs = 1 << (rs.bit_length() - 1)
            sb = rs * k * 2
            stages = max(2, min(16, (200 * 1024) // sb))
            smem_bytes = stages * sb
            bulk.max_dynamic_shared_size_bytes = smem_bytes
            for math in (1, 0):
                run = lambda c: bulk((sms,), (288,), (ws[c], x, out, np.uint32(n), np.uint32(k), np.uint32(rs),
                                                      np.uint32(stages), np.uint32(math)), shared_mem=smem_bytes)
                out.fill(0)
                run(0)
                cp.cuda.Device().synchronize()
                chk = check("bulk") if math else ""
                us = timed(run, copies)
                tag = f"{'bulk' if math else 'drain'} rs{rs} s{stages}"
                print(f"PROBE {name:<8} {bytes_ / 1e6:7.1f} MB  {tag:<16} {us:8.2f} us {bytes_ / us / 1e3:7.0f} GB/s  {chk}")
        del ws


if __name__ == "__main__":
    main()
