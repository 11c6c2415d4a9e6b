"""REST stream frames: the fast chunk printer prints exactly what the generic proto printer prints."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from tokenway.v1 import chat_pb2, completion_pb2

from tokenway_orchestrator.servicers import sse

texts = st.text(max_size=12)
opt = lambda s: st.none() | s  # noqa: E731
floats = st.floats(min_value=-50, max_value=0, allow_nan=False, width=32)
top = st.lists(st.tuples(texts, floats, st.binary(max_size=4)), max_size=3)
logprob = st.lists(st.tuples(texts, floats, st.binary(max_size=4), top), max_size=3)


def _common(m, ident, fp, usage):
    m.id, m.object, m.created, m.model = ident, "chunk", 1764460800, "tokenway-tiny"
    if fp is not None:
        m.system_fingerprint = fp
    if usage is not None:
        m.usage.prompt_tokens, m.usage.completion_tokens, m.usage.total_tokens = usage, 3, usage + 3


def _finish(c, finish, stop):
    if finish is not None:
        c.finish_reason = finish
    if stop is not None:
        c.stop_reason = stop


@settings(max_examples=200, deadline=None)
@given(ident=texts, fp=opt(texts), usage=opt(st.integers(0, 5000)), choices=st.lists(st.tuples(
    st.integers(0, 40), opt(st.just("assistant")), opt(texts), opt(texts), opt(texts), opt(logprob)), max_size=3))
def test_chat_chunks_print_as_the_transcoder_would(ident, fp, usage, choices):
    m = chat_pb2.StreamChatCompletionResponse()
    _common(m, ident, fp, usage)
    for index, role, content, finish, stop, lps in choices:
        c = m.choices.add(index=index)
        if role is not None:
            c.delta.role = role
        if content is not None:
            c.delta.content = content
        _finish(c, finish, stop)
        if lps is not None:
            c.logprobs.SetInParent()
            for tok, lp, raw, alts in lps:
                t = c.logprobs.content.add(token=tok, logprob=lp, bytes=list(raw))
                for a, alp, araw in alts:
                    t.top_logprobs.add(token=a, logprob=alp, bytes=list(araw))
    assert sse.chunk_json(m) == sse.message_json(m)
    assert json.loads(sse.frame(sse.chunk_json(m))[6:]) == sse.message_json(m)


@settings(max_examples=100, deadline=None)
@given(ident=texts, fp=opt(texts), usage=opt(st.integers(0, 5000)), choices=st.lists(st.tuples(
    st.integers(0, 40), texts, opt(texts), opt(texts), st.booleans()), max_size=3))
def test_completion_chunks_print_as_the_transcoder_would(ident, fp, usage, choices):
    m = completion_pb2.StreamCompletionResponse()
    _common(m, ident, fp, usage)
    for index, text, finish, stop, with_logprobs in choices:
        c = m.choices.add(index=index, text=text)
        _finish(c, finish, stop)
        if with_logprobs:
            c.logprobs.tokens.append(text)
            c.logprobs.token_logprobs.append(-0.25)
            c.logprobs.top_logprobs.add()[text or "x"] = -0.25
            c.logprobs.text_offset.append(0)
    assert sse.chunk_json(m) == sse.message_json(m)
