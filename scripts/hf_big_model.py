"""A full-size SmolLM3-3B-config model with random weights, for GPU model parity (run on the
GPU machine): builds it on the GPU from CONFIG (initializer_range 0.04, so greedy margins are
not razor-thin), saves it as bf16 safetensors in OUT_DIR (~6.2 GB), and writes
OUT_DIR/reference.json in the fixtures' format: for each case the f32 last-position logits
and 8 greedy tokens of HF in float32 (from the same bf16-valued weights, upcast), their
top-1/top-2 margins (each case's prompt is the widest-margin one of 16 random prompts), and HF-in-bf16's own distance from that f32 reference (`hf_bf16_err`,
max |diff| / logit range) and first greedy token (`hf_bf16_first`).

    python3 scripts/hf_big_model.py CONFIG_JSON OUT_DIR
"""
import json
import os
import shutil
import sys
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM

cfg_path, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
shutil.copy(cfg_path, os.path.join(out, "config.json"))
config = AutoConfig.from_pretrained(out)
config.initializer_range = 0.04
t0 = time.time()
torch.manual_seed(1234)
with torch.device("cuda"):
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
model.save_pretrained(out, safe_serialization=True)
shutil.copy(cfg_path, os.path.join(out, "config.json"))  # keep the original (initializer_range aside)
print(f"built and saved in {time.time() - t0:.1f}s", flush=True)

g = torch.Generator().manual_seed(7)
lengths = [("len7", 7), ("len130", 130)]


def greedy(m, ids, steps):
    ids = list(ids)
    toks, margins, first = [], [], None
    with torch.no_grad():
        for _ in range(steps):
            logits = m(torch.tensor([ids], device="cuda")).logits[0, -1].float()
            if first is None:
                first = logits.cpu()
            top = torch.topk(logits, 2)
            toks.append(int(top.indices[0]))
            margins.append(float(top.values[0] - top.values[1]))
            ids.append(toks[-1])
    return toks, margins, first


# Random weights give near-ties among 128k logits; a bf16 engine's first token is only
# decidable where the f32 top-1/top-2 margin is well above bf16's logit error (~5e-2 of the
# range). Of 16 random prompts per length, keep the one with the widest first-step margin.
model = model.float()
prompts = {}
with torch.no_grad():
    for name, n in lengths:
        cands = [torch.randint(0, config.vocab_size, (n,), generator=g).tolist() for _ in range(16)]
        best = max(cands, key=lambda p: greedy(model, p, 1)[1][0])
        prompts[name] = best
ref = {"architecture": "SmolLM3ForCausalLM", "note": "random weights (bf16 values), f32 reference on " + torch.cuda.get_device_name(0),
       "cases": []}
for name, _ in lengths:
    toks, margins, logits = greedy(model, prompts[name], 8)
    ref["cases"].append({"name": name, "prompt_token_ids": prompts[name], "last_logits": logits.tolist(),
                         "greedy_token_ids": toks, "greedy_margins": margins})
model = model.to(torch.bfloat16)
for c in ref["cases"]:
    toks, _, logits = greedy(model, c["prompt_token_ids"], 1)
    want = torch.tensor(c["last_logits"])
    rng = float(want.max() - want.min())
    c["hf_bf16_err"] = float((logits - want).abs().max()) / rng
    c["hf_bf16_first"] = toks[0]
    print(f"{c['name']}: greedy {c['greedy_token_ids']}, first margin {c['greedy_margins'][0]:.3f} "
          f"({c['greedy_margins'][0] / rng:.2e} of the range), min margin {min(c['greedy_margins']):.3f}, logit range {rng:.2f}, "
          f"HF bf16 err {c['hf_bf16_err']:.2e}, HF bf16 first token {toks[0]}", flush=True)
json.dump(ref, open(os.path.join(out, "reference.json"), "w"))
print(f"reference written in {time.time() - t0:.1f}s total", flush=True)
