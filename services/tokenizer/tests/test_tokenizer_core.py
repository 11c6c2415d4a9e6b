"""Encode, decode, chat rendering and info, without gRPC."""

from __future__ import annotations

import pytest
from tokenway_common import errors
from tokenway_common.config import ConfigError, load
from tokenway_common.modeldir import tokenizer_fingerprint

from tokenway_tokenizer.config import ENV_PREFIX, TokenizerSettings
from tokenway_tokenizer.core import ChatMessage


async def test_encode_decode_round_trip_with_offsets(tok):
    texts = ["Hello, world!", "naïve 日本"]
    encs = await tok.encode(texts, return_offsets=True)
    for text, enc in zip(texts, encs):
        assert len(enc.offsets) == len(enc.token_ids)
        assert enc.offsets[0][0] == 0 and enc.offsets[-1][1] == len(text)
    assert await tok.decode([e.token_ids for e in encs]) == texts
    with_bos = await tok.encode(["hi"], add_special_tokens=True)
    assert with_bos[0].token_ids[0] == tok.bos_token_id and with_bos[0].offsets is None


async def test_decode_skip_special_tokens(tok):
    ids = [0, *tok.rust.encode("hi", add_special_tokens=False).ids, 1]
    assert await tok.decode([ids], skip_special_tokens=True) == ["hi"]
    assert await tok.decode([ids]) == ["<|begin_of_text|>hi<|end_of_text|>"]


async def test_empty_batches_and_bad_ids_are_invalid(tok):
    with pytest.raises(errors.InvalidArgument) as e:
        await tok.encode([])
    assert e.value.reason == "EMPTY_BATCH"
    with pytest.raises(errors.InvalidArgument) as e:
        await tok.decode([[1, 2], [3, tok.vocab_size]])
    assert e.value.reason == "TOKEN_ID_OUT_OF_RANGE"
    assert e.value.field_violations == [("sequences[1].token_ids[1]", f"{tok.vocab_size} is not in [0, {tok.vocab_size})")]


async def test_render_chat_has_exactly_one_bos_and_the_stop_ids(tok):
    out = await tok.render_chat([ChatMessage("system", "Be brief."), ChatMessage("user", "Hi!", name="ann")])
    assert out.prompt_token_ids.count(tok.bos_token_id) == 1 and out.prompt_token_ids[0] == tok.bos_token_id
    assert out.prompt_text.endswith("<|im_start|>assistant\n")
    assert tok.rust.decode(out.prompt_token_ids, skip_special_tokens=False) == out.prompt_text
    assert out.stop_token_ids == [1, 4]  # generation_config's eos ids, then the tokenizer's eos, deduplicated
    bare = await tok.render_chat([ChatMessage("user", "Hi!")], add_generation_prompt=False)
    assert bare.prompt_text.endswith("<|im_end|>\n")


async def test_render_chat_prepends_bos_when_the_template_does_not(tok, monkeypatch):
    monkeypatch.setattr(tok.hf, "chat_template", "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    out = await tok.render_chat([ChatMessage("user", "Hi")])
    assert out.prompt_token_ids == [tok.bos_token_id, *tok.rust.encode("Hi", add_special_tokens=False).ids]


async def test_render_chat_rejects_unknown_roles_and_empty_conversations(tok):
    with pytest.raises(errors.InvalidArgument) as e:
        await tok.render_chat([ChatMessage("user", "a"), ChatMessage("wizard", "b")])
    assert e.value.reason == "UNKNOWN_ROLE" and e.value.field_violations[0][0] == "messages[1].role"
    with pytest.raises(errors.InvalidArgument) as e:
        await tok.render_chat([])
    assert e.value.reason == "EMPTY_CONVERSATION"


def test_info(tok, model_dir):
    info = tok.info()
    assert info.vocab_size == len(tok.hf)
    assert {s.name: s.id for s in info.special_tokens} == {"bos_token": 0, "eos_token": 1, "pad_token": 2}
    assert info.all_special_ids == [0, 1, 2, 3, 4]
    assert info.fingerprint == tokenizer_fingerprint(model_dir)
    assert info.model_max_length == 2048 and "<|im_start|>" in info.chat_template


def test_settings(model_dir, tmp_path):
    cfg = load(TokenizerSettings, ENV_PREFIX, ["--workers", "3"], env={f"{ENV_PREFIX}_MODEL": model_dir})
    assert (cfg.port, cfg.workers, cfg.model) == (50052, 3, model_dir)
    with pytest.raises(ConfigError, match="MODEL"):
        load(TokenizerSettings, ENV_PREFIX, [], env={f"{ENV_PREFIX}_MODEL": str(tmp_path / "none")})
    with pytest.raises(ConfigError, match="WORKERS"):
        load(TokenizerSettings, ENV_PREFIX, ["--workers", "0"], env={f"{ENV_PREFIX}_MODEL": model_dir})
