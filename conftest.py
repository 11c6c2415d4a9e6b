"""Every test session: the services' Prometheus endpoints are off (metrics port 0) in every process a test
starts, whatever this shell exports, so that tests (and several test runs on one host) never fight over the
fixed default ports 9091-9093. A test that scrapes metrics serves them on a port of its own."""

import os

for _service in ("ORCHESTRATOR", "TOKENIZER", "INFERENCE"):
    os.environ[f"TOKENWAY_{_service}_METRICS_PORT"] = "0"
