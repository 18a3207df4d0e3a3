"""Reading /metrics the way Prometheus does (prometheus_client's own parser)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from .http_kit import get

__all__ = ["scrape", "sample"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(port: int) -> Samples:
    """Every sample of /metrics: (name, sorted labels) -> value; the exposition must parse."""
    status, text = await get(port, "/metrics")
    assert status == 200, text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when it is not there (a counter with no child yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
