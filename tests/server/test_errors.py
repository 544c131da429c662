"""Every error case: the status, OpenAI's error shape and vLLM's error type; never a 500."""

import httpx
import openai
import pytest

from conftest import FIXTURES, Server

PROMPT = [1, 2, 3, 4]


def assert_error(r: httpx.Response, status: int, etype: str, *needles: str, param=None):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}, err
    assert err["type"] == etype and err["code"] == status, err
    for n in needles:
        assert n in err["message"], (n, err)
    if param is not None:
        assert err["param"] == param, err


def post(server, path, body=None, **kw):
    if body is not None:
        kw["json"] = body
    return httpx.post(server.base + path, timeout=30, **kw)


@pytest.mark.parametrize(
    "field,value,param,needle",
    [
        ("temperature", -1, "temperature", "-1"),
        ("top_p", 0, "top_p", "(0, 1]"),
        ("top_p", 1.5, "top_p", "1.5"),
        ("n", 0, "n", "got 0"),
        ("n", 100000, "n", "100000"),
        ("logprobs", 21, "logprobs", "21"),
        ("max_tokens", -5, "max_tokens", "-5"),
        ("max_tokens", 0, "max_tokens", "got 0"),
        ("presence_penalty", 2.5, "presence_penalty", "2.5"),
        ("top_k", -7, "top_k", "-7"),
        ("min_p", 2, "min_p", "2"),
        ("repetition_penalty", 0, "repetition_penalty", "0"),
        ("stop_token_ids", [9999], "stop_token_ids", "9999"),
        ("logit_bias", {"x": 1}, "logit_bias", "x"),
        ("suffix", "tail", "suffix", "suffix"),
        ("stream_options", {"include_usage": True}, "stream_options", "stream"),
    ],
)
def test_invalid_completion_params(tiny, field, value, param, needle):
    assert_error(post(tiny, "/v1/completions", {"model": "tiny", "prompt": PROMPT, field: value}), 400, "BadRequestError", needle, param=param)


def test_openai_client_raises_bad_request(tiny):
    with pytest.raises(openai.BadRequestError) as e:
        tiny.client().completions.create(model="tiny", prompt=PROMPT, temperature=-0.5)
    assert e.value.status_code == 400 and e.value.type == "BadRequestError" and e.value.param == "temperature"


def test_context_overflow_has_the_numbers(tiny):
    r = post(tiny, "/v1/completions", {"model": "tiny", "prompt": PROMPT, "max_tokens": 300})
    assert_error(r, 400, "BadRequestError", "256", "304", "4 in the messages", "300 in the completion")
    r = post(tiny, "/v1/completions", {"model": "tiny", "prompt": [1] * 256})
    assert_error(r, 400, "BadRequestError", "256 input tokens")


def test_prompt_errors(tiny):
    assert_error(post(tiny, "/v1/completions", {"model": "tiny", "prompt": []}), 400, "BadRequestError")
    assert_error(post(tiny, "/v1/completions", {"model": "tiny", "prompt": [1, 600]}), 400, "BadRequestError", "600")
    assert_error(post(tiny, "/v1/completions", {"model": "tiny", "prompt": [-1]}), 400, "BadRequestError")
    assert_error(post(tiny, "/v1/completions", {"model": "tiny"}), 400, "BadRequestError", "prompt")
    # The tiny model has no tokenizer: text is a clear 400, not a 500.
    assert_error(post(tiny, "/v1/completions", {"model": "tiny", "prompt": "hi"}), 400, "BadRequestError", "tokenizer")
    msgs = [{"role": "user", "content": "hi"}]
    assert_error(post(tiny, "/v1/chat/completions", {"model": "tiny", "messages": msgs}), 400, "BadRequestError")


def test_malformed_bodies(tiny):
    h = {"content-type": "application/json"}
    for raw in [b"{", b"not json", b"[1, 2]", b"", b'{"prompt": [1,2,3], "max_tokens": }']:
        assert_error(post(tiny, "/v1/completions", content=raw, headers=h), 400, "BadRequestError")
    assert_error(post(tiny, "/v1/completions", content=b'{"prompt": "\xff\xfe"}', headers=h), 400, "BadRequestError")
    assert_error(post(tiny, "/v1/completions", content=b'{"prompt": "\\ud800"}', headers=h), 400, "BadRequestError")


