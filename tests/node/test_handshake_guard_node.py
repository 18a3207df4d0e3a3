"""The node's handshake guard (core/handshake_guard.py) as configured by node.toml's
``[handshake]``: a node always under load serves devices through the cookie round, a replayed
first message is refused, and the settings are read strictly."""

from __future__ import annotations

import os
import tomllib

import pytest
import trio
from trio_websocket import open_websocket_url

from sonet.client import connection
from sonet.core import limits
from sonet.core.crypto import CryptoPolicy
from sonet.core.handshake import Cookie, Handshake, HandshakeError, Hello2, Role
from sonet.core.ratelimit import Rate
from sonet.core.wire import decode_frame
from sonet.node.config import ConfigError, NodeConfig

from .conftest import StartNode
from .kit import new_identity

HANG_S = 30  # hang guard, never a performance threshold
BASE = {"name": "alpha.example", "listen": "127.0.0.1:0"}


def hello1() -> bytes:
    hs = Handshake(Role.INITIATOR, identity=new_identity(), policy=CryptoPolicy(), rng=os.urandom, prologue=b"/client")
    return hs.data_to_send()[0]


async def first_answer(url: str, message: bytes) -> object:
    async with open_websocket_url(url + "/client", max_message_size=limits.MAX_RECORD_BYTES, disconnect_timeout=1) as ws:
        await ws.send_message(message)
        return decode_frame(await ws.get_message())


async def test_a_node_under_load_serves_devices_through_the_cookie_round(start_node: StartNode) -> None:
    with trio.fail_after(HANG_S):
        node = await start_node(handshake_max_in_progress=0)  # every first message gets a cookie
        assert isinstance(await first_answer(node.url, hello1()), Cookie)
        alice = await node.enroll("alice")  # register: dial answers the cookie by itself
        async with node.raw(alice.first) as conn:
            assert conn.welcome.account == alice.address


async def test_a_node_refuses_a_replayed_first_message(start_node: StartNode) -> None:
    with trio.fail_after(HANG_S):
        node = await start_node()
        recorded = hello1()
        assert isinstance(await first_answer(node.url, recorded), Hello2)
        again = await first_answer(node.url, recorded)
        assert isinstance(again, HandshakeError) and again.code == "replayed"
        async with node.raw(new_identity()) as conn:  # a new device is served meanwhile
            assert conn.welcome.account is None


async def test_an_address_over_its_share_is_refused(start_node: StartNode) -> None:
    with trio.fail_after(HANG_S):
        node = await start_node(handshake_per_address_per_second=1, handshake_per_address_burst=2)
        for _ in range(2):
            assert isinstance(await first_answer(node.url, hello1()), Hello2)
        refused = await first_answer(node.url, hello1())
        assert isinstance(refused, HandshakeError) and refused.code == "rate_limited"


async def test_a_device_over_its_share_is_served_once_the_share_refills(start_node: StartNode, monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal comes before any work or anything sent: the device dials again after a
    short wait (client/connection.py), as a script sending in a loop would need."""
    dials = count_dials(monkeypatch)
    with trio.fail_after(HANG_S):
        node = await start_node(handshake_per_address_per_second=1, handshake_per_address_burst=2)
        for _ in range(2):
            assert isinstance(await first_answer(node.url, hello1()), Hello2)
        async with connection.connect(node.url, identity=new_identity(), node_fingerprint=node.fingerprint) as conn:
            assert conn.welcome.account is None
    assert len(dials) >= 2  # refused (the share was spent), then served


async def test_a_device_still_over_its_share_after_the_waits_gets_the_refusal(
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    dials = count_dials(monkeypatch)
    monkeypatch.setattr(connection, "RATE_LIMITED_FIRST_S", 0.01)  # two waits, shorter than the refill
    monkeypatch.setattr(connection, "RATE_LIMITED_RETRIES", 2)
    monkeypatch.setattr(connection, "TOLD_WAIT_S", 0.0)  # every wait would be told: it is, once
    told: list[str] = []
    with trio.fail_after(HANG_S):
        node = await start_node(handshake_per_address_per_second=1, handshake_per_address_burst=2)
        for _ in range(2):
            assert isinstance(await first_answer(node.url, hello1()), Hello2)
        with pytest.raises(connection.ConnectError) as refused:
            async with connection.connect(node.url, identity=new_identity(), node_fingerprint=node.fingerprint, waiting=told.append):
                pass
    assert refused.value.code == "rate_limited"
    assert "too many handshakes from this address" in str(refused.value)
    assert len(dials) == 3  # the first dial and one after each wait
    assert len(told) == 1 and node.url in told[0] and "from this address: connecting again in 0.0 s" in told[0], told


def count_dials(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs the client's connect dials, in order (it dials through connection.dial)."""
    dials: list[str] = []
    real = connection.dial

    def counting(url: str, *args: object, **kwargs: object):  # noqa: ANN202 - dial's context manager
        dials.append(url)
        return real(url, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(connection, "dial", counting)
    return dials


def test_the_handshake_settings_are_read_and_written() -> None:
    config = NodeConfig.from_dict({**BASE, "handshake": {"max_in_progress": 0, "load_per_second": 10, "per_address_burst": 7}})
    guard = config.handshake_guard
    assert guard.max_in_progress == 0
    assert guard.load_rate == Rate(per_second=10, burst=20)
    assert guard.per_address == Rate(per_second=20, burst=7)
    again = NodeConfig.from_dict(tomllib.loads(config.to_toml()))
    assert again.handshake_guard == guard
    # the defaults are written commented out
    assert "# [handshake]" in NodeConfig.from_dict(BASE).to_toml()


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ({"max_in_progress": -1}, "handshake.max_in_progress = -1 is not allowed (a whole number from 0 to 100000)"),
        ({"load_per_second": 0}, "handshake.load_per_second = 0 is not allowed"),
        ({"per_address_per_second": "20"}, "handshake.per_address_per_second = '20' is not allowed"),
        ({"per_address_burst": 1.5}, "handshake.per_address_burst = 1.5 is not allowed"),
        ({"per_address": 5}, "per_address"),
    ],
)
def test_handshake_settings_out_of_range_are_refused_in_one_line(setting: dict, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        NodeConfig.from_dict({**BASE, "handshake": setting})
    assert words in str(info.value) and "\n" not in str(info.value)
