"""Builds the embedded models, offline and deterministically.

    python tools/model/build_model.py [--out DIR] [--preset tiny|small|pico] [--force]

Presets: `tiny` (the default model `tokenway-tiny`), `small` (the same tokenizer, a bigger network), and
`pico` (`tokenway-pico`: a second, different model to serve beside tiny, with its own seed, its own
tokenizer trained on another sample of the corpus with a smaller vocabulary, so its token ids, vocabulary
size and tokenizer fingerprint all differ from tiny's). `--size tiny|small` is the older spelling of
`--preset`. The served model name is the directory's name: build pico into `.../tokenway-pico` (the
default for that preset).

Writes a Hugging Face model directory (config.json, generation_config.json, model.safetensors,
tokenizer files with a chat template) that `transformers` loads with HF_HUB_OFFLINE=1. The same
builder version and preset give byte-identical files; the directory is reused while its stamp matches.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402

SEED = 1234
SPECIAL = {
    "bos_token": "<|begin_of_text|>",
    "eos_token": "<|end_of_text|>",
    "pad_token": "<|pad|>",
    "unk_token": None,
}
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
VOCAB = 8192
CONTEXT = 2048


@dataclasses.dataclass(frozen=True)
class Preset:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int = VOCAB  # the BPE trainer's target; the corpus caps it (tiny's 8192 gives 3645 ids)
    seed: int = SEED  # torch's seed for the weights
    corpus_seed: int = corpus.SEED  # the tokenizer's training sample


PRESETS = {
    "tiny": Preset(256, 704, 4, 4, 2),
    "small": Preset(768, 2048, 12, 12, 4),
    # below the corpus cap, so the vocabulary really is 2048 ids; another sample, so the merges (ids) differ
    "pico": Preset(128, 352, 2, 4, 2, vocab=2048, seed=4321, corpus_seed=20261207),
}
DEFAULT_DIRS = {"pico": "tokenway-pico"}  # others: tokenway-tiny (or TOKENWAY_MODEL_DIR), as before


def log(msg: str) -> None:
    print(f"[build-model] {msg}", flush=True)


def builder_stamp(preset: str) -> str:
    h = hashlib.sha256()
    for f in (HERE / "build_model.py", HERE / "corpus.py"):
        h.update(f.read_bytes())
    h.update(preset.encode())
    return h.hexdigest()[:16]


def build_tokenizer(out: Path, preset: Preset):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = [SPECIAL["bos_token"], SPECIAL["eos_token"], SPECIAL["pad_token"], IM_START, IM_END]
    trainer = trainers.BpeTrainer(
        vocab_size=preset.vocab,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus.documents(preset.corpus_seed), trainer=trainer)
    bos_id = tok.token_to_id(SPECIAL["bos_token"])
    # BOS is added by add_special_tokens=True (plain encode); the chat template writes its own.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPECIAL['bos_token']} $A",
        pair=f"{SPECIAL['bos_token']} $A $B",
        special_tokens=[(SPECIAL["bos_token"], bos_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SPECIAL["bos_token"],
        eos_token=SPECIAL["eos_token"],
        pad_token=SPECIAL["pad_token"],
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=CONTEXT,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    # transformers v5 writes its own class name; PreTrainedTokenizerFast loads in v4 and v5.
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return fast


def build_model(out: Path, fast, preset: Preset) -> int:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    hidden, inter, layers, heads, kv = preset.hidden, preset.intermediate, preset.layers, preset.heads, preset.kv_heads
    eos = [fast.convert_tokens_to_ids(SPECIAL["eos_token"]), fast.convert_tokens_to_ids(IM_END)]
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=CONTEXT,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=fast.bos_token_id,
        eos_token_id=eos,
        pad_token_id=fast.pad_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(preset.seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=fast.bos_token_id,
        eos_token_id=eos,
        pad_token_id=fast.pad_token_id,
        do_sample=True,
        temperature=0.8,
        top_p=0.95,
        top_k=50,
        repetition_penalty=1.0,
        max_new_tokens=256,
    )
    model.save_pretrained(out, safe_serialization=True)
    return sum(p.numel() for p in model.parameters())


def main() -> int:
    root = HERE.parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="default: .tokenway/models/tokenway-pico for pico, else $TOKENWAY_MODEL_DIR or "
                             ".tokenway/models/tokenway-tiny")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
    parser.add_argument("--size", choices=("tiny", "small"), default=None, help="the older spelling of --preset")
    parser.add_argument("--force", action="store_true", help="rebuild even when the stamp matches")
    args = parser.parse_args()
    if args.preset and args.size and args.preset != args.size:
        parser.error("--size and --preset disagree: give one")
    name = args.preset or args.size or "tiny"
    preset = PRESETS[name]
    out: Path = args.out
    if out is None:
        out = (root / ".tokenway/models" / DEFAULT_DIRS[name] if name in DEFAULT_DIRS
               else Path(os.environ.get("TOKENWAY_MODEL_DIR", root / ".tokenway/models/tokenway-tiny")))
    stamp_file = out / ".tokenway-build"
    stamp = builder_stamp(name)
    if not args.force and stamp_file.exists() and stamp_file.read_text().strip() == stamp:
        log(f"{out} is up to date")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    t0 = time.monotonic()
    log(f"training byte-level BPE tokenizer (vocab {preset.vocab}) on the built-in corpus "
        f"(seed {preset.corpus_seed})...")
    fast = build_tokenizer(tmp, preset)
    log(f"tokenizer ready in {time.monotonic() - t0:.1f}s ({len(fast)} ids); initialising {name} Llama model "
        f"(seed {preset.seed})...")
    params = build_model(tmp, fast, preset)
    (tmp / ".tokenway-build").write_text(stamp + "\n")
    for f in tmp.iterdir():  # readable by every user: a container runs the services as uid 10001
        f.chmod(0o644)
    tmp.chmod(0o755)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    log(f"built {out} ({params / 1e6:.2f} M parameters) in {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