def test_wrong_types(tiny):
    for body, param in [
        ({"prompt": PROMPT, "temperature": "hot"}, "temperature"),
        ({"prompt": PROMPT, "n": 1.5}, "n"),
        ({"prompt": PROMPT, "stream": "yes"}, "stream"),
        ({"prompt": {"a": 1}}, "prompt"),
        ({"prompt": PROMPT, "stop": 5}, "stop"),
        ({"prompt": PROMPT, "max_tokens": 1e30}, "max_tokens"),
    ]:
        assert_error(post(tiny, "/v1/completions", body), 400, "BadRequestError", param=param)


def test_chat_errors(text):
    ok = [{"role": "user", "content": "hi"}]
    cases = [
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"content": "hi"}]}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages"),
        ({"messages": [{"role": "user"}]}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages"),
        ({"messages": ok, "top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({"messages": ok, "top_logprobs": 2}, "top_logprobs"),
        ({"messages": ok, "max_completion_tokens": -1}, "max_tokens"),
        ({"messages": ok, "response_format": {"type": "json_object"}}, "response_format"),
        ({"messages": ok, "max_tokens": 100000}, "max_tokens"),
    ]
    for body, param in cases:
        assert_error(post(text, "/v1/chat/completions", {"model": "text", **body}), 400, "BadRequestError", param=param)
    with pytest.raises(openai.BadRequestError):
        text.client().chat.completions.create(model="text", messages=[])


def test_unknown_model_is_404(tiny):
    with pytest.raises(openai.NotFoundError) as e:
        tiny.client().completions.create(model="gpt-5", prompt=PROMPT)
    assert e.value.status_code == 404 and e.value.type == "NotFoundError" and "gpt-5" in str(e.value)


def test_unknown_route_and_method(tiny):
    assert_error(httpx.get(tiny.base + "/v1/nope"), 404, "NotFoundError")
    assert_error(httpx.get(tiny.base + "/v1/completions"), 405, "MethodNotAllowedError")


def test_body_too_large_is_413(tiny):
    big = b'{"prompt": "' + b"a" * (9 << 20) + b'"}'
    assert_error(post(tiny, "/v1/completions", content=big, headers={"content-type": "application/json"}), 413, "PayloadTooLargeError")


def test_api_key():
    s = Server(["--model", str(FIXTURES / "models" / "llama"), "--served-model-name", "tiny", "--api-key", "sekret"], "auth")
    try:
        body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 2}
        assert_error(post(s, "/v1/completions", body), 401, "AuthenticationError")
        assert_error(post(s, "/v1/completions", body, headers={"authorization": "Bearer nope"}), 401, "AuthenticationError")
        assert_error(httpx.get(s.base + "/v1/models"), 401, "AuthenticationError")
        with pytest.raises(openai.AuthenticationError):
            s.client(api_key="wrong").models.list()
        assert s.client(api_key="sekret").completions.create(**body).usage.completion_tokens <= 2
        assert httpx.get(s.base + "/health").status_code == 200  # only /v1 is guarded, as in vLLM
    finally:
        assert s.stop() == 0


def test_503_while_loading():
    s = Server(
        ["--model", str(FIXTURES / "models" / "llama"), "--served-model-name", "tiny"],
        "slow",
        env={"TESSERA_DEBUG_LOAD_DELAY_MS": "3000"},
        wait=False,
    )
    try:
        for _ in range(100):
            try:
                r = httpx.get(s.base + "/health", timeout=2)
                break
            except httpx.HTTPError:
                import time

                time.sleep(0.05)
        assert_error(r, 503, "ServiceUnavailableError")
        assert_error(post(s, "/v1/completions", {"prompt": PROMPT}), 503, "ServiceUnavailableError")
        s.wait_ready()
        assert post(s, "/v1/completions", {"prompt": PROMPT, "max_tokens": 1}).status_code == 200
    finally:
        assert s.stop() == 0


def test_bad_model_path_exits_nonzero(tmp_path):
    s = Server(["--model", str(tmp_path / "missing")], "missing", wait=False)
    assert s.proc.wait(60) != 0
