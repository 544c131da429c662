"""Times torch (cuBLAS/cuBLASLt) bf16 GEMMs of the SmolLM3-3B shapes at decode/prefill M, for
floors against tessera's per-node times: `python3 gemm_shapes.py [M ...]`. Weights rotate
over enough copies to stay out of L2; median of CUDA-event timings."""
import sys

import torch

H, KV, FFN, VOCAB = 2048, 512, 11008, 128256
SHAPES = [  # name, N, K
    ("q", H, H), ("k|v", KV, H), ("qkv", H + 2 * KV, H), ("o", H, H),
    ("gate|up", FFN, H), ("gate_up", 2 * FFN, H), ("down", H, FFN), ("lm_head", VOCAB, H),
]


def bench(m, n, k, reps=50):
    copies = max(2, int(200e6 // (n * k * 2)) + 1)
    ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) for _ in range(copies)]
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    for i in range(5):
        torch.nn.functional.linear(x, ws[i % copies])
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    for i, (a, b) in enumerate(ev):
        a.record()
        torch.nn.functional.linear(x, ws[i % copies])
        b.record()
    torch.cuda.synchronize()
    t = sorted(a.elapsed_time(b) for a, b in ev)[reps // 2] * 1e-3
    return t


def main():
    ms = [int(a) for a in sys.argv[1:]] or [256, 2048]
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    print(f"{'shape':>10} {'M':>6} {'N':>7} {'K':>6} {'us':>9} {'TFLOP/s':>8} {'GB/s(w)':>8}")
    for m in ms:
        for name, n, k in SHAPES:
            t = bench(m, n, k)
            print(f"{name:>10} {m:>6} {n:>7} {k:>6} {t * 1e6:>9.1f} {2 * m * n * k / t / 1e12:>8.1f} {n * k * 2 / t / 1e9:>8.0f}")


if __name__ == "__main__":
    main()
