"""End to end through the orchestrator, with the three services as separate processes and the real model."""

from __future__ import annotations

import time

import grpc
import pytest
from tokenway.inference.v1 import inference_pb2
from google.protobuf import json_format, struct_pb2
from tokenway.tokenizer.v1 import tokenizer_pb2
from tokenway.v1 import chat_pb2, common_pb2, completion_pb2, model_pb2

from tokenway_common.errors import error_info

pytestmark = pytest.mark.integration
MODEL = "tokenway-tiny"


def text_value(text: str) -> struct_pb2.Value:
    return struct_pb2.Value(string_value=text)


def json_value(value) -> struct_pb2.Value:
    return json_format.ParseDict(value, struct_pb2.Value())


HELLO = [chat_pb2.ChatRequestMessage(role="system", content=text_value("You are terse.")),
         chat_pb2.ChatRequestMessage(role="user", content=text_value("Tell me about the fast model server."))]


def chat_request(cls=chat_pb2.CreateChatCompletionRequest, **kw):
    kw.setdefault("model", MODEL)
    kw.setdefault("messages", HELLO)
    return cls(**kw)


def stream_text(chunks) -> dict[int, str]:
    out: dict[int, str] = {}
    for c in chunks:
        for ch in c.choices:
            out[ch.index] = out.get(ch.index, "") + ch.delta.content
    return out


def test_unary_chat_answers_with_text_finish_reason_and_exact_usage(chat, tokenizer):
    resp = chat.CreateChatCompletion(chat_request(max_tokens=24, temperature=0), timeout=60)
    assert resp.object == "chat.completion" and resp.id.startswith("chatcmpl-") and resp.model == MODEL
    (choice,) = resp.choices
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    rendered = tokenizer.RenderChat(tokenizer_pb2.RenderChatRequest(
        messages=[tokenizer_pb2.ChatTurn(role=m.role, content=m.content.string_value) for m in HELLO]))
    assert resp.usage.prompt_tokens == len(rendered.prompt_token_ids)
    assert 1 <= resp.usage.completion_tokens <= 24
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    if choice.finish_reason == "length":
        assert resp.usage.completion_tokens == 24


def test_stream_equals_unary_and_ends_with_finish_reason_and_usage(chat):
    unary = chat.CreateChatCompletion(chat_request(max_tokens=40, temperature=0, ignore_eos=True), timeout=60)
    chunks = list(chat.StreamChatCompletion(chat_request(
        chat_pb2.StreamChatCompletionRequest, max_tokens=40, temperature=0, ignore_eos=True,
        stream_options=common_pb2.StreamOptions(include_usage=True)), timeout=60))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.id == chunks[0].id and c.object == "chat.completion.chunk" for c in chunks)
    assert stream_text(chunks) == {0: unary.choices[0].message.content}
    finishes = [ch.finish_reason for c in chunks for ch in c.choices if ch.HasField("finish_reason")]
    assert finishes == ["length"]
    usage_chunk = chunks[-1]
    counts = ("prompt_tokens", "completion_tokens", "total_tokens")  # cached_tokens may differ (prefix cache)
    assert not usage_chunk.choices
    assert [getattr(usage_chunk.usage, f) for f in counts] == [getattr(unary.usage, f) for f in counts]
    assert usage_chunk.usage.completion_tokens == 40
    # several tokens per message when they are ready: fewer content chunks than tokens is allowed,
    # more is not
    assert len([c for c in chunks if c.choices]) <= 41


def _token_texts(chat, **kw) -> tuple[str, list[str]]:
    resp = chat.CreateChatCompletion(chat_request(temperature=0, logprobs=True, ignore_eos=True, **kw), timeout=60)
    return resp.choices[0].message.content, [t.token for t in resp.choices[0].logprobs.content]


def test_stop_string_across_a_token_boundary_cuts_the_text_and_bills_up_to_it(chat):
    text, tokens = _token_texts(chat, max_tokens=60)
    assert "".join(tokens) == text or "\ufffd" in text
    # a stop string made of the end of one token and the start of the next
    pos, stop, stop_token = 0, None, None
    for i in range(len(tokens) - 1):
        a, b = tokens[i], tokens[i + 1]
        pos += len(a)
        if a and b and "\ufffd" not in a + b and text[:pos] == "".join(tokens[:i + 1]):
            candidate = a[-1] + b[0]
            if text.find(candidate) == pos - 1:
                stop, stop_token = candidate, i + 2
                break
    assert stop is not None, f"no clean token boundary in {tokens!r}"
    resp = chat.CreateChatCompletion(chat_request(max_tokens=60, temperature=0, ignore_eos=True, stop=[stop]), timeout=60)
    choice = resp.choices[0]
    assert choice.message.content == text[:text.find(stop)]
    assert choice.finish_reason == "stop" and choice.stop_reason == stop
    assert resp.usage.completion_tokens == stop_token
    streamed = list(chat.StreamChatCompletion(chat_request(chat_pb2.StreamChatCompletionRequest, max_tokens=60,
                                                          temperature=0, ignore_eos=True, stop=[stop]), timeout=60))
    assert stream_text(streamed) == {0: text[:text.find(stop)]}
    kept = chat.CreateChatCompletion(chat_request(max_tokens=60, temperature=0, ignore_eos=True, stop=[stop],
                                                  include_stop_str_in_output=True), timeout=60)
    assert kept.choices[0].message.content == text[:text.find(stop) + len(stop)]


