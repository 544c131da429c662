"""Schemathesis against /openapi.json (positive and negative examples, bounded): no 5xx."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import Server, make_text_model

MAX_EXAMPLES = int(os.environ.get("TESSERA_SCHEMATHESIS_EXAMPLES", "50"))


def test_no_server_errors(tmp_path):
    model = make_text_model(tmp_path / "model")
    # A short context keeps every generated request cheap (n up to 128 x at most 64 tokens).
    s = Server([str(model), "--load-format", "dummy", "--served-model-name", "text", "--max-model-len", "64"], "schemathesis")
    try:
        st = Path(sys.executable).with_name("st")
        cmd = [
            str(st), "run", s.base + "/openapi.json",
            "--checks", "not_a_server_error",
            "--max-examples", str(MAX_EXAMPLES),
            "--phases", "examples,coverage,fuzzing",
            "--mode", "all",
            "--workers", "1",
            "--seed", "1",
            "--request-timeout", "60",
            "--suppress-health-check", "all",
            "--generation-database", "none",
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=420, cwd=tmp_path)
        print(out.stdout[-1500:])
        assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:] + s.logs()
        assert s.proc.poll() is None, s.logs()
    finally:
        assert s.stop() == 0, s.logs()
