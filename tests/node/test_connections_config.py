"""node.toml [connections]: the address's budget of bytes of unfinished messages must leave
room for one honest registration beside every account-less slot of that address."""

from __future__ import annotations

import pytest

from sonet.core import limits
from sonet.node.config import ConfigError, NodeConfig

BASE = {"name": "alpha.example", "listen": "127.0.0.1:0"}
REGISTRATION = limits.MAX_UNREGISTERED_RECORD_BYTES


def test_the_defaults_leave_room_for_one_registration_more() -> None:
    config = NodeConfig.from_dict(BASE, source="node.toml")
    assert config.partial_bytes_per_address >= (config.max_unregistered_per_address + 1) * REGISTRATION


def test_a_budget_the_slots_can_fill_is_refused_in_one_line() -> None:
    connections = {"max_unregistered_per_address": 8, "partial_bytes_per_address": 8 * REGISTRATION}
    with pytest.raises(ConfigError) as info:
        NodeConfig.from_dict({**BASE, "connections": connections}, source="node.toml")
    message = str(info.value)
    assert message.startswith("node.toml: [connections] partial_bytes_per_address = ") and "\n" not in message
    assert f"it must be at least {9 * REGISTRATION}" in message


def test_raising_the_slots_needs_the_budget_raised_with_them() -> None:
    with pytest.raises(ConfigError, match="max_unregistered_per_address = 32"):
        NodeConfig.from_dict({**BASE, "connections": {"max_unregistered_per_address": 32}}, source="node.toml")
    connections = {"max_unregistered_per_address": 32, "partial_bytes_per_address": 33 * REGISTRATION}
    config = NodeConfig.from_dict({**BASE, "connections": connections}, source="node.toml")
    assert config.partial_bytes_per_address == 33 * REGISTRATION