def test_n_choices_with_a_seed_are_reproducible_and_billed_in_full(chat):
    req = chat_request(max_tokens=16, temperature=1.0, seed=1234, n=3, ignore_eos=True)
    a = chat.CreateChatCompletion(req, timeout=60)
    b = chat.CreateChatCompletion(req, timeout=60)
    assert [c.index for c in a.choices] == [0, 1, 2]
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert len({c.message.content for c in a.choices}) > 1  # the n choices are not copies
    assert a.usage.completion_tokens == 48
    other = chat.CreateChatCompletion(chat_request(max_tokens=16, temperature=1.0, seed=99, n=1, ignore_eos=True), timeout=60)
    assert other.choices[0].message.content != a.choices[0].message.content


def test_streamed_n_choices_arrive_indexed(chat):
    chunks = list(chat.StreamChatCompletion(chat_request(chat_pb2.StreamChatCompletionRequest, max_tokens=8, n=2,
                                                        temperature=1.0, seed=5, ignore_eos=True), timeout=60))
    unary = chat.CreateChatCompletion(chat_request(max_tokens=8, n=2, temperature=1.0, seed=5, ignore_eos=True), timeout=60)
    assert stream_text(chunks) == {c.index: c.message.content for c in unary.choices}


def _running(inference) -> int:
    return inference.GetLoad(inference_pb2.GetLoadRequest(), timeout=5).running


def _wait_running(inference, want: int, seconds: float = 30) -> int:
    deadline = time.monotonic() + seconds
    while (running := _running(inference)) != want and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the engine's load with a deadline
    return running


def test_cancelling_the_client_call_frees_the_engine_slot(chat, inference):
    assert _wait_running(inference, 0) == 0
    call = chat.StreamChatCompletion(chat_request(chat_pb2.StreamChatCompletionRequest, max_tokens=1800,
                                                 ignore_eos=True), timeout=120)
    first = next(call)
    assert first.choices
    assert _wait_running(inference, 1) == 1
    call.cancel()
    assert _wait_running(inference, 0) == 0


def test_completion_from_text_and_from_token_ids(completions, tokenizer):
    resp = completions.CreateCompletion(completion_pb2.CreateCompletionRequest(
        model=MODEL, prompt=json_value(["The quick model"]), max_tokens=12, temperature=0, ignore_eos=True, echo=True), timeout=60)
    assert resp.object == "text_completion" and resp.choices[0].text.startswith("The quick model")
    assert resp.usage.completion_tokens == 12 and resp.choices[0].finish_reason == "length"
    ids = tokenizer.Tokenize(tokenizer_pb2.TokenizeRequest(texts=["The quick model"], add_special_tokens=True)).encodings[0].token_ids
    by_ids = completions.CreateCompletion(completion_pb2.CreateCompletionRequest(
        model=MODEL, prompt_token_ids=ids, max_tokens=12, temperature=0, ignore_eos=True), timeout=60)
    assert resp.choices[0].text == "The quick model" + by_ids.choices[0].text
    assert by_ids.usage.prompt_tokens == len(ids)
    streamed = list(completions.StreamCompletion(completion_pb2.StreamCompletionRequest(
        model=MODEL, prompt=json_value(["The quick model", "Another"]), max_tokens=6, temperature=0), timeout=60))
    assert {ch.index for c in streamed for ch in c.choices} == {0, 1}


def test_models_are_listed_and_unknown_ones_are_not_found(models):
    listed = models.ListModels(model_pb2.ListModelsRequest(), timeout=10)
    assert [m.id for m in listed.data] == [MODEL] and listed.data[0].max_model_len == 2048
    assert models.GetModel(model_pb2.GetModelRequest(model=MODEL), timeout=10).id == MODEL
    with pytest.raises(grpc.RpcError) as e:
        models.GetModel(model_pb2.GetModelRequest(model="gpt-17"), timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and error_info(e.value).reason == "MODEL_NOT_FOUND"


@pytest.mark.parametrize("kwargs, code, reason, field", [
    ({"model": "nope"}, grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND", None),
    ({"messages": []}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", "messages"),
    ({"messages": [chat_pb2.ChatRequestMessage(role="wizard", content=text_value("x"))]}, grpc.StatusCode.INVALID_ARGUMENT,
     "INVALID_REQUEST", "messages[0].role"),
    ({"temperature": 3.0}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", "temperature"),
    ({"top_p": 1.5}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", "top_p"),
    ({"max_tokens": 0}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", "max_tokens"),
    ({"max_tokens": 100000}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", "max_tokens"),
    ({"n": 17}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", "n"),
    ({"stop": ["x"] * 17}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", "stop"),
    ({"stop": ["y" * 300]}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", "stop[0]"),
    ({"messages": [chat_pb2.ChatRequestMessage(role="user", content=text_value("word " * 3000))]}, grpc.StatusCode.INVALID_ARGUMENT,
     "CONTEXT_LENGTH_EXCEEDED", None),
    ({"max_tokens": 2000, "messages": [chat_pb2.ChatRequestMessage(role="user", content=text_value("word " * 100))]},
     grpc.StatusCode.INVALID_ARGUMENT, "CONTEXT_LENGTH_EXCEEDED", "max_tokens"),
    ({"stream": True}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", "stream"),
])
def test_bad_requests_get_a_clear_status_for_unary_and_stream(chat, kwargs, code, reason, field):
    from google.rpc import error_details_pb2

    from tokenway_common.errors import status_details

    calls = [lambda: chat.CreateChatCompletion(chat_request(**kwargs), timeout=30)]
    if "stream" not in kwargs:
        calls.append(lambda: list(chat.StreamChatCompletion(chat_request(chat_pb2.StreamChatCompletionRequest, **kwargs),
                                                            timeout=30)))
    for call in calls:
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert e.value.code() == code, e.value.details()
        assert error_info(e.value).reason == reason
        if field:
            violations = []
            for d in status_details(e.value).details:
                if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    br = error_details_pb2.BadRequest()
                    d.Unpack(br)
                    violations += [v.field for v in br.field_violations]
            assert field in violations
