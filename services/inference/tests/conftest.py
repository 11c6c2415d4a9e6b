"""One engine for the whole test session: loading and warming the model once keeps the suite fast,
and a single scheduler thread avoids two torch thread pools fighting over 2 cores."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tokenway_inference.config import InferenceSettings
from tokenway_inference.engines.base import GenerateRequest, SamplingOptions, StoppingOptions
from tokenway_inference.engines.transformers_engine import TransformersEngine

MODEL_DIR = str(Path(__file__).resolve().parents[3] / ".tokenway" / "models" / "tokenway-tiny")
GREEDY = SamplingOptions(temperature=0.0)
#: max_tokens of a sequence a test aborts or cancels: it must outlive the test's own steps, so it runs to
#: (nearly) the 2048-token context, tens of seconds on 2 cores, instead of a count a slow machine could reach.
LONG = 2000


def settings(**kw) -> InferenceSettings:
    kw.setdefault("model", MODEL_DIR)
    return InferenceSettings(port=0, **kw)


@pytest.fixture(scope="session")
async def engine():
    eng = TransformersEngine.from_settings(settings(max_batch_size=8, max_waiting=8))
    await eng.start()
    yield eng
    await eng.close()


def request(rid: str, prompt, *, sampling: SamplingOptions = GREEDY, logprobs=None, **stopping) -> GenerateRequest:
    stopping.setdefault("max_tokens", 16)
    return GenerateRequest(rid, tuple(prompt), sampling, StoppingOptions(**stopping), logprobs)


async def collect(engine, req: GenerateRequest, timeout: float = 60.0):
    """(token ids, chunks) of one whole generation."""
    async def run():
        chunks = [c async for c in engine.generate(req)]
        return [t for c in chunks for t in c.token_ids], chunks
    return await asyncio.wait_for(run(), timeout)


async def wait_for_load(engine, predicate, timeout: float = 30.0) -> None:
    """Waits (without blocking the loop) until the engine's load satisfies predicate after a step."""
    assert await asyncio.to_thread(engine.wait_until, predicate, timeout), engine.load()
