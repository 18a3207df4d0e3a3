"""README, "Hostile input is bounded": "Every decoder reachable from the network is a fuzz target
(`fuzz/`)". One that is not: ``read_expiry_aad`` (core/groups/expiry.py), which a hub runs on the
authenticated data of every group application message a device or a peer submits
(core/groups/hub.py, node/group_routing.py) and every member device on every one it decrypts
(client/groups/engine.py). No target reaches it: run on their seeds, none calls it. Its malformed
inputs are tested by hand (tests/core/groups/test_hub_expiry.py), not fuzzed. Strict xfail until
a target decodes it (or the sentence says which decoders are targets)."""

from __future__ import annotations

from typing import Any

import pytest

from sonet.client.groups import engine
from sonet.core.groups import expiry, hub
from sonet.node import group_routing
from fuzz.targets import TARGETS


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="no fuzz target reaches core/groups/expiry.py read_expiry_aad")
def test_some_fuzz_target_decodes_a_group_messages_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = expiry.read_expiry_aad

    def counted(aad: bytes) -> Any:
        calls.append(aad)
        return real(aad)

    for module in (expiry, hub, group_routing, engine):
        monkeypatch.setattr(module, "read_expiry_aad", counted)
    for target in TARGETS.values():
        for seed in target.seeds():
            target(seed)
    assert calls, f"none of the {len(TARGETS)} targets reached read_expiry_aad"
