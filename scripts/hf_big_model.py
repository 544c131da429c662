"""A full-size SmolLM3-3B-config model with random weights, for GPU model parity (run on the
GPU machine): builds it on the GPU from CONFIG (initializer_range 0.04, so greedy margins are
not razor-thin), saves it as bf16 safetensors in OUT_DIR (~6.2 GB), and writes
OUT_DIR/reference.json in the fixtures' format: for each case the f32 last-position logits
and 8 greedy tokens of HF in float32 (from the same bf16-valued weights, upcast), their
top-1/top-2 margins, and HF-in-bf16's own distance from that f32 reference (`hf_bf16_err`,
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
cases = [("len7", 7), ("len130", 130)]
prompts = {n: torch.randint(0, config.vocab_size, (l,), generator=g).tolist() for n, l in cases}


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


bf16 = {}
for name, _ in cases:
    toks, _, logits = greedy(model, prompts[name], 1)
    bf16[name] = (toks[0], logits)
model = model.float()
ref = {"architecture": "SmolLM3ForCausalLM", "note": "random weights (bf16 values), f32 reference on " + torch.cuda.get_device_name(0),
       "cases": []}
for name, _ in cases:
    toks, margins, logits = greedy(model, prompts[name], 8)
    rng = float(logits.max() - logits.min())
    hf_err = float((bf16[name][1] - logits).abs().max()) / rng
    ref["cases"].append({"name": name, "prompt_token_ids": prompts[name], "last_logits": logits.tolist(),
                         "greedy_token_ids": toks, "greedy_margins": margins,
                         "hf_bf16_err": hf_err, "hf_bf16_first": bf16[name][0]})
    print(f"{name}: greedy {toks}, min margin {min(margins):.3f}, logit range {rng:.2f}, HF bf16 err {hf_err:.2e}, "
          f"HF bf16 first token {bf16[name][0]}", flush=True)
json.dump(ref, open(os.path.join(out, "reference.json"), "w"))
print(f"reference written in {time.time() - t0:.1f}s total", flush=True)
