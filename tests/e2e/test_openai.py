"""The official openai SDK (sync and async) against the suite through a real Envoy."""

from __future__ import annotations

import json
import time
import uuid

import httpx2 as httpx  # the HTTP client the openai SDK itself uses
import openai
import pytest
from tokenway.inference.v1 import inference_pb2
from google.protobuf import struct_pb2
from tokenway.v1 import chat_pb2

from tests.conftest import free_port, tokens_lasting
from tests.e2e.procs import create_key, start_envoy, start_orchestrator, tokenway

pytestmark = pytest.mark.e2e
MODEL = "tokenway-tiny"
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Describe the quick server."}]


def text_value(text: str) -> struct_pb2.Value:
    return struct_pb2.Value(string_value=text)


@pytest.fixture(scope="module")
def client(suite):
    return openai.OpenAI(base_url=suite.base_url, api_key=suite.api_key, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def aclient(suite):
    return openai.AsyncOpenAI(base_url=suite.base_url, api_key=suite.api_key, max_retries=0, timeout=120)


def _running(inference) -> int:
    return inference.GetLoad(inference_pb2.GetLoadRequest(), timeout=5).running


def _wait_running(inference, want: int, seconds: float = 30) -> int:
    """The engine's running count once it is `want` (polled: GetLoad is a snapshot published per engine step)."""
    deadline = time.monotonic() + seconds
    while (running := _running(inference)) != want and time.monotonic() < deadline:
        time.sleep(0.02)  # polling the engine's load with a deadline
    return running


def _wait_idle(inference, seconds: float = 30) -> int:
    return _wait_running(inference, 0, seconds)


def test_chat_completion_matches_the_grpc_answer(client, chat):
    resp = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=20, temperature=0)
    grpc_resp = chat.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(
        model=MODEL, messages=[chat_pb2.ChatRequestMessage(role=m["role"], content=text_value(m["content"])) for m in MESSAGES], max_tokens=20, temperature=0), timeout=60)
    assert resp.object == "chat.completion" and resp.model == MODEL
    assert resp.choices[0].index == 0 and resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == grpc_resp.choices[0].message.content
    assert resp.choices[0].finish_reason in ("stop", "length")
    assert resp.usage.prompt_tokens == grpc_resp.usage.prompt_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert isinstance(resp.created, int)


def test_chat_stream_arrives_chunk_by_chunk_while_the_engine_is_still_generating(client, inference):
    n = tokens_lasting(2)  # still generating when the first chunk is in and GetLoad asked
    unary = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=n, temperature=0,
                                           extra_body={"ignore_eos": True})
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=n, temperature=0, stream=True,
                                            stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    arrivals, parts, finish, usage = [], [], None, None
    for chunk in stream:
        arrivals.append(time.monotonic())
        if len(arrivals) == 1:
            # the first chunk is here and the generation is not over: it was not buffered
            assert _wait_running(inference, 1) == 1
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage
    assert len(arrivals) > 3 and arrivals[-1] > arrivals[0]
    assert "".join(parts) == unary.choices[0].message.content
    assert finish == "length" and usage.completion_tokens == n == unary.usage.completion_tokens


async def test_async_client_completes_and_streams(aclient):
    resp = await aclient.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8, temperature=0)
    stream = await aclient.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8, temperature=0,
                                                   stream=True, stream_options={"include_usage": True})
    text, usage = "", None
    async for chunk in stream:
        text += "".join(c.delta.content or "" for c in chunk.choices)
        usage = chunk.usage or usage
    assert text == resp.choices[0].message.content
    # the same counts (the second call may have reused the first one's prompt: cached_tokens may differ)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == \
        (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens)
    comp = await aclient.completions.create(model=MODEL, prompt="The quick model", max_tokens=5, temperature=0)
    assert comp.choices[0].text and comp.usage.completion_tokens <= 5


