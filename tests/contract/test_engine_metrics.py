"""The inference service's metrics endpoint on each engine, scraped over HTTP from the service process: what
Generate streamed, the engine's load as GetLoad reports it, and on vLLM vLLM's own engine metrics beside
tokenway's (vLLM registers them in prometheus_client's default registry, which the endpoint serves)."""

from __future__ import annotations

import pytest

from tests.metrics import scrape
from tokenway.inference.v1 import inference_pb2 as pb

from .conftest import wait_load

pytestmark = pytest.mark.integration

PROMPT = [1, 450, 496, 1735, 1701, 432, 1720, 975]


def test_the_endpoint_counts_what_generate_streamed_and_reads_the_engine_load(server):
    wait_load(server.stub, lambda load: load.running == 0 and load.waiting == 0)
    before = scrape(server.metrics_port)
    msgs = list(server.stub.Generate(pb.GenerateRequest(
        request_id="metrics-contract", prompt_token_ids=PROMPT, sampling=pb.SamplingParams(temperature=0.0),
        stopping=pb.StoppingParams(max_tokens=5, ignore_eos=True)), timeout=120))
    assert sum(len(m.token_ids) for m in msgs) == 5
    load = wait_load(server.stub, lambda load: load.running == 0 and load.waiting == 0)
    after = scrape(server.metrics_port)
    n = "tokenway_inference_"
    assert after.value(n + "generation_tokens_total") - before.value(n + "generation_tokens_total") == 5
    assert after.value(n + "prompt_tokens_total") - before.value(n + "prompt_tokens_total") == len(PROMPT)
    assert after.value(n + "ttft_seconds_count") - before.value(n + "ttft_seconds_count") == 1
    rpc = "tokenway.inference.v1.InferenceService/Generate"
    assert after.value(n + "requests_total", rpc=rpc, code="OK") - before.value(n + "requests_total", rpc=rpc,
                                                                                 code="OK") == 1
    assert (after.value(n + "running_requests"), after.value(n + "waiting_requests")) == (load.running, load.waiting)
    assert after.value(n + "max_batch_size") == load.max_batch_size
    vllm = {f for f in after.families if f.startswith("vllm:")}
    if server.engine == "vllm":
        assert {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                "vllm:time_to_first_token_seconds"} <= vllm, sorted(vllm)
    else:
        assert not vllm
