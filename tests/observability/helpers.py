"""Helpers for the observability tests: scrape a /metrics endpoint and read samples from it."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(port: int, host: str = "127.0.0.1", path: str = "/metrics") -> Samples:
    """GET the endpoint and parse the Prometheus text format with prometheus_client's parser."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{host}:{port}{path}", timeout=aiohttp.ClientTimeout(total=10)) as resp,
    ):
        assert resp.status == 200, f"{path} answered {resp.status}"
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample ``name`` with exactly ``labels``, or None if absent."""
    return samples.get((name, tuple(sorted(labels.items()))))


def series(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of ``name``, by its labels."""
    return {labels: v for (n, labels), v in samples.items() if n == name}
