"""Fixtures for the `tessera serve` tests: real servers started on free loopback ports.

Models:
- `tiny`: the llama fixture (tests/fixtures/models/llama, real random weights, vocab 512, no
  tokenizer): prompts as token ids.
- `text`: a tiny llama config with SmolLM2's vocabulary (49152), dummy weights, and SmolLM2's
  real tokenizer and chat template: text prompts and chat, nonsense but deterministic text.
- `real`: the default model (SmolLM2-135M-Instruct Q4_1 GGUF; `tessera serve` without --model
  fetches it once), or TESSERA_REAL_MODEL; TESSERA_SKIP_REAL=1 skips these tests.

The binary is $TESSERA_BIN (scripts/test-server.sh builds it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
BIN = os.environ.get("TESSERA_BIN", str(ROOT / "target" / "debug" / "tessera"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running `tessera serve` child process."""

    def __init__(self, args: list[str], name: str, env: dict | None = None, wait: bool = True):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.name = name
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"tessera-serve-{name}-{self.port}.log", "w+")
        cmd = [BIN, "serve", *args, "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if httpx.get(self.base + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-5000:]

    def client(self, **kw) -> openai.OpenAI:
        kw.setdefault("api_key", "unused")
        return openai.OpenAI(base_url=self.base + "/v1", max_retries=0, timeout=120, **kw)

    def metrics(self) -> dict[str, float]:
        """Samples of /metrics without labels other than model_name, by metric name."""
        out: dict[str, float] = {}
        for line in httpx.get(self.base + "/metrics", timeout=10).text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, _, value = line.rpartition(" ")
            key = name.split("{")[0]
            if "le=" in name or "finished_reason=" in name:
                key = name
            out[key] = float(value)
        return out

    def stop(self, sig=signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"server did not stop within {timeout}s of {sig!r}:\n{self.logs()}")
        return self.proc.returncode


def make_text_model(dst: Path) -> Path:
    """A tiny llama with SmolLM2's vocabulary and tokenizer (dummy weights)."""
    cfg = json.loads((FIXTURES / "models" / "llama" / "config.json").read_text())
    cfg["vocab_size"] = 49152
    cfg["bos_token_id"] = 1
    cfg["eos_token_id"] = 2
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "config.json").write_text(json.dumps(cfg))
    (dst / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    for f in (FIXTURES / "tokenizers" / "smollm2").iterdir():
        if f.name != "cases.json":
            shutil.copy(f, dst / f.name)
    return dst


@pytest.fixture(scope="session")
def tiny():
    # A small KV cache (47 usable blocks of 16 tokens) so the load test also preempts.
    args = ["--model", str(FIXTURES / "models" / "llama"), "--served-model-name", "tiny", "--max-model-len", "256"]
    s = Server([*args, "--num-gpu-blocks-override", "48"], "tiny")
    yield s
    assert s.stop() == 0, s.logs()


@pytest.fixture(scope="session")
def text(tmp_path_factory):
    model = make_text_model(tmp_path_factory.mktemp("text-model"))
    s = Server([str(model), "--load-format", "dummy", "--served-model-name", "text", "--max-model-len", "512"], "text")
    yield s
    assert s.stop() == 0, s.logs()


def real_model_args() -> list[str] | None:
    """TESSERA_REAL_MODEL (a path or repo id), else the default model (no --model: tessera
    fetches SmolLM2-135M-Instruct once into its cache); TESSERA_SKIP_REAL=1 skips."""
    if os.environ.get("TESSERA_SKIP_REAL") == "1":
        return None
    path = os.environ.get("TESSERA_REAL_MODEL")
    return [path] if path else []


@pytest.fixture(scope="session")
def real():
    args = real_model_args()
    if args is None:
        pytest.skip("TESSERA_SKIP_REAL=1")
    s = Server([*args, "--served-model-name", "smollm2"], "real", wait=False)
    s.wait_ready(timeout=600)  # the first run may download the default model (98 MB)
    yield s
    assert s.stop() == 0, s.logs()
