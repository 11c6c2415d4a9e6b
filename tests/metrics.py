"""Scraping a service's Prometheus endpoint (tokenway_common.metrics) over real HTTP, for tests."""

from __future__ import annotations

import asyncio
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

#: What a family's samples may add to its name.
SUFFIXES = ("", "_total", "_bucket", "_sum", "_count", "_created")


class Scrape:
    def __init__(self, text: str) -> None:
        self.text = text
        self.families: dict[str, str] = {}  # name -> type
        self.samples: list[tuple[str, dict[str, str], float]] = []
        for family in text_string_to_metric_families(text):
            self.families[family.name] = family.type
            self.samples.extend((s.name, s.labels, s.value) for s in family.samples)

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named `name` whose labels include `labels` (0 when there are none)."""
        return sum(v for n, lab, v in self.samples if n == name and all(lab.get(k) == x for k, x in labels.items()))

    def names(self) -> set[str]:
        """Every name a query may use: each family's name with each sample suffix."""
        return {f + s for f in self.families for s in SUFFIXES}


def scrape(port: int, host: str = "127.0.0.1") -> Scrape:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=30) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain"), r.headers
        return Scrape(r.read().decode())


async def ascrape(port: int) -> Scrape:
    """`scrape` from a test whose event loop serves the endpoint (the request runs on a thread)."""
    return await asyncio.to_thread(scrape, port)
