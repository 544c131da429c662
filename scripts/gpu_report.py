"""The GPU suite's report (scripts/gpu-suite.sh runs it last): reads the step logs in LOG_DIR
and prints the parity tables, the benchmark comparison with HF transformers on the same card,
roofline fractions and the top kernels; exit 1 if any step or check failed.

    python3 scripts/gpu_report.py LOG_DIR
"""
import collections
import json
import os
import re
import sys

log = sys.argv[1]
fails = []


def read(name):
    p = os.path.join(log, name)
    return open(p, errors="replace").read() if os.path.exists(p) else None


def last_json(name):
    text = read(name)
    if not text:
        return None
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


print("\n================ GPU suite ================")
print(read("device.txt").strip())
steps = {}
for line in read("steps.txt").splitlines():
    m = re.match(r"(\S+) rc=(\d+) secs=(\d+)", line)
    if m:
        steps[m.group(1)] = (int(m.group(2)), int(m.group(3)))
for name, (rc, _) in steps.items():
    if rc != 0:
        fails.append(f"step {name} exited {rc} (see {log}/{name}.log)")

# ---- parity -------------------------------------------------------------------------
ops_log = "\n".join(t for t in (read("cuda_ops.log"), read("cuda_fused.log"), read("cuda_batch.log"), read("cuda_att256.log")) if t is not None) or None
if ops_log is not None:
    ops = collections.OrderedDict()
    for line in ops_log.splitlines():
        m = re.match(r"PARITY (\S+) (\S+) \[(.*)\] (.*)", line.strip())
        if not m:
            continue
        op, dtype, _case, rest = m.groups()
        rel = re.search(r"rel=(\S+)", rest)
        r = ops.setdefault((op, dtype), [0, 0, 0.0])
        r[0] += 1
        if rest.endswith("FAIL"):
            r[1] += 1
            fails.append(line.strip())
        if rel:
            try:
                r[2] = max(r[2], float(rel.group(1)))
            except ValueError:
                r[2] = float("inf")
    print(f"\nop parity: {sum(v[0] for v in ops.values())} cases, {sum(v[1] for v in ops.values())} failed")
    print(f"{'op':<22}{'dtype':<10}{'cases':>6}{'fail':>6}{'max rel err':>14}")
    for (op, dtype), (n, f, e) in ops.items():
        print(f"{op:<22}{dtype:<10}{n:>6}{f:>6}{e:>14.2e}")

for name in ("cuda_models", "big_model"):
    text = read(f"{name}.log")
    if text is None:
        continue
    models = [l.strip() for l in text.splitlines() if l.startswith("MODEL ")]
    print(f"\n{name}: {sum(l.endswith('ok') for l in models)}/{len(models)} cases ok")
    for l in models:
        if name == "big_model" or l.endswith("FAIL"):
            print("  " + l)
        if l.endswith("WARN"):
            print("  warn (bf16/f16 vs the f32 reference; HF parity below is the contract): " + l)
        elif not l.endswith("ok"):
            fails.append(l)
big_hf = read("big_model_hf.log")
if big_hf:
    print("  HF reference: " + " | ".join(l.strip() for l in big_hf.splitlines() if l.startswith("len") or "saved" in l))

hf = read("hf_parity.log")
if hf is not None:
    per = collections.OrderedDict()
    for l in hf.splitlines():
        f = l.split()
        if len(f) >= 8 and f[1] in ("bfloat16", "float16", "float32"):
            try:
                vals = [float(x) for x in f[3:7]]
            except ValueError:
                continue
            m = per.setdefault(f[1], [0, 0.0, 0.0, 0.0, 0.0])
            m[0] += 1
            for i in range(4):
                m[i + 1] = max(m[i + 1], vals[i])
        if l.startswith("  "):
            fails.append("hf_parity: " + l.strip())
    print("\nHF parity (tiny fixtures), max over cases (max |diff| / logit range; relative L2 vs HF):")
    print(f"  {'dtype':<10}{'cases':>6}{'hf-vs-f32ref':>14}{'ours-vs-f32ref':>16}{'ours-vs-hf':>12}{'l2(ours,hf)':>13}")
    for d, (n, a, b, c, l2) in per.items():
        print(f"  {d:<10}{n:>6}{a:>14.2e}{b:>16.2e}{c:>12.2e}{l2:>13.2e}")
    print("  " + next((l for l in hf.splitlines() if l.startswith("HF parity")), "(no HF parity result: see hf_parity.log)"))

eng = read("cuda_engine.log")
if eng is not None:
    for l in eng.splitlines():
        if l.startswith("ENGINE ") or l.startswith("test result:"):
            print("engine: " + l)

pf = read("cuda_prefetch.log")
if pf is not None:
    for l in pf.splitlines():
        if l.startswith("PREFETCH MISMATCH") or l.startswith("test result:"):
            print("prefetch: " + l)

cli = read("cli_generate.log")
if cli is not None:
    want = [323, 327, 91, 454, 67, 357, 448, 112]
    got = None
    for l in cli.splitlines():
        if l.startswith("{"):
            try:
                got = json.loads(l)["outputs"][0]["token_ids"]
            except (ValueError, KeyError, IndexError):
                pass
    ok = got == want
    print(f"cli generate --device cuda (llama fixture, f32): {got} {'== HF' if ok else '!= HF ' + str(want)}")
    if not ok:
        fails.append(f"cli generate: {got} vs {want}")
