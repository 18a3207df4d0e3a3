"""node.toml [connections]: the defaults leave an address's budget of bytes of unfinished
messages room for one honest registration beside every account-less slot of that address."""

from __future__ import annotations

from sonet.core import limits
from sonet.node.config import NodeConfig

BASE = {"name": "alpha.example", "listen": "127.0.0.1:0"}


def test_the_defaults_leave_room_for_one_registration_more() -> None:
    config = NodeConfig.from_dict(BASE, source="node.toml")
    room = config.partial_bytes_per_address - config.max_unregistered_per_address * limits.MAX_UNREGISTERED_RECORD_BYTES
    assert room >= limits.MAX_UNREGISTERED_RECORD_BYTES


def test_many_account_less_slots_with_the_default_budget_are_allowed() -> None:
    # what the connection bench configures (10,000 idle connections from one address): the
    # byte budget then bounds the memory those slots may hold
    config = NodeConfig.from_dict({**BASE, "connections": {"max_unregistered_per_address": 11_000}}, source="node.toml")
    assert config.max_unregistered_per_address == 11_000
    assert config.partial_bytes_per_address == 8 * 1024 * 1024
