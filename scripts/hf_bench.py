"""HF transformers baselines for the GPU suite, on the same card as tessera's benchmarks
(run on the GPU machine: torch + transformers are installed there).

    python3 scripts/hf_bench.py MODEL_DIR OUT_JSON [--throughput] [--latency] [--roofline]
        [--num-prompts 256 --input-len 512 --output-len 256] [--lat-input-len 128 --lat-output-len 256]

MODEL_DIR holds a config.json (SmolLM3-3B's); weights are random (bf16, initialised on the
GPU), as tessera's `--load-format dummy`.

--throughput: continuous batching, `generate_batch` with attn_implementation="paged|sdpa",
    NUM_PROMPTS random prompts, greedy; tokens counted from what it actually returned.
--latency:    plain `generate` (sdpa), batch 1, greedy, min_new_tokens = max_new_tokens.
--roofline:   the card's copy bandwidth (device-to-device copy, read + write bytes) and bf16
    GEMM rate (8192^3), and the model's weight bytes: the floors the report divides by.
Writes one JSON object; prints a line per measurement.
"""
import argparse
import json
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("out")
ap.add_argument("--throughput", action="store_true")
ap.add_argument("--latency", action="store_true")
ap.add_argument("--roofline", action="store_true")
ap.add_argument("--num-prompts", type=int, default=256)
ap.add_argument("--input-len", type=int, default=512)
ap.add_argument("--output-len", type=int, default=256)
ap.add_argument("--lat-input-len", type=int, default=128)
ap.add_argument("--lat-output-len", type=int, default=256)
ap.add_argument("--lat-iters", type=int, default=2)
a = ap.parse_args()

res = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
try:
    import transformers

    res["transformers"] = transformers.__version__
except Exception:  # noqa: BLE001
    pass
config = AutoConfig.from_pretrained(a.model)
torch.manual_seed(0)


def build(attn):
    with torch.device("cuda"):
        m = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation=attn)
    return m.eval()


def save():
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


if a.roofline:
    n = 1 << 30  # 1 GiB copied: 2 GiB moved
    src = torch.empty(n, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    times = []
    for _ in range(10):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        dst.copy_(src)
        e1.record()
        torch.cuda.synchronize()
        times.append(e0.elapsed_time(e1) / 1e3)
    times.sort()
    res["copy_bandwidth_gbs"] = 2 * n / times[len(times) // 2] / 1e9
    del src, dst
    x = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    y = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    for _ in range(3):
        x @ y
    torch.cuda.synchronize()
    times = []
    for _ in range(10):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        x @ y
        e1.record()
        torch.cuda.synchronize()
        times.append(e0.elapsed_time(e1) / 1e3)
    times.sort()
    res["bf16_gemm_tflops"] = 2 * 8192**3 / times[len(times) // 2] / 1e12
    del x, y
    m = build("sdpa")
    res["weight_bytes"] = sum(p.numel() * p.element_size() for p in m.parameters())
    res["params"] = sum(p.numel() for p in m.parameters())
    del m
    torch.cuda.empty_cache()
    print(f"roofline: copy {res['copy_bandwidth_gbs']:.0f} GB/s, bf16 GEMM {res['bf16_gemm_tflops']:.0f} TFLOP/s, "
          f"weights {res['weight_bytes'] / 1e9:.2f} GB ({res['params'] / 1e9:.2f} B params)", flush=True)
    save()

if a.latency:
    m = build("sdpa")
    vocab = config.vocab_size
    g = torch.Generator().manual_seed(1)

    def once(out_len):
        ids = torch.randint(0, vocab, (1, a.lat_input_len), generator=g).to("cuda")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            o = m.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=out_len, min_new_tokens=out_len,
                           do_sample=False, pad_token_id=0)
        torch.cuda.synchronize()
        return time.perf_counter() - t0, o.shape[1] - a.lat_input_len

    once(8)  # warm-up
    lats = []
    for _ in range(a.lat_iters):
        t, n = once(a.lat_output_len)
        lats.append(t)
    lats.sort()
    res["latency"] = {"input_len": a.lat_input_len, "output_len": a.lat_output_len, "latencies_s": lats,
                      "avg_latency_s": sum(lats) / len(lats), "tokens": n,
                      "decode_tok_s": a.lat_output_len / (sum(lats) / len(lats))}
    print(f"HF latency: batch 1, {a.lat_input_len} in / {a.lat_output_len} out: avg {res['latency']['avg_latency_s']:.2f} s "
          f"({res['latency']['decode_tok_s']:.1f} tok/s)", flush=True)
    del m
    torch.cuda.empty_cache()
    save()

if a.throughput:
    m = build("paged|sdpa")
    vocab = config.vocab_size
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(0, vocab, (a.input_len,), generator=g).tolist() for _ in range(a.num_prompts)]
    gc = GenerationConfig(max_new_tokens=a.output_len, do_sample=False, eos_token_id=None, pad_token_id=0)
    try:
        gc.min_new_tokens = a.output_len
    except Exception:  # noqa: BLE001
        pass
    # Warm-up (graph capture, allocator) on a few short requests, unmeasured.
    with torch.no_grad():
        m.generate_batch(inputs=[p[:32] for p in prompts[:4]], generation_config=GenerationConfig(
            max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0))
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.no_grad():
        outs = m.generate_batch(inputs=prompts, generation_config=gc)
    torch.cuda.synchronize()
    el = time.perf_counter() - t0
    out_tok = 0
    for o in outs.values():
        toks = getattr(o, "generated_tokens", None)
        out_tok += len(toks) if toks is not None else 0
    in_tok = a.num_prompts * a.input_len
    res["throughput"] = {"num_prompts": a.num_prompts, "input_len": a.input_len, "output_len": a.output_len,
                         "elapsed_time": el, "output_tokens": out_tok, "requests_per_second": a.num_prompts / el,
                         "tokens_per_second": (in_tok + out_tok) / el, "output_tokens_per_second": out_tok / el}
    print(f"HF throughput (generate_batch, paged|sdpa): {a.num_prompts} x ({a.input_len}+{a.output_len}) in {el:.1f} s: "
          f"{res['throughput']['tokens_per_second']:.0f} total tok/s, {res['throughput']['output_tokens_per_second']:.0f} "
          f"output tok/s ({out_tok} output tokens)", flush=True)
    save()
save()
