"""Completions on the tiny fixture model with token-id prompts: shapes, usage, streaming, n,
logprobs, seeds, stop tokens, several prompts, /v1/models, /version, /metrics, /openapi.json."""

import httpx
import pytest

PROMPT = [1, 17, 42, 99, 250, 3, 77]


def complete(client, **kw):
    kw.setdefault("model", "tiny")
    kw.setdefault("prompt", PROMPT)
    kw.setdefault("max_tokens", 8)
    kw.setdefault("temperature", 0)
    extra = {"return_token_ids": True, "ignore_eos": True, **kw.pop("extra_body", {})}
    return client.completions.create(extra_body=extra, **kw)


def test_models_version_openapi(tiny):
    models = tiny.client().models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert models.data[0].model_extra["max_model_len"] == 256
    assert httpx.get(tiny.base + "/version").json()["version"]
    doc = httpx.get(tiny.base + "/openapi.json").json()
    assert "/v1/chat/completions" in doc["paths"]


def test_completion_shape_and_usage(tiny):
    r = complete(tiny.client())
    assert r.object == "text_completion" and r.model == "tiny" and r.id.startswith("cmpl-")
    (c,) = r.choices
    assert c.index == 0 and c.finish_reason == "length"
    ids = c.model_extra["token_ids"]
    assert len(ids) == 8 and all(0 <= t < 512 for t in ids)
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (len(PROMPT), 8, len(PROMPT) + 8)


def test_greedy_is_deterministic(tiny):
    a = complete(tiny.client()).choices[0].model_extra["token_ids"]
    b = complete(tiny.client()).choices[0].model_extra["token_ids"]
    assert a == b


def test_stream_equals_whole(tiny):
    whole = complete(tiny.client(), max_tokens=12).choices[0].model_extra["token_ids"]
    chunks = list(complete(tiny.client(), max_tokens=12, stream=True, stream_options={"include_usage": True}))
    ids = [t for ch in chunks for c in ch.choices for t in (c.model_extra.get("token_ids") or [])]
    assert ids == whole
    finals = [c.finish_reason for ch in chunks for c in ch.choices if c.finish_reason]
    assert finals == ["length"]
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and (usage.prompt_tokens, usage.completion_tokens) == (len(PROMPT), 12)


def test_raw_sse_ends_with_done(tiny):
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 3, "stream": True}
    with httpx.stream("POST", tiny.base + "/v1/completions", json=body, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) >= 2


def test_n2_and_usage(tiny):
    r = complete(tiny.client(), n=2, temperature=1.0, seed=5, max_tokens=6)
    assert sorted(c.index for c in r.choices) == [0, 1]
    assert r.usage.prompt_tokens == len(PROMPT)
    assert r.usage.completion_tokens == sum(len(c.model_extra["token_ids"]) for c in r.choices) == 12


def test_several_prompts(tiny):
    r = complete(tiny.client(), prompt=[[1, 2, 3], [4, 5, 6, 7]], max_tokens=4, n=2)
    assert sorted(c.index for c in r.choices) == [0, 1, 2, 3]
    assert r.usage.prompt_tokens == 7 and r.usage.completion_tokens == 16
    alone = complete(tiny.client(), prompt=[4, 5, 6, 7], max_tokens=4).choices[0].model_extra["token_ids"]
    assert next(c for c in r.choices if c.index == 2).model_extra["token_ids"] == alone


def test_logprobs(tiny):
    r = complete(tiny.client(), logprobs=3, max_tokens=5)
    lp = r.choices[0].logprobs
    ids = r.choices[0].model_extra["token_ids"]
    assert lp.tokens == [f"token_id:{t}" for t in ids]
    assert len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 5
    for chosen, top, tok in zip(lp.token_logprobs, lp.top_logprobs, lp.tokens):
        assert chosen <= 0 and 3 <= len(top) <= 4
        assert top[tok] == pytest.approx(chosen) and chosen == pytest.approx(max(top.values()))  # greedy


def test_seed_reproducible(tiny):
    kw = dict(temperature=1.0, max_tokens=16)
    a = complete(tiny.client(), seed=123, **kw).choices[0].model_extra["token_ids"]
    b = complete(tiny.client(), seed=123, **kw).choices[0].model_extra["token_ids"]
    c = complete(tiny.client(), seed=124, **kw).choices[0].model_extra["token_ids"]
    assert a == b and a != c


def test_stop_token_ids(tiny):
    ids = complete(tiny.client(), max_tokens=10).choices[0].model_extra["token_ids"]
    stop = ids[4]
    r = complete(tiny.client(), max_tokens=10, extra_body={"stop_token_ids": [stop]})
    c = r.choices[0]
    first = ids.index(stop)
    assert c.model_extra["token_ids"] == ids[: first + 1]
    assert c.finish_reason == "stop" and c.model_extra["stop_reason"] == stop
    assert r.usage.completion_tokens == first + 1


def test_max_tokens_default_fills_context(tiny):
    # Chat-style default (no max_tokens) is limited by max_model_len; completions default to 16.
    r = tiny.client().completions.create(model="tiny", prompt=PROMPT, temperature=0, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 16


def test_metrics_names(tiny):
    complete(tiny.client())
    m = tiny.metrics()
    for name in [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:num_preemptions_total",
        "vllm:prefix_cache_hits_total",
        "vllm:prefix_cache_queries_total",
        "vllm:time_to_first_token_seconds_count",
        "vllm:inter_token_latency_seconds_count",
        "vllm:e2e_request_latency_seconds_count",
    ]:
        assert name in m, name
    assert m["vllm:generation_tokens_total"] >= 8 and m["vllm:e2e_request_latency_seconds_count"] >= 1
