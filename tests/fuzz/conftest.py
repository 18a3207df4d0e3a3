"""Hypothesis budget and guards for the fuzz tests.

Two profiles: ``fuzz-suite`` (default, 50 examples) keeps tests/fuzz near half a minute in ``make test``;
``HYPOTHESIS_PROFILE=fuzz`` runs the same properties for much longer, e.g.
``HYPOTHESIS_PROFILE=fuzz .venv/bin/python -m pytest tests/fuzz``. The profiles are applied per
test (``budget()``), never loaded globally, so the rest of the suite keeps its own settings.
Every test runs under a hang guard (SIGALRM): a decoder that loops fails its test instead of
stalling the suite.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from types import FrameType

import pytest
from hypothesis import HealthCheck, settings

__all__ = ["budget", "HANG_S"]

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much, HealthCheck.large_base_example]
settings.register_profile("fuzz-suite", max_examples=50, deadline=None, suppress_health_check=_HEALTH, print_blob=True)
settings.register_profile("fuzz", max_examples=20_000, deadline=None, suppress_health_check=_HEALTH, print_blob=True)

#: hang guard per test (never a performance threshold); generous for the long profile
HANG_S = 120 if os.environ.get("HYPOTHESIS_PROFILE") != "fuzz" else 6 * 3600


def budget(scale: float = 1.0) -> settings:
    """The settings of the active profile, with ``scale`` times its examples."""
    profile = settings.get_profile("fuzz" if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else "fuzz-suite")
    return settings(profile, max_examples=max(1, int(profile.max_examples * scale)))


class Hang(Exception):
    pass


@pytest.fixture(autouse=True)
def hang_guard() -> Iterator[None]:
    def alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"a fuzz test ran for more than {HANG_S} s: a decoder hangs?")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
