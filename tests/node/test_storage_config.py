"""node.toml ``[storage]``: the stored-bytes budgets and the disk reserve, range-checked, with
the documented defaults, and handed to the store as its ``Quota``."""

from __future__ import annotations

import tomllib

import pytest

from sonet.node.app import storage_quota
from sonet.node.config import ConfigError, NodeConfig

MIB = 1 << 20
BASE = {"name": "alpha.example", "listen": "127.0.0.1:0"}


def test_defaults_are_the_documented_ones_and_reach_the_quota() -> None:
    quota = storage_quota(NodeConfig.from_dict(BASE))
    assert (quota.sender_device_bytes, quota.sender_account_bytes, quota.outbox_bytes, quota.relay_origin_bytes) == (
        256 * MIB,
        512 * MIB,
        1024 * MIB,
        256 * MIB,
    )
    assert quota.reserve_bytes == 256 * MIB
    assert quota.max_store_bytes is None  # 0 in node.toml: no maximum


def test_settings_round_trip_through_the_file() -> None:
    storage = {"device_max_bytes": 2 * MIB, "outbox_max_bytes": 3 * MIB, "reserve_bytes": 0, "max_database_bytes": 64 * MIB}
    config = NodeConfig.from_dict({**BASE, "storage": storage})
    again = NodeConfig.from_dict(tomllib.loads(config.to_toml()))
    assert again == config
    quota = storage_quota(again)
    assert (quota.sender_device_bytes, quota.outbox_bytes, quota.reserve_bytes, quota.max_store_bytes) == (2 * MIB, 3 * MIB, 0, 64 * MIB)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("device_max_bytes", 1000, "storage.device_max_bytes = 1000 is not allowed (a whole number from 1048576"),
        ("relay_origin_max_bytes", -1, "storage.relay_origin_max_bytes = -1"),
        ("reserve_bytes", "1G", "storage.reserve_bytes = '1G'"),
        ("account_max_bytes", 1.5, "storage.account_max_bytes = 1.5"),
    ],
)
def test_out_of_range_values_are_refused_with_one_line(key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        NodeConfig.from_dict({**BASE, "storage": {key: value}})
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_typo_in_storage_is_refused() -> None:
    with pytest.raises(ConfigError, match="did you mean 'reserve_bytes'"):
        NodeConfig.from_dict({**BASE, "storage": {"reserve_byte": 0}})