def test_completions_with_stop_as_a_string_or_a_list(client):
    base = client.completions.create(model=MODEL, prompt="The quick model", max_tokens=40, temperature=0,
                                     extra_body={"ignore_eos": True})
    text = base.choices[0].text
    stop = text[len(text) // 2:len(text) // 2 + 2]
    for form in (stop, [stop, "never-matches-zz"]):
        cut = client.completions.create(model=MODEL, prompt="The quick model", max_tokens=40, temperature=0, stop=form,
                                        extra_body={"ignore_eos": True})
        assert cut.choices[0].text == text[:text.find(stop)] and cut.choices[0].finish_reason == "stop"
    streamed = client.completions.create(model=MODEL, prompt="The quick model", max_tokens=40, temperature=0, stop=stop,
                                         stream=True, stream_options={"include_usage": True},
                                         extra_body={"ignore_eos": True})
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == text[:text.find(stop)]
    assert chunks[-1].usage.completion_tokens < 40


def test_a_repeated_prompt_reports_its_cached_tokens(client):
    """Prefix caching (on by default in both engines) shows in usage.prompt_tokens_details.cached_tokens."""
    long = [{"role": "user", "content": f"{uuid.uuid4().hex} " + "A long shared preamble about servers. " * 24}]
    first = client.chat.completions.create(model=MODEL, messages=long, max_tokens=2)
    again = client.chat.completions.create(model=MODEL, messages=long, max_tokens=2)
    assert first.usage.prompt_tokens == again.usage.prompt_tokens > 64
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert 0 < again.usage.prompt_tokens_details.cached_tokens < again.usage.prompt_tokens


def test_models_list_and_retrieve(client):
    assert [m.id for m in client.models.list()] == [MODEL]
    model = client.models.retrieve(MODEL)
    assert model.id == MODEL and model.object == "model" and model.owned_by == "tokenway"
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("gpt-nope")
    assert e.value.code == "MODEL_NOT_FOUND"


@pytest.mark.parametrize("kwargs, param", [({"temperature": 5.0}, "temperature"), ({"n": 99}, "n"),
                                           ({"messages": []}, "messages"), ({"max_tokens": 0}, "max_tokens")])
@pytest.mark.parametrize("stream", [False, True])
def test_bad_requests_raise_bad_request_error(client, kwargs, param, stream):
    args = {"model": MODEL, "messages": MESSAGES, **kwargs}
    with pytest.raises(openai.BadRequestError) as e:
        result = client.chat.completions.create(stream=stream, **args)
        list(result) if stream else None
    assert e.value.status_code == 400 and e.value.param == param and e.value.type == "invalid_request_error"


def test_unknown_model_raises_not_found(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-nope", messages=MESSAGES)
    assert e.value.code == "MODEL_NOT_FOUND" and e.value.param == "model"


def test_a_prompt_past_the_context_is_refused_by_size(client):
    """Under the edge's body limit (derived from the model: 1 MiB for the tiny one), the orchestrator refuses a
    prompt its length alone rules out, before tokenizing; past the limit, the edge answers 413 unparsed."""
    big = "lorem ipsum " * 70_000  # 840 KB
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": big}], max_tokens=4)
    assert e.value.code == "CONTEXT_LENGTH_EXCEEDED" and e.value.param == "messages"
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": big * 2}], max_tokens=4)
    assert e.value.status_code == 413 and e.value.body["code"] == "REQUEST_TOO_LARGE"


def test_edge_errors_are_openai_shaped(suite):
    with httpx.Client(base_url=suite.base_url, timeout=30, headers={"authorization": f"Bearer {suite.api_key}"}) as http:
        bad_json = http.post("/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
        assert bad_json.status_code == 400 and bad_json.json()["error"]["type"] == "invalid_request_error"
        unknown = http.post("/embeddings", json={"model": MODEL, "input": "x"})
        assert unknown.status_code == 404 and "error" in unknown.json()
        misrouted = http.post("/chat/completions", json={"model": MODEL, "stream": True,
                                                         "messages": [{"role": "user", "content": 'say "stream": false'}],
                                                         "max_tokens": 3})
        assert misrouted.headers["content-type"].startswith("text/event-stream")
        assert misrouted.text.startswith("data: ")


def test_client_disconnect_frees_the_engine_slot(suite, inference):
    assert _wait_idle(inference) == 0
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 1800, "ignore_eos": True, "stream": True}
    with httpx.Client(base_url=suite.base_url, timeout=60, headers={"authorization": f"Bearer {suite.api_key}"}) as http:
        with http.stream("POST", "/chat/completions", json=body) as resp:
            # keep the line iterator referenced: a dropped generator is closed, and httpx then closes the
            # connection, which is a disconnect of its own
            lines = resp.iter_lines()
            first = next(lines)
            assert first.startswith("data: ")
            assert _wait_running(inference, 1) == 1
    assert _wait_idle(inference) == 0


# --- an edge with API keys, a rate limit, a short request deadline, a small body limit and fault injection ---

@pytest.fixture(scope="module")
def strict(suite, tmp_path_factory):
    """An orchestrator with its own store and keys (rate-limited, scoped, revoked), behind its own Envoy."""
    port = free_port()
    env = dict(suite.env, TOKENWAY_ORCHESTRATOR_STORE=str(tmp_path_factory.mktemp("strict") / "tokenway.db"),
               TOKENWAY_ORCHESTRATOR_REQUEST_TIMEOUT_SECONDS="3")
    keys = {"test": create_key(env, "test"), "burst": create_key(env, "burst", "--rpm", "6", "--tpm", "100000"),
            "scoped": create_key(env, "scoped", "--models", "some-other-model"),
            "quota": create_key(env, "quota", "--quota", "50", "--quota-period", "day"),
            "revoked": create_key(env, "revoked")}
    tokenway(env, "keys", "revoke", "revoked")
    orch = start_orchestrator(suite, env, port)
    procs = [orch]
    try:
        envoy, rest = start_envoy(env, port, TOKENWAY_ENVOY_BUFFER_MB="2", TOKENWAY_ENVOY_FAULTS="1")
        procs.append(envoy)
        dead, dead_rest = start_envoy(env, free_port())
        procs.append(dead)
        yield {"url": f"http://127.0.0.1:{rest}/v1", "dead_url": f"http://127.0.0.1:{dead_rest}/v1", "keys": keys,
               "env": env}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def _client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60)


def test_missing_wrong_or_revoked_key_raises_authentication_error(strict):
    for key, code in [("sk-wrong", "INVALID_API_KEY"), (strict["keys"]["revoked"], "REVOKED_API_KEY")]:
        with pytest.raises(openai.AuthenticationError) as e:
            _client(strict["url"], key).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
        assert e.value.status_code == 401 and e.value.code == code
    missing = httpx.post(strict["url"] + "/chat/completions", json={"model": MODEL, "messages": MESSAGES}, timeout=30)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "MISSING_API_KEY"
    assert missing.json()["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        _client(strict["url"], "sk-wrong").models.list()
    assert _client(strict["url"], strict["keys"]["test"]).chat.completions.create(model=MODEL, messages=MESSAGES,
                                                                                 max_tokens=2).choices


def test_key_without_the_model_raises_permission_denied(strict):
    with pytest.raises(openai.PermissionDeniedError) as e:
        _client(strict["url"], strict["keys"]["scoped"]).chat.completions.create(model=MODEL, messages=MESSAGES,
                                                                                 max_tokens=2)
    assert e.value.code == "MODEL_NOT_ALLOWED"


def test_rate_limit_is_429_with_retry_after_and_openai_ratelimit_headers(strict):
    c = _client(strict["url"], strict["keys"]["burst"])
    ok = c.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=1)
    assert ok.headers["x-ratelimit-limit-requests"] == "6" and ok.headers["x-ratelimit-remaining-requests"] == "5"
    assert ok.headers["x-ratelimit-limit-tokens"] == "100000" and "x-ratelimit-reset-tokens" in ok.headers
    with pytest.raises(openai.RateLimitError) as e:  # 6 a minute: the next one in 10 s
        c.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1)
    r = e.value.response
    assert r.status_code == 429 and e.value.code == "REQUEST_RATE_LIMITED" and e.value.type == "rate_limit_error"
    assert 5 <= int(r.headers["retry-after"]) <= 10 and 5000 < int(r.headers["retry-after-ms"]) <= 10000
    assert r.headers["x-ratelimit-limit-requests"] == "6" and r.headers["x-ratelimit-remaining-requests"] == "5"
    assert r.headers["x-ratelimit-reset-requests"].endswith("s")


