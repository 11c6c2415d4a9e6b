from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tokenway_tokenizer.core import Tokenizer

REPO = Path(__file__).resolve().parents[3]
MODEL_DIR = str(REPO / ".tokenway" / "models" / "tokenway-tiny")

# Stable in CI: the same examples every run, no example database to drift.
settings.register_profile("tokenway", max_examples=200, derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("tokenway")


@pytest.fixture(scope="session")
def model_dir() -> str:
    return MODEL_DIR


@pytest.fixture(scope="session")
def tok(model_dir: str) -> Tokenizer:
    t = Tokenizer.load(model_dir)
    yield t
    t.close()
