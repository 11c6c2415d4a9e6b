"""Validation of public request parameters, without gRPC."""

import pytest

from tokenway_common import errors
from tokenway_orchestrator.core.params import (GenerationParams, Limits, Message, Violations, resolve_max_tokens,
                                               validate_generation, validate_messages)

LIMITS = Limits(max_n=16, max_stop_strings=4, max_stop_string_chars=8, max_prompts=4, vocab_size=100, context_length=64)


def violations(p: GenerationParams) -> list[str]:
    v = Violations()
    validate_generation(p, LIMITS, v)
    return [f for f, _ in v.items]


def test_defaults_are_valid():
    assert violations(GenerationParams()) == []


@pytest.mark.parametrize("params, field", [
    (GenerationParams(temperature=2.5), "temperature"),
    (GenerationParams(temperature=-0.1), "temperature"),
    (GenerationParams(temperature=float("nan")), "temperature"),
    (GenerationParams(top_p=0.0), "top_p"),
    (GenerationParams(top_p=1.5), "top_p"),
    (GenerationParams(min_p=1.1), "min_p"),
    (GenerationParams(top_k=-2), "top_k"),
    (GenerationParams(n=0), "n"),
    (GenerationParams(n=17), "n"),
    (GenerationParams(max_tokens=0), "max_tokens"),
    (GenerationParams(max_tokens=64), "max_tokens"),
    (GenerationParams(min_tokens=5, max_tokens=4), "min_tokens"),
    (GenerationParams(stop=("a", "b", "c", "d", "e")), "stop"),
    (GenerationParams(stop=("",)), "stop[0]"),
    (GenerationParams(stop=("x", "123456789")), "stop[1]"),
    (GenerationParams(logit_bias={100: 1.0}), "logit_bias"),
    (GenerationParams(logit_bias={5: 101.0}), "logit_bias"),
    (GenerationParams(presence_penalty=3.0), "presence_penalty"),
    (GenerationParams(repetition_penalty=0.0), "repetition_penalty"),
    (GenerationParams(logprobs=21), "top_logprobs"),
    (GenerationParams(stop_token_ids=(100,)), "stop_token_ids"),
])
def test_out_of_range_knob_names_its_field(params, field):
    assert violations(params) == [field]


def test_every_bad_field_is_reported_at_once():
    v = Violations()
    validate_generation(GenerationParams(temperature=9, top_p=0, n=0), LIMITS, v)
    with pytest.raises(errors.InvalidArgument) as e:
        v.raise_if_any()
    assert [f for f, _ in e.value.field_violations] == ["temperature", "top_p", "n"]


def test_messages_need_a_known_role():
    v = Violations()
    validate_messages([Message("user", "hi"), Message("wizard", "x")], v)
    assert v.items[0][0] == "messages[1].role"
    v = Violations()
    validate_messages([], v)
    assert v.items[0][0] == "messages"


def test_max_tokens_defaults_to_the_room_left_capped_by_the_model_default():
    assert resolve_max_tokens(None, prompt_len=10, context=64, default_cap=0, field="max_tokens") == 54
    assert resolve_max_tokens(None, prompt_len=10, context=64, default_cap=16, field="max_tokens") == 16
    assert resolve_max_tokens(5, prompt_len=10, context=64, default_cap=16, field="max_tokens") == 5


@pytest.mark.parametrize("requested, prompt_len", [(None, 64), (60, 10)])
def test_prompt_that_does_not_fit_is_context_length_exceeded(requested, prompt_len):
    with pytest.raises(errors.InvalidArgument) as e:
        resolve_max_tokens(requested, prompt_len=prompt_len, context=64, default_cap=0, field="max_tokens")
    assert e.value.reason == "CONTEXT_LENGTH_EXCEEDED"
