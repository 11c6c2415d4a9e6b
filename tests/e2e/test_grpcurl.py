"""grpcurl, knowing nothing but what server reflection tells it, against each of the three services.

Every answer is compared with what the suite answers to the same request made with the Python stubs.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from tokenway.inference.v1 import inference_pb2
from tokenway.tokenizer.v1 import tokenizer_pb2
from google.protobuf import struct_pb2
from tokenway.v1 import chat_pb2, model_pb2, model_pb2_grpc

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
GRPCURL = ROOT / ".tokenway/bin/grpcurl"
MODEL = "tokenway-tiny"
MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Tell me about the fast model server."}]
SERVICES = {  # the suite's port attribute -> the contract services that port serves
    "orchestrator": [chat_pb2.DESCRIPTOR.services_by_name["ChatService"],
                     model_pb2.DESCRIPTOR.services_by_name["ModelService"]],
    "tokenizer": [tokenizer_pb2.DESCRIPTOR.services_by_name["TokenizerService"]],
    "inference": [inference_pb2.DESCRIPTOR.services_by_name["InferenceService"]],
}


def text_value(text: str) -> struct_pb2.Value:
    return struct_pb2.Value(string_value=text)


def grpcurl(port: int, *args: str, data: object | None = None, stdin: str | None = None,
            defaults: bool = False, key: str = "", check: bool = True) -> subprocess.CompletedProcess:
    """Runs grpcurl in plaintext against 127.0.0.1:port; `data` is sent as JSON with -d, `stdin` with -d @;
    `key`: sent as `authorization: Bearer <key>`."""
    cmd = [str(GRPCURL), "-plaintext", "-max-time", "60"] + (["-emit-defaults"] if defaults else [])
    if key:
        cmd += ["-H", f"authorization: Bearer {key}"]
    if data is not None:
        cmd += ["-d", json.dumps(data)]
    elif stdin is not None:
        cmd += ["-d", "@"]
    cmd += [f"127.0.0.1:{port}", *args]
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=90)
    assert p.returncode == 0 or not check, f"{' '.join(cmd)}\n{p.stdout}\n{p.stderr}"
    return p


def messages(out: str) -> list[dict]:
    """The JSON messages grpcurl prints one after the other."""
    decoder, found, pos = json.JSONDecoder(), [], 0
    while (pos := _skip_ws(out, pos)) < len(out):
        obj, pos = decoder.raw_decode(out, pos)
        found.append(obj)
    return found


def _skip_ws(s: str, pos: int) -> int:
    while pos < len(s) and s[pos].isspace():
        pos += 1
    return pos


def call(port: int, method: str, data: object | None = None, *, stdin: str | None = None,
         defaults: bool = False, key: str = "") -> list[dict]:
    return messages(grpcurl(port, method, data=data, stdin=stdin, defaults=defaults, key=key).stdout)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_list_shows_the_services_health_and_reflection(suite, name):
    listed = set(grpcurl(getattr(suite, name), "list").stdout.split())
    assert {s.full_name for s in SERVICES[name]} | {"grpc.health.v1.Health"} <= listed
    assert any(s.startswith("grpc.reflection.") for s in listed), listed


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_describe_shows_every_rpc_of_the_contract(suite, name):
    for service in SERVICES[name]:
        out = grpcurl(getattr(suite, name), "describe", service.full_name).stdout
        assert f"{service.full_name} is a service:" in out
        for m in service.methods:
            stream_in = "stream " if m.client_streaming else ""
            stream_out = "stream " if m.server_streaming else ""
            assert (f"rpc {m.name} ( {stream_in}.{m.input_type.full_name} ) "
                    f"returns ( {stream_out}.{m.output_type.full_name} )") in out


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_health_check_is_serving_for_the_server_and_each_service(suite, name):
    for service in ["", *(s.full_name for s in SERVICES[name])]:
        (resp,) = call(getattr(suite, name), "grpc.health.v1.Health/Check", {"service": service})
        assert resp == {"status": "SERVING"}, service


# orchestrator


def test_list_models_equals_the_stub(suite):
    (resp,) = call(suite.orchestrator, "tokenway.v1.ModelService/ListModels", {}, defaults=True, key=suite.api_key)
    with suite.channel(suite.orchestrator) as ch:
        want = model_pb2_grpc.ModelServiceStub(ch).ListModels(model_pb2.ListModelsRequest(), timeout=10)
    assert [m["id"] for m in resp["data"]] == [m.id for m in want.data] == [MODEL]
    assert resp["data"][0]["max_model_len"] == want.data[0].max_model_len


def _chat_request(**kw) -> dict:
    return {"model": MODEL, "messages": MESSAGES, "temperature": 0, **kw}


def _stub_chat(chat, **kw) -> chat_pb2.CreateChatCompletionResponse:
    return chat.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(
        model=MODEL, messages=[chat_pb2.ChatRequestMessage(role=m["role"], content=text_value(m["content"])) for m in MESSAGES], temperature=0, **kw), timeout=60)


def test_create_chat_completion_equals_the_stub(suite, chat):
    (resp,) = call(suite.orchestrator, "tokenway.v1.ChatService/CreateChatCompletion",
                   _chat_request(max_tokens=12), defaults=True, key=suite.api_key)
    want = _stub_chat(chat, max_tokens=12)
    assert resp["object"] == "chat.completion" and resp["id"].startswith("chatcmpl-")
    (choice,) = resp["choices"]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == want.choices[0].message.content
    assert choice["finish_reason"] == want.choices[0].finish_reason
    cached = resp["usage"].pop("prompt_tokens_details")["cached_tokens"]  # earlier calls may have cached the prompt
    assert resp["usage"] == {"prompt_tokens": want.usage.prompt_tokens, "completion_tokens": want.usage.completion_tokens,
                             "total_tokens": want.usage.total_tokens}
    assert 0 <= cached < want.usage.prompt_tokens


def test_stream_chat_completion_chunks_then_finish_reason_then_usage(suite, chat):
    chunks = call(suite.orchestrator, "tokenway.v1.ChatService/StreamChatCompletion",
                  _chat_request(max_tokens=32, ignore_eos=True, stream_options={"include_usage": True}), defaults=True,
                  key=suite.api_key)
    want = _stub_chat(chat, max_tokens=32, ignore_eos=True)
    assert len(chunks) >= 3
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    content = [c for c in chunks if c["choices"]]
    assert content[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(ch["delta"].get("content", "") for c in content for ch in c["choices"]) \
        == want.choices[0].message.content
    # only the last content chunk carries the finish reason
    assert [ch.get("finish_reason") for c in content for ch in c["choices"]][-1] == "length"
    assert all("finish_reason" not in ch for c in content[:-1] for ch in c["choices"])
    usage = chunks[-1]
    assert 0 <= usage["usage"].pop("prompt_tokens_details")["cached_tokens"] < want.usage.prompt_tokens
    assert usage["choices"] == [] and usage["usage"] == {
        "prompt_tokens": want.usage.prompt_tokens, "completion_tokens": 32, "total_tokens": want.usage.prompt_tokens + 32}
    assert all(c["usage"] is None for c in chunks[:-1])


# tokenizer


TEXT = "Tokenway streams tokens: naïve café, 日本語."


def test_tokenize_equals_the_stub(suite, tokenizer):
    (resp,) = call(suite.tokenizer, "tokenway.tokenizer.v1.TokenizerService/Tokenize",
                   {"texts": [TEXT, "second"], "add_special_tokens": False})
    want = tokenizer.Tokenize(tokenizer_pb2.TokenizeRequest(texts=[TEXT, "second"]), timeout=10)
    assert [e["token_ids"] for e in resp["encodings"]] == [list(e.token_ids) for e in want.encodings]
    assert all(resp["encodings"][i]["token_ids"] for i in range(2))


def test_detokenize_stream_from_stdin_gives_back_the_text(suite, tokenizer):
    ids = list(tokenizer.Tokenize(tokenizer_pb2.TokenizeRequest(texts=[TEXT]), timeout=10).encodings[0].token_ids)
    half = len(ids) // 2
    stdin = "\n".join(json.dumps(m) for m in [
        {"start": {"skip_special_tokens": True}},
        {"chunk": {"token_ids": ids[:half]}},
        {"chunk": {"token_ids": ids[half:], "last": True}},
    ])
    resps = call(suite.tokenizer, "tokenway.tokenizer.v1.TokenizerService/DetokenizeStream", stdin=stdin, defaults=True)
    assert len(resps) == 2  # one answer per chunk
    assert "".join(r["text"] for r in resps) == TEXT
    assert [r["num_tokens"] for r in resps] == [half, len(ids)]
    assert sum(len(r["token_texts"]) for r in resps) == len(ids)


# inference


def test_get_model_info_equals_the_stub(suite, inference):
    (resp,) = call(suite.inference, "tokenway.inference.v1.InferenceService/GetModelInfo", {}, defaults=True)
    want = inference.GetModelInfo(inference_pb2.GetModelInfoRequest(), timeout=10)
    assert resp["model_name"] == want.model_name
    assert resp["max_context_length"] == want.max_context_length > 0
    assert resp["vocab_size"] == want.vocab_size > 0
    assert resp["eos_token_ids"] == list(want.eos_token_ids)
    assert resp["engine"] == want.engine


def test_generate_streams_token_ids_up_to_max_tokens(suite, inference, tokenizer):
    prompt = list(tokenizer.Tokenize(tokenizer_pb2.TokenizeRequest(texts=[TEXT]), timeout=10).encodings[0].token_ids)
    request = {"prompt_token_ids": prompt, "sampling": {"temperature": 0},
               "stopping": {"max_tokens": 6, "ignore_eos": True}}
    resps = call(suite.inference, "tokenway.inference.v1.InferenceService/Generate",
                 {"request_id": f"grpcurl-{uuid.uuid4().hex[:8]}", **request}, defaults=True)
    assert resps[0]["prompt_info"]["prompt_tokens"] == len(prompt)
    assert [r["finish_reason"] for r in resps] == ["FINISH_REASON_UNSPECIFIED"] * (len(resps) - 1) + ["FINISH_REASON_LENGTH"]
    counts = [r["completion_tokens"] for r in resps]
    assert counts == sorted(counts) and counts[-1] == 6
    ids = [t for r in resps for t in r["token_ids"]]
    want = inference.Generate(inference_pb2.GenerateRequest(request_id=f"stub-{uuid.uuid4().hex[:8]}", **request),
                              timeout=60)
    assert ids == [t for r in want for t in r.token_ids] and len(ids) == 6
