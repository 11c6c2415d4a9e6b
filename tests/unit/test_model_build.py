"""The embedded models: built offline, byte-identical on every build, loadable by transformers.

`tokenway-tiny` is the default model; `tokenway-pico` is a second, different one (its own seed, network
and tokenizer) for tests that serve two models side by side. `make model` builds both.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import MODEL_DIR, ROOT

PICO_DIR = ROOT / ".tokenway" / "models" / "tokenway-pico"
FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
         "chat_template.jinja")


def digests(path) -> dict[str, str]:
    return {f: hashlib.sha256((path / f).read_bytes()).hexdigest() for f in FILES}


@pytest.mark.parametrize("name, served, args", [("tokenway-tiny", MODEL_DIR, []),
                                                ("tokenway-pico", PICO_DIR, ["--preset", "pico"])])
def test_a_fresh_build_is_byte_identical_to_the_served_one(tmp_path, name, served, args):
    out = tmp_path / name
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    subprocess.run([sys.executable, str(ROOT / "tools/model/build_model.py"), "--out", str(out), *args], check=True,
                   env=env, capture_output=True)
    assert digests(out) == digests(served)


def test_the_model_loads_offline_with_its_chat_template_and_special_tokens():
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True)
    config = AutoConfig.from_pretrained(MODEL_DIR, local_files_only=True)
    gen = GenerationConfig.from_pretrained(MODEL_DIR, local_files_only=True)
    assert config.model_type == "llama" and config.vocab_size == len(tok)
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=True,
                                  return_dict=False)
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok.convert_tokens_to_ids("<|im_end|>") in gen.eos_token_id
    assert json.loads((MODEL_DIR / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_the_pico_model_is_a_different_model_served_as_tokenway_pico():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tokenway_common.modeldir import served_name, tokenizer_fingerprint

    tiny = AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(PICO_DIR, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(PICO_DIR, local_files_only=True).eval()
    assert model.config.vocab_size == len(tok) == 2048 != len(tiny)
    assert served_name(str(PICO_DIR)) == "tokenway-pico"
    assert tokenizer_fingerprint(PICO_DIR) != tokenizer_fingerprint(MODEL_DIR)
    text = "The careful engineer streams every request to the remote gateway in 42 ms."
    assert tok.encode(text) != tiny.encode(text)  # other merges: the same text is other ids
    messages = [{"role": "user", "content": "hi"}]
    rendered = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert rendered == "<|begin_of_text|><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok.decode(ids) == rendered
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(tok)) and torch.isfinite(logits).all()
