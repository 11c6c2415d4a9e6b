"""A deterministic training corpus for the embedded tokenizer.

The corpus is generated from a fixed seed, word lists and templates, so the tokenizer (and so the
model) is the same on every machine and does not drift when the repository's other files change.
It mixes English-like prose, code, numbers and several scripts so that byte-level BPE learns
multi-byte merges and a sampled token can split a UTF-8 character (which the streaming
detokenizer must handle).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

NOUNS = (
    "model token server stream request batch cache tensor layer kernel queue replica client "
    "deadline gateway router prompt answer sequence vector matrix cluster node pod service "
    "engine sample window river mountain garden city library window ocean forest engineer "
    "teacher student planet signal message network protocol schema contract field record"
).split()
VERBS = (
    "serves streams routes caches decodes encodes samples schedules cancels drains retries "
    "measures builds writes reads sends receives grows joins leaves returns answers renders"
).split()
ADJECTIVES = (
    "fast small quiet bright careful typed strong early late empty full remote local "
    "concurrent streaming cheap honest stable green red blue old new"
).split()
ADVERBS = "quickly slowly gently twice always rarely soon today locally again".split()
NAMES = "Ada Alan Grace Linus Barbara Ken Dennis Margaret Edsger Frances Tim Radia".split()
MULTILINGUAL = (
    "Le modèle répond très vite, même à minuit.",
    "Der Server schließt die Verbindung nach fünf Sekunden.",
    "El niño comió una manzana en la mañana.",
    "Быстрая модель отвечает на каждый запрос.",
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον σκύλο.",
    "これは小さな言語モデルのテストです。",
    "这是一个用于测试的小型语言模型。",
    "한국어 문장도 토크나이저가 배워야 합니다.",
    "नमस्ते, यह एक परीक्षण वाक्य है।",
    "مرحبا، هذا نموذج صغير للاختبار.",
    "שלום, זהו מודל קטן לבדיקה.",
    "Emoji too: 🚀 launches, 🎉 celebrates, 👩‍💻 codes, 🇫🇷 waves.",
    "Math: ∑ xᵢ² ≤ ∞, α + β = γ, √2 ≈ 1.414.",
)
CODE = (
    "def {n}(x):\n    return x * {k} + {m}\n",
    "for i in range({k}):\n    print(i, '{w}')\n",
    "if (count > {k}) {{ return \"{w}\"; }}\n",
    "SELECT {w} FROM {n} WHERE id = {k};\n",
    '{{"model": "{w}", "max_tokens": {k}, "stream": true}}\n',
    "<p class=\"{w}\">{n} {k}</p>\n",
)


def _sentence(rng: random.Random) -> str:
    subject = f"the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    if rng.random() < 0.2:
        subject = rng.choice(NAMES)
    obj = f"{rng.choice(('a', 'the', 'every', 'one'))} {rng.choice(NOUNS)}"
    tail = rng.choice(("", f" {rng.choice(ADVERBS)}", f" in {rng.randint(2, 999)} ms", f" at {rng.randint(1, 12)}:{rng.randint(0, 59):02d}"))
    text = f"{subject} {rng.choice(VERBS)} {obj}{tail}"
    return text[0].upper() + text[1:] + rng.choice((".", ".", ".", "!", "?"))


#: The default sample's seed (tokenway-tiny's tokenizer).
SEED = 20261121


def documents(seed: int = SEED, count: int = 12000) -> Iterator[str]:
    """Yields `count` short documents, identical for the same seed."""
    rng = random.Random(seed)
    for _ in range(count):
        kind = rng.random()
        if kind < 0.70:
            yield " ".join(_sentence(rng) for _ in range(rng.randint(2, 8)))
        elif kind < 0.85:
            template = rng.choice(CODE)
            yield template.format(n=rng.choice(NOUNS), w=rng.choice(ADJECTIVES), k=rng.randint(0, 4096), m=rng.randint(0, 9))
        else:
            yield " ".join(rng.sample(MULTILINGUAL, rng.randint(1, 4)))
