"""The generation pipeline's own logic (usage, stop handling, n choices, cancellation), without gRPC.

The ports are in-memory here: a letter per token id, and stop strings matched on the joined text.
The real services are exercised in tests/integration.
"""

import asyncio

import pytest

from tokenway_common import errors
from tokenway_orchestrator.core.pipeline import ChoiceEvent, Job, Pipeline, Usage
from tokenway_orchestrator.core.ports import Detokenized, EngineChunk, EngineSpec, ModelInfo

MODEL = ModelInfo("m", 128, 64, (0,), 0, "fp", "test")


class LetterStream:
    def __init__(self, stop):
        self.stop, self.text, self.emitted, self.n, self.done, self.closed = stop, "", 0, 0, False, False

    async def push(self, ids, last):
        if self.done:
            return Detokenized("", self.n, self.matched)
        for t in ids:
            self.n += 1
            self.text += chr(ord("a") + t)
            for s in self.stop:
                if self.text.endswith(s):
                    self.done, self.matched = True, s
                    out = self.text[self.emitted:len(self.text) - len(s)]
                    # per token up to the stop, what it added: the stop's own letters add nothing
                    texts = tuple(self.text[self.emitted:len(self.text) - 1])
                    return Detokenized(out, self.n, s, tuple(c if i < len(out) else "" for i, c in enumerate(texts)) + ("",))
        out, self.emitted = self.text[self.emitted:], len(self.text)
        return Detokenized(out, self.n, token_texts=tuple(out))

    async def aclose(self):
        self.closed = True


class Ports:
    def __init__(self, chunks_by_choice, fail_choice=None):
        self.chunks = chunks_by_choice
        self.fail_choice = fail_choice
        self.closed_generators = []
        self.streams = []
        self.blocked = asyncio.Event()

    def detokenize_stream(self, tail, skip, stop, include, timeout):
        s = LetterStream(stop)
        self.streams.append(s)
        return s

    async def detokenize(self, seqs, skip, timeout):
        return [chr(ord("a") + s[0]) for s in seqs]

    async def generate(self, request_id, prompt, spec, timeout, affinity=""):
        index = int(request_id.rsplit("-", 1)[1])
        try:
            if index == self.fail_choice:
                await self.blocked.wait()
                raise errors.Unavailable("replica died", reason="PEER_UNAVAILABLE")
            for chunk in self.chunks[index]:
                yield chunk
            if index == -1:
                return
            await asyncio.Event().wait()  # an engine that keeps going until cancelled
        finally:
            self.closed_generators.append(index)


def job(n=1, stop=(), logprobs=False):
    return Job("req", [[1, 2, 3]], [EngineSpec(max_tokens=10)], n, stop, False, True, logprobs)


async def collect(pipeline, j):
    return [ev async for ev in pipeline.run(j, None)]


async def test_stop_string_ends_the_choice_bills_tokens_up_to_it_and_closes_the_engine_stream():
    ports = Ports({0: [EngineChunk((7, 4), 2), EngineChunk((11, 11, 14, 0), 6)]})
    events = await collect(Pipeline(ports, ports, MODEL), job(stop=("ll",)))
    text = "".join(e.text for e in events if isinstance(e, ChoiceEvent))
    assert text == "he"
    assert events[-2].finish_reason == "stop" and events[-2].stop_reason == "ll"
    assert events[-1] == Usage(prompt_tokens=3, completion_tokens=4)  # not the engine's 6
    assert ports.closed_generators == [0] and ports.streams[0].closed


async def test_n_choices_each_finish_and_usage_sums_them():
    ports = Ports({0: [EngineChunk((0, 1), 2), EngineChunk((2,), 3, "length")],
                   1: [EngineChunk((3,), 1, "stop", stop_token_id=0)]})
    events = await collect(Pipeline(ports, ports, MODEL), job(n=2))
    texts = {i: "".join(e.text for e in events if isinstance(e, ChoiceEvent) and e.index == i) for i in (0, 1)}
    assert texts == {0: "abc", 1: "d"}
    finishes = {e.index: e.finish_reason for e in events if isinstance(e, ChoiceEvent) and e.finish_reason}
    assert finishes == {0: "length", 1: "stop"}
    assert events[-1] == Usage(prompt_tokens=3, completion_tokens=4)


async def test_failure_of_one_choice_cancels_its_siblings_and_surfaces():
    ports = Ports({0: [EngineChunk((0,), 1)]}, fail_choice=1)
    pipeline = Pipeline(ports, ports, MODEL)
    seen = []
    with pytest.raises(errors.Unavailable):
        async for ev in pipeline.run(job(n=2), None):
            seen.append(ev)
            ports.blocked.set()  # choice 0 is streaming; now let choice 1 fail
    assert seen and seen[0].text == "a"
    assert sorted(ports.closed_generators) == [0, 1]


async def test_closing_the_stream_early_cancels_every_choice():
    ports = Ports({0: [EngineChunk((0,), 1)], 1: [EngineChunk((1,), 1)]})
    stream = Pipeline(ports, ports, MODEL).run(job(n=2), None)
    first = await anext(stream)
    assert isinstance(first, ChoiceEvent)
    await stream.aclose()
    assert sorted(ports.closed_generators) == [0, 1]


async def test_logprobs_follow_the_tokens_kept_before_a_stop():
    chunk = EngineChunk((7, 4, 11), 3, logprobs=((-0.1, ((7, -0.1),)), (-0.2, ()), (-0.3, ())))
    ports = Ports({0: [chunk]})
    letters = [bytes([ord("a") + i]) for i in range(64)]
    events = await collect(Pipeline(ports, ports, MODEL, letters), job(stop=("e",), logprobs=True))
    stop_event = events[-2]
    assert [lp.token for lp in stop_event.logprobs] == ["h", ""]  # what each token added before the stop
    assert [lp.bytes for lp in stop_event.logprobs] == [b"h", b"e"]
    assert stop_event.logprobs[0].top == (("h", -0.1, b"h"),)
