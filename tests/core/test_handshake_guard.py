"""The responder's handshake guard (core/handshake_guard.py), pure: cookies under a rotating
secret, the replay cache, load detection and the per-address share. Time is passed in."""

from __future__ import annotations

import dataclasses

import pytest

from sonet.core.errors import RemoteProtocolError
from sonet.core.handshake import COOKIE_LEN, Hello1
from sonet.core.handshake_guard import COOKIE_ROTATION_MS, CookieJar, GuardSettings, HandshakeGuard, ReplayCache, hello1_digest
from sonet.core.ratelimit import Rate

from .pairs import flip_bit, rng

HOME = b"192.0.2.7"
AWAY = b"198.51.100.9"


def hello(n: int = 0, cookie: bytes = b"") -> Hello1:
    """A structurally valid Hello1; ``n`` makes a different message (its nonce)."""
    return Hello1(v=1, offer=("hybrid",), x25519=bytes(32), mlkem=bytes(1184), nonce=n.to_bytes(32, "big"), cookie=cookie)


def guard(**settings: object) -> HandshakeGuard:
    return HandshakeGuard(GuardSettings(**settings), rng=rng("guard"))  # type: ignore[arg-type]


def refused(code: str, g: HandshakeGuard, address: bytes, h: Hello1, now: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        g.screen(address, h, now)
    assert info.value.code == code


# Cookies ---------------------------------------------------------------------------------


def test_a_cookie_is_valid_for_its_address_and_message_only() -> None:
    jar = CookieJar(rng("jar"))
    digest = hello1_digest(hello(1))
    cookie = jar.mint(HOME, digest, 1_000)
    assert len(cookie) == COOKIE_LEN
    assert jar.valid(cookie, HOME, digest, 1_000)
    assert not jar.valid(cookie, AWAY, digest, 1_000)  # another address
    assert not jar.valid(cookie, HOME, hello1_digest(hello(2)), 1_000)  # another first message
    for bit in range(COOKIE_LEN * 8):
        assert not jar.valid(flip_bit(cookie, bit), HOME, digest, 1_000)
    assert not jar.valid(cookie[:-1], HOME, digest, 1_000)
    assert not jar.valid(b"", HOME, digest, 1_000)


def test_a_cookie_outlives_one_rotation_but_not_two() -> None:
    jar = CookieJar(rng("jar"))
    digest = hello1_digest(hello())
    cookie = jar.mint(HOME, digest, COOKIE_ROTATION_MS - 1)  # minted at the end of a period
    assert jar.valid(cookie, HOME, digest, COOKIE_ROTATION_MS)  # previous secret, still kept
    assert jar.valid(cookie, HOME, digest, 2 * COOKIE_ROTATION_MS - 1)
    assert not jar.valid(cookie, HOME, digest, 2 * COOKIE_ROTATION_MS)  # its secret is gone


def test_after_a_long_gap_no_old_cookie_is_valid() -> None:
    jar = CookieJar(rng("jar"))
    digest = hello1_digest(hello())
    cookie = jar.mint(HOME, digest, 0)
    assert not jar.valid(cookie, HOME, digest, 10 * COOKIE_ROTATION_MS)


def test_another_node_secret_mints_other_cookies() -> None:
    digest = hello1_digest(hello())
    assert not CookieJar(rng("other")).valid(CookieJar(rng("jar")).mint(HOME, digest, 0), HOME, digest, 0)


def test_the_digest_ignores_the_cookie_and_covers_every_other_field() -> None:
    base = hello()
    assert hello1_digest(base) == hello1_digest(dataclasses.replace(base, cookie=bytes(COOKIE_LEN)))
    for change in ({"v": 2}, {"offer": ("classical",)}, {"x25519": b"\x01" * 32}, {"mlkem": b"\x01" * 1184}, {"nonce": b"\x01" * 32}):
        assert hello1_digest(dataclasses.replace(base, **change)) != hello1_digest(base), change


# The replay cache ------------------------------------------------------------------------


def test_the_replay_cache_forgets_after_its_window_and_beyond_its_size() -> None:
    cache = ReplayCache(max_entries=3, window_ms=1_000)
    cache.add(b"a", 0)
    assert cache.seen(b"a", 999)
    assert not cache.seen(b"a", 1_000)
    for i, d in enumerate([b"b", b"c", b"d", b"e"]):
        cache.add(d, 2_000 + i)
    assert len(cache) == 3
    assert not cache.seen(b"b", 2_010)  # the oldest went first
    assert all(cache.seen(d, 2_010) for d in (b"c", b"d", b"e"))


# The guard -------------------------------------------------------------------------------


def test_a_replayed_first_message_is_refused_before_any_work() -> None:
    g = guard()
    assert g.screen(HOME, hello(1), 0) is None
    refused("replayed", g, HOME, hello(1), 5)
    refused("replayed", g, AWAY, hello(1), 5)  # from anywhere
    refused("replayed", g, HOME, hello(1, cookie=bytes(COOKIE_LEN)), 5)  # with or without a cookie
    assert g.counts["replayed"] == 3 and g.counts["proceeded"] == 1
    assert g.screen(HOME, hello(2), 5) is None  # another message goes on


def test_a_replay_is_refused_for_the_whole_window_then_forgotten() -> None:
    g = guard(replay_window_ms=60_000)
    assert g.screen(HOME, hello(1), 0) is None
    g.release()
    refused("replayed", g, HOME, hello(1), 59_999)
    assert g.screen(HOME, hello(1), 60_000) is None


def test_under_load_a_first_message_gets_a_cookie_and_its_retry_goes_on() -> None:
    g = guard(max_in_progress=0)  # always under load
    first = hello(1)
    cookie = g.screen(HOME, first, 0)
    assert cookie is not None and len(cookie) == COOKIE_LEN
    assert g.in_progress == 0 and g.counts["cookies"] == 1  # no work, no state for it
    assert g.screen(HOME, dataclasses.replace(first, cookie=cookie), 10) is None
    assert g.in_progress == 1
    # the retry with its cookie is now a replay, however often it is sent again
    refused("replayed", g, HOME, dataclasses.replace(first, cookie=cookie), 20)


@pytest.mark.parametrize(
    "retry",
    [
        lambda h, c: (AWAY, dataclasses.replace(h, cookie=c)),  # the cookie used from another address
        lambda h, c: (HOME, dataclasses.replace(h, cookie=flip_bit(c, 3))),  # tampered
        lambda h, c: (HOME, dataclasses.replace(h, cookie=c, offer=("classical",))),  # another message (a downgrade)
        lambda h, c: (HOME, dataclasses.replace(h, cookie=c, nonce=b"\x07" * 32)),
    ],
    ids=["wrong-address", "tampered", "changed-offer", "changed-nonce"],
)
def test_under_load_a_cookie_that_does_not_verify_gets_no_work(retry) -> None:
    g = guard(max_in_progress=0)
    first = hello(1)
    cookie = g.screen(HOME, first, 0)
    assert cookie is not None
    address, again = retry(first, cookie)
    assert g.screen(address, again, 10) is not None  # just another cookie
    assert g.counts["proceeded"] == 0


def test_under_load_an_expired_cookie_gets_no_work() -> None:
    g = guard(max_in_progress=0)
    first = hello(1)
    cookie = g.screen(HOME, first, 0)
    assert cookie is not None
    assert g.screen(HOME, dataclasses.replace(first, cookie=cookie), 2 * COOKIE_ROTATION_MS) is not None
    assert g.counts["proceeded"] == 0


def test_handshakes_in_progress_put_the_node_under_load_until_released() -> None:
    g = guard(max_in_progress=2)
    assert g.screen(HOME, hello(1), 0) is None
    assert g.screen(HOME, hello(2), 0) is None
    assert g.under_load(0)
    assert g.screen(HOME, hello(3), 0) is not None
    g.release()
    assert not g.under_load(0)
    assert g.screen(HOME, hello(3), 0) is None


def test_a_high_rate_of_handshakes_puts_the_node_under_load_for_a_while() -> None:
    g = guard(load_rate=Rate(per_second=10, burst=3), max_in_progress=1000)
    for n in range(3):
        assert g.screen(HOME, hello(n), 0) is None
    assert g.screen(HOME, hello(3), 0) is not None  # a cookie: the node is under load
    assert g.screen(HOME, hello(3), 100) is None  # a tenth of a second later: one token back


def test_an_address_over_its_share_is_refused_and_others_go_on() -> None:
    g = guard(per_address=Rate(per_second=1, burst=2))
    assert g.screen(HOME, hello(1), 0) is None
    assert g.screen(HOME, hello(2), 0) is None
    refused("rate_limited", g, HOME, hello(3), 0)
    assert g.screen(AWAY, hello(4), 0) is None
    assert g.screen(HOME, hello(3), 1_000) is None  # refilled: the refused message was not remembered


def test_under_load_an_address_over_its_share_is_refused_after_its_cookie_round() -> None:
    g = guard(max_in_progress=0, per_address=Rate(per_second=1, burst=1))
    for n in (1, 2):
        cookie = g.screen(HOME, hello(n), 0)
        assert cookie is not None
        if n == 1:
            assert g.screen(HOME, hello(n, cookie), 0) is None
        else:
            refused("rate_limited", g, HOME, hello(n, cookie), 0)
    assert g.counts == {"proceeded": 1, "cookies": 2, "replayed": 0, "rate_limited": 1}


def test_the_tables_stay_bounded() -> None:
    g = guard(max_addresses=4, replay_entries=8, max_in_progress=1000, load_rate=Rate(per_second=1, burst=1000))
    for n in range(100):
        assert g.screen(str(n).encode(), hello(n), n) is None
    assert len(g.replays) == 8
    assert len(g._per_address) == 4


def test_settings_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError):
        GuardSettings(max_in_progress=-1)
    with pytest.raises(ValueError):
        GuardSettings(replay_entries=0)
