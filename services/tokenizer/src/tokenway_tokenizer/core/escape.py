"""Message text is data: special-token strings inside chat contents never become special tokens.

Before the template is rendered, every special-token string in a content is replaced by a
placeholder: a private-use code point that occurs nowhere in the request or the template, one per
distinct string. The rendered text is then cut at the placeholders: the template's stretches are
encoded normally (its markup yields the real special tokens) and each placeholder as the plain-text
encoding of the string it stands for. A conversation with no special string in its contents skips
all this and tokenizes exactly as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from .bounded import Segment

# Private-use code points: the BMP area, then planes 15 and 16.
_PRIVATE_USE = (range(0xE000, 0xF900), range(0xF0000, 0xFFFFE), range(0x100000, 0x10FFFE))


class SpecialEscaper:
    def __init__(self, specials: Iterable[str]) -> None:
        self.specials = sorted({s for s in specials if s}, key=len, reverse=True)  # longest first, as the
        self._re = re.compile("|".join(map(re.escape, self.specials))) if self.specials else None  # Rust matcher

    def escape(self, contents: Sequence[str], also_present: Iterable[str]) -> tuple[list[str], dict[str, str]] | None:
        """Contents with special strings replaced, and placeholder -> string; None when none occurs."""
        if self._re is None:
            return None
        found = {m.group(0) for c in contents for m in self._re.finditer(c)}
        if not found:
            return None
        used: set[str] = set()
        for text in (*contents, *also_present):
            used.update(text)
        free = (chr(cp) for r in _PRIVATE_USE for cp in r if chr(cp) not in used)
        to_placeholder = {s: next(free) for s in sorted(found)}
        escaped = [self._re.sub(lambda m: to_placeholder[m.group(0)], c) for c in contents]
        return escaped, {p: s for s, p in to_placeholder.items()}

    @staticmethod
    def segments(rendered: str, placeholders: dict[str, str]) -> list[Segment]:
        """The rendered text cut at placeholders: template stretches, and plain special strings."""
        out: list[Segment] = []
        start = 0
        ph = re.compile("[" + "".join(map(re.escape, placeholders)) + "]")
        for m in ph.finditer(rendered):
            if m.start() > start:
                out.append(Segment(rendered[start:m.start()]))
            out.append(Segment(placeholders[m.group(0)], plain=True))
            start = m.end()
        if start < len(rendered):
            out.append(Segment(rendered[start:]))
        return out

    @staticmethod
    def restore(rendered: str, placeholders: dict[str, str]) -> str:
        return rendered.translate({ord(p): s for p, s in placeholders.items()})
