"""Each service's metrics endpoint in the suite as `make run` starts it (tools/suite.py: separate processes, the
metrics port a setting), scraped over HTTP after a request through the orchestrator."""

from __future__ import annotations

import time

import pytest
from google.protobuf import struct_pb2
from tokenway.inference.v1 import inference_pb2
from tokenway.v1 import completion_pb2

from tests.metrics import scrape

pytestmark = pytest.mark.integration
MODEL = "tokenway-tiny"


def _idle(inference) -> None:
    deadline = time.monotonic() + 60
    while (load := inference.GetLoad(inference_pb2.GetLoadRequest(), timeout=10)).running or load.waiting:
        assert time.monotonic() < deadline, load  # what earlier tests started must have ended
        time.sleep(0.05)  # a poll of the engine's state


def test_every_service_of_the_suite_serves_its_metrics(suite, completions, inference):
    _idle(inference)
    before = {name: scrape(port) for name, port in suite.metrics.items()}
    resp = completions.CreateCompletion(completion_pb2.CreateCompletionRequest(
        model=MODEL, prompt=struct_pb2.Value(string_value="The quick model"), max_tokens=3, ignore_eos=True,
        temperature=0.0), timeout=60)
    assert resp.usage.completion_tokens == 3
    after = {name: scrape(port) for name, port in suite.metrics.items()}

    def delta(service: str, name: str, **labels: str) -> float:
        return after[service].value(name, **labels) - before[service].value(name, **labels)
    assert delta("orchestrator", "tokenway_orchestrator_requests_total",
                 rpc="tokenway.v1.CompletionService/CreateCompletion", code="OK") == 1
    assert delta("orchestrator", "tokenway_orchestrator_completion_tokens_total", model=MODEL) == 3
    assert delta("orchestrator", "tokenway_orchestrator_prompt_tokens_total", model=MODEL) == resp.usage.prompt_tokens
    assert after["orchestrator"].value("tokenway_orchestrator_model_ready", model=MODEL) == 1
    assert delta("inference", "tokenway_inference_generation_tokens_total") == 3
    assert delta("inference", "tokenway_inference_requests_total",
                 rpc="tokenway.inference.v1.InferenceService/Generate", code="OK") == 1
    assert delta("tokenizer", "tokenway_tokenizer_requests_total",
                 rpc="tokenway.tokenizer.v1.TokenizerService/Tokenize", code="OK") == 1
    load = inference.GetLoad(inference_pb2.GetLoadRequest(), timeout=10)
    assert after["inference"].value("tokenway_inference_max_batch_size") == load.max_batch_size