srv = read("serve.log")
if srv is not None:
    line = next((l for l in srv.splitlines() if l.startswith("{")), "")
    print("serve --device cuda: " + (line[:220] if line else "(no completion; see serve.log)"))
    if '"choices"' not in line:
        fails.append("serve --device cuda: no completion")

for name in ("cuda_ops", "cuda_fused", "cuda_batch", "cuda_att256", "cuda_models", "cuda_engine", "cuda_prefetch", "big_model"):
    text = read(f"{name}.log")
    if text is None:
        continue
    for m in re.finditer(r"---- (\S+) stdout ----\n(.*?)(?=\n---- |\nfailures:\n\s|\Z)", text, re.S):
        panic = [x for x in m.group(2).splitlines() if "panicked" in x or "assert" in x][:3]
        if panic:
            fails.append(f"{name}::{m.group(1)}: " + " | ".join(panic))

# ---- benchmarks ---------------------------------------------------------------------
roof = last_json("roofline.log") or (json.load(open(os.path.join(log, "roofline.json"))) if os.path.exists(os.path.join(log, "roofline.json")) else None)
lat = last_json("bench_latency.log")
thr = last_json("bench_throughput.log")
hfl = json.load(open(os.path.join(log, "hf_latency.json"))) if os.path.exists(os.path.join(log, "hf_latency.json")) else {}
hft = json.load(open(os.path.join(log, "hf_throughput.json"))) if os.path.exists(os.path.join(log, "hf_throughput.json")) else {}
if lat or thr:
    print("\nBenchmarks, SmolLM3-3B config, random bf16 weights, " + (roof or {}).get("gpu", "?"))
    if roof:
        wb = roof["weight_bytes"]
        mem_roof = roof["copy_bandwidth_gbs"] * 1e9 / wb
        flop_roof = roof["bf16_gemm_tflops"] * 1e12 / (2 * roof["params"])
        print(f"  card: copy {roof['copy_bandwidth_gbs']:.0f} GB/s, bf16 GEMM {roof['bf16_gemm_tflops']:.0f} TFLOP/s; "
              f"weights {wb / 1e9:.2f} GB -> decode roofline {mem_roof:.0f} tok/s, compute roofline {flop_roof:.0f} tok/s")
    print(f"  {'workload':<44}{'tessera':>12}{'HF':>12}{'ratio':>9}{'roofline':>10}")
    if lat:
        t_dec = lat["decode_tok_s"]
        t_e2e = lat["output_len"] / lat["avg_latency_s"]
        h = hfl.get("latency", {})
        h_e2e = h.get("decode_tok_s")
        frac = f"{t_dec / mem_roof:.0%}" if roof else "-"
        print(f"  {'latency 1x128/256: decode tok/s':<44}{t_dec:>12.1f}{'':>12}{'':>9}{frac:>10}")
        print(f"  {'latency 1x128/256: out tok / avg latency':<44}{t_e2e:>12.1f}"
              f"{(h_e2e or float('nan')):>12.1f}{(t_e2e / h_e2e if h_e2e else float('nan')):>8.1f}x{'':>10}")
        print(f"  {'latency 1x128/256: avg latency s':<44}{lat['avg_latency_s']:>12.3f}{h.get('avg_latency_s', float('nan')):>12.3f}")
        print(f"  {'latency: TTFT ms / per-token ms':<44}{lat['ttft_s'] * 1e3:>6.1f}/{lat['tpot_ms']:.2f}")
    if thr:
        h = hft.get("throughput", {})
        for key, label in (("tokens_per_second", "total tok/s"), ("output_tokens_per_second", "output tok/s"),
                           ("requests_per_second", "requests/s")):
            hv = h.get(key)
            frac = f"{thr['tokens_per_second'] / flop_roof:.0%}" if roof and key == "tokens_per_second" else ""
            print(f"  {'throughput 256x512/256: ' + label:<44}{thr[key]:>12.1f}{(hv or float('nan')):>12.1f}"
                  f"{(thr[key] / hv if hv else float('nan')):>8.1f}x{frac:>10}")
        print(f"  {'throughput: elapsed s / steps / preemptions':<44}{thr['elapsed_time']:>8.1f}/{thr['steps']}/{thr['preemptions']}"
              f"   (KV {thr['kv_blocks']} blocks x {thr['block_size']})")
for name in ("profile_decode", "profile_throughput"):
    text = read(f"{name}.log")
    if not text:
        continue
    rows = [l for l in text.splitlines() if l.startswith("PROFILE ")]
    print(f"\n{name}: top kernels (each launch timed alone; sync gaps included)")
    for l in rows[:14]:
        print("  " + l[8:])

print("\nsteps: " + "; ".join(f"{k} rc={v[0]} {v[1]}s" for k, v in steps.items()))
if fails:
    print(f"\nFAILURES ({len(fails)}):")
    for f in fails[:40]:
        print("  " + f[:300])
print("\nRESULT: " + ("PASS" if not fails else "FAIL") + f"   (full logs: {log})")
sys.exit(0 if not fails else 1)
