"""The embedded model: built offline, byte-identical on every build, loadable by transformers."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

from tests.conftest import MODEL_DIR, ROOT

FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
         "chat_template.jinja")


def digests(path) -> dict[str, str]:
    return {f: hashlib.sha256((path / f).read_bytes()).hexdigest() for f in FILES}


def test_a_fresh_build_is_byte_identical_to_the_served_one(tmp_path):
    out = tmp_path / "tokenway-tiny"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    subprocess.run([sys.executable, str(ROOT / "tools/model/build_model.py"), "--out", str(out)], check=True, env=env,
                   capture_output=True)
    assert digests(out) == digests(MODEL_DIR)


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
