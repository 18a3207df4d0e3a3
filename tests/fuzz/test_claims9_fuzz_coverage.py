"""README, "Hostile input is bounded": "Every decoder reachable from the network is a fuzz target
(`fuzz/`)". ``read_expiry_aad`` (core/groups/expiry.py) runs on the authenticated data of every
group application message a hub is submitted (core/groups/hub.py, node/group_routing.py) and of
every one a member device decrypts (client/groups/engine.py); the claims audit found no target
reaching it. fuzz/wire_targets.py's ``group_expiry`` does now: run on the seeds, a target must
call it."""

from __future__ import annotations

from typing import Any

import pytest

from sonet.client.groups import engine
from sonet.core.groups import expiry, hub
from sonet.node import group_routing
from fuzz.targets import TARGETS


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
