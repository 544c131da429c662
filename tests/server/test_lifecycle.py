"""Graceful shutdown: SIGTERM/SIGINT with a stream in flight lets it finish, stops
accepting, and exits 0; `tessera bench serve` runs against a live server."""

import json
import signal
import subprocess
import threading
import time

import httpx
import pytest

from conftest import BIN, FIXTURES, Server


def tiny_server(name):
    return Server(["--model", str(FIXTURES / "models" / "llama"), "--served-model-name", "tiny"], name)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_shutdown_finishes_in_flight(sig):
    s = tiny_server(f"shutdown-{sig.name}")
    body = {"model": "tiny", "prompt": [1, 2, 3], "max_tokens": 200, "stream": True, "ignore_eos": True}
    events: list[str] = []

    def consume():
        with httpx.stream("POST", s.base + "/v1/completions", json=body, timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(line)

    t = threading.Thread(target=consume)
    t.start()
    while not events:
        time.sleep(0.01)
    assert s.stop(sig) == 0, s.logs()
    t.join(30)
    assert events[-1] == "data: [DONE]"
    finals = [json.loads(e[6:]) for e in events[:-1]]
    assert any(c.get("finish_reason") for f in finals for c in f.get("choices", []))
    with pytest.raises(httpx.HTTPError):
        httpx.get(s.base + "/health", timeout=2)


def test_bench_serve(tiny):
    out = subprocess.run(
        [BIN, "bench", "serve", "--base-url", tiny.base, "--num-prompts", "12", "--request-rate", "50",
         "--input-len", "16", "--output-len", "8", "--max-token-id", "500", "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "Serving Benchmark Result" in out.stdout and "P99 TTFT (ms):" in out.stdout
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["completed"] == 12 and summary["failed"] == 0
    assert summary["total_output_tokens"] == 12 * 8 and summary["output_throughput"] > 0
