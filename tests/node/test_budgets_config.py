"""node.toml ``[budgets]`` (node/budget_settings.py): per-actor cost budgets and allowances,
range-checked, with today's values as defaults, round-tripped through the file, and reaching the
parts of a running node that spend them."""

from __future__ import annotations

import tomllib

import pytest

from sonet.federation.message_requests import PER_DEVICE, PER_DEVICE_BYTES, PER_PEER, PER_PEER_BYTES, RequestCaps
from sonet.federation.settings import FederationSettings
from sonet.node.app import federation_settings
from sonet.node.budget_settings import BUDGET_KEYS, BudgetSettings
from sonet.node.client_limits import LOOKUPS, REGISTRATION_CHECKS_PER_ADDRESS, REGISTRATIONS_PER_ADDRESS
from sonet.node.config import SETTINGS, ConfigError, NodeConfig
from sonet.node.cost_budget import CLIENT_BUDGET

from .conftest import StartNode

BASE = {"name": "alpha.example", "listen": "127.0.0.1:0"}


def test_without_the_section_every_budget_is_what_it_was() -> None:
    budgets = NodeConfig.from_dict(BASE).budgets
    assert budgets == BudgetSettings()
    assert budgets.device_budget == CLIENT_BUDGET
    assert budgets.peer_budget == FederationSettings().lookup_budget
    assert (budgets.device_lookups_per_second, budgets.device_lookups_burst) == (LOOKUPS.per_second, LOOKUPS.burst)
    assert (budgets.registrations_per_address_per_second, budgets.registrations_per_address_burst) == (
        REGISTRATIONS_PER_ADDRESS.per_second,
        REGISTRATIONS_PER_ADDRESS.burst,
    )
    assert budgets.registration_checks_burst == REGISTRATION_CHECKS_PER_ADDRESS.burst
    assert budgets.message_requests == RequestCaps()
    assert (RequestCaps().per_device, RequestCaps().per_device_bytes, RequestCaps().per_peer, RequestCaps().per_peer_bytes) == (
        PER_DEVICE.burst,
        PER_DEVICE_BYTES.burst,
        PER_PEER.burst,
        PER_PEER_BYTES.burst,
    )
    assert SETTINGS["budgets"] == tuple(key for key, _, _ in BUDGET_KEYS)


def test_settings_round_trip_through_the_file() -> None:
    tuned = {"device_bytes_per_second": 1 << 20, "peer_requests_per_second": 2.5, "registrations_per_connection": 1, "message_requests_per_mailbox": 7}
    config = NodeConfig.from_dict({**BASE, "budgets": tuned})
    assert NodeConfig.from_dict(tomllib.loads(config.to_toml())) == config
    assert config.budgets.device_budget.bytes.per_second == 1 << 20
    assert federation_settings(config).lookup_budget.requests.per_second == 2.5
    assert config.budgets.message_requests.mailbox == 7
    # an integer where a number of seconds' rate is asked is fine, and read as one
    assert NodeConfig.from_dict({**BASE, "budgets": {"device_lookups_per_second": 3}}).budgets.device_lookups_per_second == 3.0


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("device_lookups_per_second", 0, "budgets.device_lookups_per_second = 0 is not allowed (a number more than 0 and at most"),
        ("device_lookups_per_second", "5", "budgets.device_lookups_per_second = '5' is not allowed"),
        ("device_lookups_burst", 0, "budgets.device_lookups_burst = 0 is not allowed (a whole number from 1 to"),
        ("device_lookups_burst", 2.5, "budgets.device_lookups_burst = 2.5 is not allowed (a whole number"),
        ("device_bytes_burst", True, "budgets.device_bytes_burst = True is not allowed"),
        ("registrations_per_connection", 1001, "budgets.registrations_per_connection = 1001 is not allowed (a whole number from 1 to 1000)"),
        ("message_request_bytes_per_mailbox", -1, "budgets.message_request_bytes_per_mailbox = -1 is not allowed"),
    ],
)
def test_out_of_range_values_are_refused_in_one_line(key: str, value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        NodeConfig.from_dict({**BASE, "budgets": {key: value}}, source="node.toml")
    assert str(info.value).startswith(f"node.toml: {fragment}") and "\n" not in str(info.value)


def test_an_unknown_key_is_refused_with_a_guess() -> None:
    with pytest.raises(ConfigError) as info:
        NodeConfig.from_dict({**BASE, "budgets": {"device_lookup_burst": 3}}, source="node.toml")
    assert "unknown setting in [budgets]: 'device_lookup_burst' (did you mean 'device_lookups_burst'?" in str(info.value)


async def test_a_running_node_spends_the_budgets_of_its_file(start_node: StartNode) -> None:
    budgets = BudgetSettings(
        device_requests_burst=7,
        device_lookups_burst=3,
        registrations_per_connection=2,
        message_requests_per_device_per_day=4,
        message_requests_per_mailbox=5,
    )
    running = await start_node(budgets=budgets)
    ctx = running.node.context
    assert ctx is not None and ctx.limits is not None and ctx.requests is not None
    assert ctx.costs.budget.requests.burst == 7
    assert ctx.limits._lookups.rate.burst == 3
    assert ctx.limits._registrations == 2
    assert ctx.requests.allowance.per_device.burst == 4
    assert ctx.requests.allowance.per_mailbox.burst == 5
    assert running.node.federation_settings.lookup_budget == budgets.peer_budget
