"""Text and chat on a tiny model with SmolLM2's real tokenizer and chat template (dummy
weights: the text is nonsense, but deterministic): usage equals the token counts, streaming,
n, logprobs, stop strings, seeds, echo, /tokenize and /detokenize."""

import httpx
import pytest

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name a colour."},
]


def chat(server, **kw):
    kw.setdefault("model", "text")
    kw.setdefault("messages", MESSAGES)
    kw.setdefault("max_tokens", 12)
    kw.setdefault("temperature", 0)
    extra = {"ignore_eos": True, "return_token_ids": True, **kw.pop("extra_body", {})}
    return server.client().chat.completions.create(extra_body=extra, **kw)


def tokenize(server, **body):
    r = httpx.post(server.base + "/tokenize", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_completion_usage_matches_tokenizer(text):
    prompt = "The quick brown fox jumps over the lazy dog"
    n = tokenize(text, prompt=prompt)["count"]
    r = text.client().completions.create(model="text", prompt=prompt, max_tokens=5, temperature=0, extra_body={"ignore_eos": True})
    assert r.usage.prompt_tokens == n and r.usage.completion_tokens == 5 and r.usage.total_tokens == n + 5
    assert isinstance(r.choices[0].text, str)


def test_chat_shape_and_usage(text):
    r = chat(text)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == "text"
    (c,) = r.choices
    assert c.message.role == "assistant" and isinstance(c.message.content, str)
    assert c.finish_reason == "length"
    n = tokenize(text, messages=MESSAGES)["count"]
    assert r.usage.prompt_tokens == n
    assert r.usage.completion_tokens == len(c.model_extra["token_ids"]) == 12
    detok = httpx.post(text.base + "/detokenize", json={"tokens": c.model_extra["token_ids"]}).json()["prompt"]
    assert detok == c.message.content or c.message.content in detok


def test_chat_stream_equals_whole(text):
    whole = chat(text).choices[0].message.content
    chunks = list(chat(text, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.delta.content or "" for ch in chunks for c in ch.choices)
    assert content == whole
    assert [c.finish_reason for ch in chunks for c in ch.choices if c.finish_reason] == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert all(ch.usage is None for ch in chunks[:-1])


def test_chat_n2_seeded(text):
    r = chat(text, n=2, temperature=1.0, seed=3)
    assert sorted(c.index for c in r.choices) == [0, 1]
    assert r.usage.completion_tokens == 24
    again = chat(text, n=2, temperature=1.0, seed=3)
    assert [c.message.content for c in r.choices] == [c.message.content for c in again.choices]


def test_chat_logprobs(text):
    r = chat(text, logprobs=True, top_logprobs=2, max_tokens=4)
    content = r.choices[0].logprobs.content
    assert len(content) == 4
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 2
        assert t.bytes == list(t.token.encode())
        assert t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob
        assert t.logprob == pytest.approx(t.top_logprobs[0].logprob)  # greedy
    r = chat(text, logprobs=False, max_tokens=2)
    assert r.choices[0].logprobs is None


def test_stop_string(text):
    base = chat(text, max_tokens=24, extra_body={"skip_special_tokens": False}).choices[0].message.content
    # A stop string taken from the middle of the greedy text ends it there.
    stop = next((base[i : i + 3] for i in range(4, len(base) - 3) if base[i : i + 3].strip() == base[i : i + 3]), None)
    if not stop:
        pytest.skip(f"no usable stop string in {base!r}")
    r = chat(text, max_tokens=24, stop=[stop], extra_body={"skip_special_tokens": False})
    c = r.choices[0]
    assert c.message.content == base[: base.index(stop)]
    assert c.finish_reason == "stop" and c.model_extra["stop_reason"] == stop


def test_seed_reproducible_text(text):
    kw = dict(prompt="Once upon a time", max_tokens=10, temperature=1.0, extra_body={"ignore_eos": True})
    a = text.client().completions.create(model="text", seed=42, **kw).choices[0].text
    b = text.client().completions.create(model="text", seed=42, **kw).choices[0].text
    assert a == b


def test_echo(text):
    r = text.client().completions.create(model="text", prompt="Hello there", max_tokens=3, temperature=0, echo=True)
    assert r.choices[0].text.startswith("Hello there")


def test_content_parts_and_kwargs(text):
    parts = [{"role": "user", "content": [{"type": "text", "text": "Name"}, {"type": "text", "text": "a colour."}]}]
    r = chat(text, messages=parts, max_tokens=2, extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    assert r.usage.prompt_tokens == tokenize(text, messages=[{"role": "user", "content": "Name\na colour."}])["count"]
    tool = [*MESSAGES, {"role": "assistant", "content": "Blue."}, {"role": "tool", "content": "ok", "tool_call_id": "1"}]
    assert chat(text, messages=tool, max_tokens=2).usage.completion_tokens == 2


def test_readme_example_shape(text):
    r = text.client().chat.completions.create(
        model="text", messages=[{"role": "user", "content": "What is the capital of France?"}], temperature=0.6, max_tokens=64
    )
    assert r.choices[0].finish_reason in ("stop", "length") and r.usage.completion_tokens <= 64
