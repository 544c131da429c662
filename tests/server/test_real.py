"""The real default model (SmolLM2-135M-Instruct): the README's example, usage numbers equal
to the token counts, streaming equal to the whole answer, stop strings, logprobs, seeds."""

import httpx
import pytest

Q = [{"role": "user", "content": "What is the capital of France?"}]


def test_readme_example(real):
    client = real.client()
    r = client.chat.completions.create(model="smollm2", messages=Q, temperature=0.6, max_tokens=512)
    c = r.choices[0]
    assert c.message.role == "assistant" and c.message.content.strip()
    assert c.finish_reason in ("stop", "length")
    n = httpx.post(real.base + "/tokenize", json={"messages": Q}).json()["count"]
    assert r.usage.prompt_tokens == n
    assert r.usage.total_tokens == n + r.usage.completion_tokens <= n + 512


def greedy(real, **kw):
    kw.setdefault("max_tokens", 24)
    kw.setdefault("temperature", 0)
    extra = {"return_token_ids": True, **kw.pop("extra_body", {})}
    return real.client().chat.completions.create(model="smollm2", messages=Q, extra_body=extra, **kw)


def test_usage_counts_tokens(real):
    r = greedy(real)
    c = r.choices[0]
    assert r.usage.completion_tokens == len(c.model_extra["token_ids"])
    if c.finish_reason == "stop":  # eos is generated but not shown
        assert c.model_extra["token_ids"][-1] == 2


def test_stream_equals_whole(real):
    whole = greedy(real).choices[0].message.content
    chunks = list(greedy(real, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.delta.content or "" for ch in chunks for c in ch.choices) == whole
    assert chunks[-1].usage.prompt_tokens > 0


def test_stop_string_and_logprobs(real):
    whole = greedy(real).choices[0].message.content
    words = whole.split()
    if len(words) < 3:
        pytest.skip(f"answer too short: {whole!r}")
    stop = " " + words[2]
    r = greedy(real, stop=[stop], logprobs=True, top_logprobs=3)
    c = r.choices[0]
    assert c.message.content == whole[: whole.index(stop)]
    assert c.finish_reason == "stop" and c.model_extra["stop_reason"] == stop
    assert all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in c.logprobs.content)


def test_seeded_sampling(real):
    kw = dict(temperature=0.8, max_tokens=16, n=2, seed=11)
    a = greedy(real, **kw)
    b = greedy(real, **kw)
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
