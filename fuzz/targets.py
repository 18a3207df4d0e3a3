"""Every fuzz target, by name: the one list both the hypothesis tests (tests/fuzz) and the
atheris harness (``python -m fuzz``) run. Importing a target module registers its targets."""

from __future__ import annotations

from . import device_targets, handshake_targets, keydir_targets, mls_group_targets, mls_targets, ratchet_targets, wire_targets  # noqa: F401 - they register
from .target import TARGETS, Finding, Target, Unusable

__all__ = ["TARGETS", "Target", "Finding", "Unusable"]