def test_quota_is_429_and_recorded(strict):
    c = _client(strict["url"], strict["keys"]["quota"])
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=100)
    assert e.value.code == "TOKEN_QUOTA_EXCEEDED" and "50 tokens per day" in e.value.message
    assert int(e.value.response.headers["retry-after"]) > 0
    (rec,) = tokenway(strict["env"], "usage", "--key", "quota")
    assert rec["status"] == "rejected" and rec["key_name"] == "quota" and rec["completion_tokens"] == 0


def test_an_internal_failure_raises_internal_server_error(strict):
    with pytest.raises(openai.InternalServerError) as e:
        _client(strict["url"], strict["keys"]["test"]).chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=2, extra_headers={"x-envoy-fault-abort-request": "500"})
    assert e.value.status_code == 500 and e.value.body["type"] == "server_error"


def test_http_health_follows_the_orchestrators_readiness(suite, strict):
    assert httpx.get(f"http://127.0.0.1:{suite.rest}/health", timeout=10).status_code == 200
    down = httpx.get(strict["dead_url"].removesuffix("/v1") + "/health", timeout=10)
    assert down.status_code == 503 and down.json()["error"]["type"] == "service_unavailable"


def test_orchestrator_down_raises_service_unavailable(strict):
    with pytest.raises(openai.InternalServerError) as e:
        _client(strict["dead_url"], strict["keys"]["test"]).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
    assert e.value.status_code == 503 and e.value.body["type"] == "service_unavailable"


def test_body_over_the_edge_limit_is_413(strict):
    big = "x" * (3 * 1024 * 1024)
    with pytest.raises(openai.APIStatusError) as e:
        _client(strict["url"], strict["keys"]["test"]).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": big}])
    assert e.value.status_code == 413 and e.value.body["type"] == "invalid_request_error"


def test_failure_after_the_stream_started_is_raised_not_truncated(strict):
    """The strict orchestrator gives every request 3 s: a stream as long as the context allows fails mid-way
    (3 s leaves room for the first chunk on a busy core; the whole stream takes ~4 s on vLLM, ~20 s on
    the transformers engine, here)."""
    stream = _client(strict["url"], strict["keys"]["test"]).chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=2000, stream=True, extra_body={"ignore_eos": True})
    received = 0
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            received += len(chunk.choices)
    assert received > 0  # it had started
    assert e.value.body["code"] == "DEADLINE_EXCEEDED", json.dumps(e.value.body)
