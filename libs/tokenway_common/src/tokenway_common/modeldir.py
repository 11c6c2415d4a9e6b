"""Facts about a local Hugging Face model directory that several services need alike."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DEFAULT_MODEL_DIR = ".tokenway/models/tokenway-tiny"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json")


def default_model_dir() -> str:
    """The one setting that picks the served model: TOKENWAY_MODEL, else the embedded model."""
    return os.environ.get("TOKENWAY_MODEL", DEFAULT_MODEL_DIR)


def check_model_dir(value: str) -> str | None:
    """A config `check`: the directory must exist and hold a Hugging Face config or tokenizer."""
    path = Path(value)
    if not path.is_dir():
        return f"{value!r} is not a directory (run `make model` to build the embedded model)"
    if not any((path / f).exists() for f in ("config.json", "tokenizer.json", "tokenizer_config.json")):
        return f"{value!r} holds no config.json or tokenizer files"
    return None


def served_name(model_dir: str, override: str = "") -> str:
    return override or Path(model_dir).resolve().name


def tokenizer_fingerprint(model_dir: str | os.PathLike[str]) -> str:
    """sha256 over the tokenizer files present (name and bytes), hex: equal iff the tokenizers are."""
    h = hashlib.sha256()
    root = Path(model_dir)
    for name in TOKENIZER_FILES:
        f = root / name
        if f.is_file():
            h.update(name.encode() + b"\0")
            h.update(f.read_bytes())
            h.update(b"\0")
    return h.hexdigest()
