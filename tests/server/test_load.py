"""Load and abuse (loopback only, bounded): 200 concurrent streaming requests of which 20% are
cut off mid-stream; afterwards nothing runs or waits, the KV cache is empty, the server still
answers, and every completed response equals the same request run alone (greedy)."""

import asyncio
import random
import time

import httpx
import openai

N_REQUESTS = 200
CUT_EVERY = 5  # every 5th request (20%) is cut off by the client
TIMEOUT_S = 240


def request(i: int) -> dict:
    rnd = random.Random(i)
    return {
        "model": "tiny",
        "prompt": [rnd.randrange(3, 512) for _ in range(rnd.randrange(4, 40))],
        "max_tokens": rnd.randrange(8, 33),
        "temperature": 0,
    }


async def run_one(client: openai.AsyncOpenAI, i: int):
    body = request(i)
    cut = i % CUT_EVERY == 0
    stream = await client.completions.create(
        stream=True, extra_body={"ignore_eos": True, "return_token_ids": True}, **body
    )
    ids, finish, chunks = [], None, 0
    async for ch in stream:
        for c in ch.choices:
            ids += c.model_extra.get("token_ids") or []
            finish = c.finish_reason or finish
        chunks += 1
        if cut and chunks >= 2:
            await stream.close()  # the client goes away mid-stream
            return i, None, None
    return i, ids, finish


async def run_all(base: str):
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="x", max_retries=0, timeout=TIMEOUT_S)
    try:
        return await asyncio.wait_for(asyncio.gather(*(run_one(client, i) for i in range(N_REQUESTS))), TIMEOUT_S)
    finally:
        await client.close()


def wait_idle(server, timeout=20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        m = server.metrics()
        idle = (m["vllm:num_requests_running"], m["vllm:num_requests_waiting"], m["vllm:kv_cache_usage_perc"]) == (0, 0, 0)
        if idle or time.monotonic() > deadline:
            return m
        time.sleep(0.1)


def test_concurrent_streams_with_disconnects(tiny):
    before = tiny.metrics()
    results = asyncio.run(run_all(tiny.base))
    m = wait_idle(tiny)
    assert m["vllm:num_requests_running"] == 0
    assert m["vllm:num_requests_waiting"] == 0
    assert m["vllm:kv_cache_usage_perc"] == 0
    print("preemptions during the load test:", m["vllm:num_preemptions_total"] - before["vllm:num_preemptions_total"])
    aborted = m['vllm:request_success_total{model_name="tiny",finished_reason="abort"}'] - before.get(
        'vllm:request_success_total{model_name="tiny",finished_reason="abort"}', 0
    )
    cut = [r for r in results if r[1] is None]
    assert len(cut) == N_REQUESTS // CUT_EVERY
    assert aborted <= len(cut)  # a cut request may have finished before the client left

    assert httpx.get(tiny.base + "/health").status_code == 200
    client = tiny.client()
    done = [r for r in results if r[1] is not None]
    assert len(done) == N_REQUESTS - len(cut)
    for i, ids, finish in done:
        body = request(i)
        assert finish == "length" and len(ids) == body["max_tokens"], (i, finish, len(ids))
        alone = client.completions.create(extra_body={"ignore_eos": True, "return_token_ids": True}, **body)
        assert alone.choices[0].model_extra["token_ids"] == ids, f"request {i} differs when run alone"


def test_disconnect_aborts_at_once(tiny):
    body = {"model": "tiny", "prompt": [5, 6, 7], "max_tokens": 240, "stream": True, "ignore_eos": True}
    before = tiny.metrics()
    key = 'vllm:request_success_total{model_name="tiny",finished_reason="abort"}'
    with httpx.stream("POST", tiny.base + "/v1/completions", json=body, timeout=30) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(3)]
        assert any(x.startswith("data: {") for x in got)
    m = wait_idle(tiny, timeout=5)
    assert m["vllm:num_requests_running"] == 0 and m["vllm:kv_cache_usage_perc"] == 0
    assert m[key] == before.get(key, 0) + 1
    assert m["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"] < 240


def test_non_streaming_disconnect_aborts(tiny):
    import json
    import socket

    key = 'vllm:request_success_total{model_name="tiny",finished_reason="abort"}'
    before = tiny.metrics().get(key, 0)
    body = json.dumps({"model": "tiny", "prompt": [5, 6, 7], "max_tokens": 240, "n": 32, "ignore_eos": True}).encode()
    head = f"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", tiny.port)) as s:
        s.sendall(head.encode() + body)
        time.sleep(0.1)
    m = wait_idle(tiny, timeout=10)
    assert m["vllm:num_requests_running"] == 0 and m["vllm:kv_cache_usage_perc"] == 0
    assert m[key] == before + 1, "the request ran to the end although its client left"
