"""docs/security.md "Limits" says of every limit its DEFAULT; the other tests drive each mechanism
with small values of their own, so nothing held the documented numbers. Here: the values a node
built from a node.toml without the sections gets, the fixed ones, and, where a limiter holds it,
the default at work (a fake clock, the stand-in sessions of test_client_limits).

Each number below is copied from docs/security.md (the row is named); when a default changes,
the doc changes with it or this test fails."""

from __future__ import annotations

import pytest

from sonet.core import limits
from sonet.core.client_api import CreateGroup, FetchBundles, FetchKeyPackages, GroupSubmit, LinkBegin
from sonet.core.errors import RemoteProtocolError
from sonet.core.handshake_guard import GuardSettings, HandshakeGuard
from sonet.federation.message_requests import MAILBOX_KEYS, SENDER_KEYS, RequestAllowance
from sonet.federation.settings import FederationSettings
from sonet.node.app import storage_quota
from sonet.node.audit import read_entries
from sonet.node.audit_stream import INTERVAL_S
from sonet.node.client_checks import RequestError
from sonet.node.client_limits import ClientLimits
from sonet.node.client_session import DELIVER_BATCH, DELIVER_BYTES
from sonet.node.config import NodeConfig
from sonet.transport import log_summary, server, websocket
from tests.core.test_handshake_guard import hello
from tests.node.test_audit_stream import _stream

from .test_client_limits import ALICE, Clock, Conn, Ctx, refused

KIB, MIB = 1 << 10, 1 << 20
HOUR_MS, DAY_MS = 3_600_000, 86_400_000
BASE = {"name": "alpha.example", "listen": "127.0.0.1:0"}


def defaults() -> NodeConfig:
    return NodeConfig.from_dict(BASE)


def node_limits() -> ClientLimits:
    """The per-device limits a node without [budgets] runs with (Node: config.budgets.client_limits())."""
    return defaults().budgets.client_limits()


# What node.toml leaves at its defaults -------------------------------------------------------


def test_node_toml_defaults_are_the_documented_ones() -> None:
    c = defaults()
    b = c.budgets
    # "Stored bytes per recipient device mailbox | 256 MiB, 10,000 envelopes"
    assert (c.mailbox_max_bytes, c.mailbox_max_envelopes) == (256 * MIB, 10_000)
    # mailbox rows: "expired (30 days at most)"
    assert c.envelope_ttl_ms == 30 * DAY_MS == limits.MAX_ENVELOPE_TTL_MS
    # "Database size | none"
    assert c.storage_max_database_bytes == 0
    # "Handshakes with the full public-key work per source address | 20 a second after a burst of 100"
    assert (c.handshake_per_address_per_second, c.handshake_per_address_burst) == (20, 100)
    # "Handshakes under way node-wide, and full handshakes a second | 32; 50 a second after a burst of 100"
    guard = c.handshake_guard
    assert guard.max_in_progress == 32
    assert (guard.load_rate.per_second, guard.load_rate.burst) == (50, 100)
    # "Connections held at once | 4096"; "... from one source address | 256"
    assert (c.max_connections, c.max_connections_per_address) == (4096, 256)
    # "Pending connections ... node-wide / per address | 512 / 64"
    assert (c.max_pending_connections, c.max_pending_per_address) == (512, 64)
    # "Time from accept to a complete upgrade request / to an authenticated handshake | 5 s / 10 s"
    assert (c.upgrade_timeout_s, c.handshake_timeout_s) == (5, 10)
    # "Time one WebSocket message takes ... | 120 s" (and the dialling side: MESSAGE_DEADLINE_S)
    assert c.message_timeout_s == 120 == limits.MESSAGE_DEADLINE_S
    # "A /client connection without an account | 60 s to register or link"
    assert c.unregistered_timeout_s == 60
    # "/client connections without an account, node-wide / per source address | 128 / 8"
    assert (c.max_unregistered, c.max_unregistered_per_address) == (128, 8)
    # "Connections of one device | 8"
    assert c.max_connections_per_device == 8
    # "A send that makes no progress | 30 s for each 64 KiB" (links this node dials: the same setting)
    assert c.send_timeout_s == 30
    # "Bytes of WebSocket messages not yet whole ... | 8 MiB; 2 records (8 MiB + 128); 4 records; 4 records"
    assert c.partial_bytes_per_address == 8 * MIB
    assert c.partial_bytes_per_device == 2 * limits.MAX_RECORD_BYTES == 8 * MIB + 128
    assert c.partial_bytes_per_account == c.partial_bytes_per_peer == 4 * limits.MAX_RECORD_BYTES
    # "Message requests ... | 10 envelopes and 512 KiB, refilled over a day; a peer: 50 and 2 MiB a day"
    assert (b.message_requests_per_device_per_day, b.message_request_bytes_per_device_per_day) == (10, 512 * KIB)
    assert (b.message_requests_per_peer_per_day, b.message_request_bytes_per_peer_per_day) == (50, 2 * MIB)
    # "Message requests per mailbox | ... at most 100 envelopes / 4 MiB at once"
    assert (b.message_requests_per_mailbox, b.message_request_bytes_per_mailbox) == (100, 4 * MIB)
    # "Lookups this node makes at other nodes for one device | 5 a second after a burst of 100"
    assert (b.device_lookups_per_second, b.device_lookups_burst) == (5, 100)
    # "Bytes of attachments this node fetches ... for one device | 16 MiB a second after a burst of 256 MiB"
    assert (b.device_remote_blob_bytes_per_second, b.device_remote_blob_bytes_burst) == (16 * MIB, 256 * MIB)
    # "Group items waiting in one device mailbox | 20,000 items, 512 MiB (twice the mailbox quota)"
    assert (b.group_items_per_device, b.group_bytes_per_device) == (20_000, 512 * MIB) and b.group_bytes_per_device == 2 * c.mailbox_max_bytes
    # "Register / LinkComplete that reach the signature checks ... | 1 a second after a burst of 60,
    # and 130 signature checks a second after 7,800 ...; 3 per connection"
    assert (b.registrations_per_address_per_second, b.registrations_per_address_burst) == (1, 60)
    assert (b.registration_checks_per_second, b.registration_checks_burst) == (130, 7_800)
    assert b.registrations_per_connection == 3
    # "Expensive requests of one device | 50 a second after a burst of 1000; 4 MiB a second of answers after 64 MiB"
    assert (b.device_requests_per_second, b.device_requests_burst) == (50, 1000)
    assert (b.device_bytes_per_second, b.device_bytes_burst) == (4 * MIB, 64 * MIB)
    # "Lookups of one peer node | 50 a second after 500; 4 MiB a second of answers after 64 MiB"
    assert (b.peer_requests_per_second, b.peer_requests_burst) == (50, 500)
    assert (b.peer_bytes_per_second, b.peer_bytes_burst) == (4 * MIB, 64 * MIB)
    # Attachments: "[blobs] retention_days, 30 by default"
    assert c.blobs.retention_days == 30


def test_fixed_limits_are_the_documented_ones() -> None:
    # "WebSocket message before authentication | 16 KiB ...; at most that plus one 64 KiB read"
    assert limits.MAX_HANDSHAKE_MESSAGE_BYTES == 16 * KIB and websocket.READ_BYTES == 64 * KIB
    # "WebSocket message on /client before the device has an account | ~0.83 MiB ...; 4 MiB + 64 once it has one"
    assert 0.82 * MIB < limits.MAX_UNREGISTERED_RECORD_BYTES < 0.84 * MIB
    assert limits.MAX_RECORD_BYTES == 4 * MIB + 64
    # "WebSocket pings and pongs from the other side | 16 at once, then one a second"
    assert (websocket.CONTROL_BURST, websocket.CONTROL_INTERVAL_S) == (16, 1.0)
    # "Pieces of one WebSocket message | 16 + the message cap / 64"
    assert (websocket.PIECES_FREE, websocket.PIECE_BYTES) == (16, 64)
    # "Tarpit | ... for 60 s at most"; "Log lines about refused ... connections | one summary line per 10 s"
    assert server.TARPIT_S == 60 and log_summary.SUMMARY_INTERVAL_S == 10
    # "Connections held at once | ... never more than the open-file limit minus 128"
    assert server.FD_RESERVE == 128
    # "Bytes in one Deliver frame | 1 MiB of envelope bodies, 128 envelopes"
    assert (DELIVER_BYTES, DELIVER_BATCH) == (1 * MIB, 128)
    # "One-time MLS KeyPackages a device holds; bytes of each | 100; 16 KiB"
    assert (limits.MAX_ONE_TIME_KEY_PACKAGES, limits.MAX_KEY_PACKAGE_BYTES) == (100, 16 * KIB)
    # "One-time prekeys a new device brings in its Register / LinkComplete | 64 of each kind (the client brings 60)"
    from sonet.client.prekeys import TARGET

    assert (limits.MAX_FIRST_ONE_TIME_PREKEYS, TARGET) == (64, 60)
    # "Link slots per source address; node-wide | 64; 1024"; a link code is valid 10 minutes (README)
    assert limits.MAX_LINK_SLOTS == 1024 and limits.MAX_LINK_SLOTS // 16 == 64
    assert limits.LINK_SLOT_TTL_MS == 10 * 60 * 1000
    # "Body of an ephemeral envelope (typing) | 32 KiB"
    assert limits.MAX_EPHEMERAL_BODY == 32 * KIB
    # "Replayed first handshake messages remembered | 10 minutes, at most 65,536"; "10,000 addresses remembered"
    g = GuardSettings()
    assert (g.replay_window_ms, g.replay_entries, g.max_addresses) == (10 * 60 * 1000, 65_536, 10_000)
    # message requests: "50,000 mailboxes and 20,000 (sender, mailbox) pairs remembered"
    assert (MAILBOX_KEYS, SENDER_KEYS) == (50_000, 20_000)
    # "(a peer grants this whole node 20 a second after 100)"; one-time prekeys "a peer: 64, then 16 a minute"
    f = FederationSettings()
    assert (f.query_rate.per_second, f.query_rate.burst) == (20, 100)
    assert (f.one_time_rate.burst, f.one_time_rate.per_second * 60) == (64, pytest.approx(16))
    # audit log: "one entry per distinct event ... per 10 s"
    assert INTERVAL_S == 10
    # removed devices: "remembers each removal for 30 days ... at most 32 of them"
    assert (limits.REMOVED_DEVICE_GRACE_MS, limits.MAX_REMOVED_DEVICES) == (30 * DAY_MS, 32)
    # "A remote account's device list is cached in memory for 30 s (up to a day while its node cannot answer)"
    from sonet.federation.service import STALE_DEVICES_MS

    assert (limits.REMOTE_DEVICES_TTL_MS, STALE_DEVICES_MS) == (30_000, DAY_MS)
    # "deliveries | ... 7 days after it became final"; relay reports "handed on (7 days at most)"
    from sonet.federation.transit import REPORT_TTL_MS
    from sonet.node.store.base import DELIVERY_GRACE_MS

    assert DELIVERY_GRACE_MS == REPORT_TTL_MS == 7 * DAY_MS
    # "an envelope that arrived with less than 29 days to live" is a short-lived one
    from sonet.node.store.vanishing import SHORT_LIVED_MS

    assert SHORT_LIVED_MS == 29 * DAY_MS
    # Deleted messages: "a delete only within 48 hours of the message"
    assert limits.DELETE_WINDOW_MS == 48 * HOUR_MS
    # Calls: "their envelopes expire after the ring time (60 s)"
    from sonet.core.call import CallTimeouts

    assert CallTimeouts().ring_ms == 60_000
    # Key transparency: "An audit reads at most 4096 leaves per connection ...; a head claiming more
    # than a million new leaves is an alert"
    from sonet.client.monitor import MAX_AUDIT_GROWTH, MAX_AUDIT_LEAVES

    assert (MAX_AUDIT_LEAVES, MAX_AUDIT_GROWTH) == (4096, 1_000_000)
    # Sessions: "the owner starts it after 20 messages of the current epoch, then 3 messages carry
    # the key and 3 the ciphertext"
    from sonet.core.ratchet.epochs import _TOTALS, CT, EK, EPOCH_INTERVAL

    assert (EPOCH_INTERVAL, _TOTALS[EK], _TOTALS[CT]) == (20, 3, 3)
    # "Attachment writes (BlobCreate, BlobPut, BlobExpire) per device; per account | 100 a second
    # after 500; 200 a second after 1000" (tests/node/test_attack9_blob_writes.py drives them)
    lim = node_limits()
    assert (lim._blob_writes.rate.per_second, lim._blob_writes.rate.burst) == (100, 500)
    assert (lim._blob_writes_per_account.rate.per_second, lim._blob_writes_per_account.rate.burst) == (200, 1000)
    # Attachments, thumbnails: "only ... whose header says at most 50 megapixels are decoded",
    # "scaled to fit 256x256"; a receiving device refuses one "not 1..24 KiB ... with sides 1..256"
    from sonet.client.thumbnails import MAX_SOURCE_PIXELS
    from sonet.core.thumbnail import MAX_THUMBNAIL_BYTES, MAX_THUMBNAIL_SIDE

    assert (MAX_SOURCE_PIXELS, MAX_THUMBNAIL_BYTES, MAX_THUMBNAIL_SIDE) == (50_000_000, 24 * KIB, 256)
    # Federation, typing and presence: "a node of several processes keeps one for 10 s in its database"
    from sonet.node.store.postgres_cluster import EPHEMERAL_TTL_S

    assert EPHEMERAL_TTL_S == 10
    # Access tokens: "the epoch 30 days"
    from sonet.core.access import ACCESS_EPOCH_MS

    assert ACCESS_EPOCH_MS == 30 * DAY_MS


# Per-device limits at their defaults ---------------------------------------------------------


async def test_prekey_bundles_of_one_account_every_device_twice_then_16_an_hour() -> None:
    # "Prekey bundles one device fetches of one account | every device of the account twice (32), then 16 an hour"
    clock = Clock()
    lim, conn = node_limits(), Conn(Ctx(clock), "dev-a")
    every = tuple(range(1, limits.MAX_DEVICES_PER_ACCOUNT + 1))
    assert len(every) == 16
    for _ in range(2):
        await lim.check(conn, FetchBundles(request=1, account=ALICE, devices=every))
    assert "too many prekey bundles of" in await refused(lim, conn, FetchBundles(request=1, account=ALICE, devices=(1,)))
    clock.ms += HOUR_MS // 16  # one back
    await lim.check(conn, FetchBundles(request=1, account=ALICE, devices=(1,)))
    await refused(lim, conn, FetchBundles(request=1, account=ALICE, devices=(1,)))
    clock.ms += HOUR_MS
    await lim.check(conn, FetchBundles(request=1, account=ALICE, devices=every))


def test_one_time_prekeys_48_per_asking_account_then_16_an_hour() -> None:
    # "One-time prekeys handed out per (asking account, account asked about) | 48, then 16 an hour"
    clock = Clock()
    lim = node_limits()
    ctx = Ctx(clock)
    asking = [Conn(ctx, f"dev-m{i}", account="mallory@alpha.example") for i in range(3)]
    for conn in asking:  # three devices of one account: one allowance
        assert lim.one_time_allowed(conn, ALICE, 16)  # type: ignore[arg-type]
    assert not lim.one_time_allowed(asking[0], ALICE, 1)  # type: ignore[arg-type]
    clock.ms += HOUR_MS
    assert lim.one_time_allowed(asking[0], ALICE, 16)  # type: ignore[arg-type]
    assert not lim.one_time_allowed(asking[0], ALICE, 1)  # type: ignore[arg-type]


async def test_key_packages_500_per_device_then_one_a_second() -> None:
    # "MLS KeyPackages one device fetches (FetchKeyPackages) | 500, then 1 a second"
    clock = Clock()
    ctx = Ctx(clock, {f"u{i}@alpha.example": 1 for i in range(600)})
    lim, conn = node_limits(), Conn(ctx, "dev-a")
    for i in range(500):  # 500 accounts of one device each: the per-account buckets stay apart
        await lim.check(conn, FetchKeyPackages(request=1, account=f"u{i}@alpha.example"))
    message = await refused(lim, conn, FetchKeyPackages(request=1, account="u500@alpha.example"))
    assert message.startswith("too many KeyPackages fetched by this device")
    clock.ms += 1000
    await lim.check(conn, FetchKeyPackages(request=1, account="u500@alpha.example"))
    await refused(lim, conn, FetchKeyPackages(request=1, account="u501@alpha.example"))


def _submit() -> GroupSubmit:
    return GroupSubmit(request=1, ref=bytes(16), group=bytes(16), hub="alpha.example", message=b"m", welcome=b"")


def _create() -> CreateGroup:
    return CreateGroup(request=1, group=bytes(16), group_info=b"i", ratchet_tree=b"t")


async def test_group_submits_per_device_300_then_1_a_second_per_account_600_then_2() -> None:
    # "GroupSubmit per device; per account (all its devices) | 1 a second after 300; 2 a second after 600"
    clock = Clock()
    ctx = Ctx(clock)
    lim = node_limits()
    first, second, third = (Conn(ctx, f"dev-{i}") for i in range(3))
    for _ in range(300):
        await lim.check(first, _submit())
    assert (await refused(lim, first, _submit())).startswith("too many group messages from this device")
    for _ in range(300):
        await lim.check(second, _submit())
    # the account's 600 are spent: its third device, with a full bucket of its own, is refused
    assert (await refused(lim, third, _submit())).startswith(f"too many group messages from the devices of {ALICE}")
    clock.ms += 500  # half a second: one for the account, none yet for the first device
    await refused(lim, first, _submit())
    await lim.check(third, _submit())
    await refused(lim, third, _submit())


async def test_create_group_per_device_20_per_account_40_then_as_many_an_hour() -> None:
    # "CreateGroup per device; per account | 20, then 20 an hour; 40, then 40 an hour"
    clock = Clock()
    ctx = Ctx(clock)
    lim = node_limits()
    first, second, third = (Conn(ctx, f"dev-{i}") for i in range(3))
    for conn in (first, second):
        for _ in range(20):
            await lim.check(conn, _create())
        assert (await refused(lim, conn, _create())).startswith("too many new groups from this device")
    assert (await refused(lim, third, _create())).startswith(f"too many new groups from the devices of {ALICE}")
    clock.ms += HOUR_MS // 40  # one for the account, not yet for a device (one per 3 minutes)
    await lim.check(third, _create())
    await refused(lim, third, _create())
    await refused(lim, first, _create())
    clock.ms += HOUR_MS
    for _ in range(20):
        await lim.check(first, _create())


async def test_link_begin_30_per_address_then_1_a_second_and_3_per_connection() -> None:
    # "LinkBegin of connections without an account per source address; per connection | 1 a second after a burst of 30; 3"
    clock = Clock()
    ctx = Ctx(clock)
    lim = node_limits()

    def begin() -> LinkBegin:
        return LinkBegin(request=1, ephemeral=b"e" * 32)

    one = Conn(ctx, "new-0", registered=False, source="198.51.100.1")
    for _ in range(3):
        await lim.check(one, begin())
    assert (await refused(lim, one, begin())).startswith("too many link attempts on this connection")
    for i in range(1, 28):  # 27 more connections: 30 from the address
        await lim.check(Conn(ctx, f"new-{i}", registered=False, source="198.51.100.1"), begin())
    late = Conn(ctx, "new-late", registered=False, source="198.51.100.1")
    assert (await refused(lim, late, begin())).startswith("too many devices are starting to link from this address")
    await lim.check(Conn(ctx, "elsewhere", registered=False, source="203.0.113.5"), begin())
    clock.ms += 1000
    await lim.check(late, begin())


def test_registrations_3_per_connection_and_60_per_address_then_1_a_second() -> None:
    # Register / LinkComplete: "1 a second after a burst of 60, and 130 signature checks a second
    # after 7,800 (a registration is ~130); 3 per connection"
    clock = Clock()
    ctx = Ctx(clock)
    lim = node_limits()
    conn = Conn(ctx, "new-0", registered=False, source="198.51.100.2")
    for _ in range(3):
        lim.admit_registration(conn, 130)  # type: ignore[arg-type]
    with pytest.raises(RequestError) as info:
        lim.admit_registration(conn, 130)  # type: ignore[arg-type]
    assert (info.value.code, str(info.value)) == (
        "rate_limited",
        "too many registration attempts on this connection; reconnect to try again",
    )
    for i in range(57):  # 60 from the address in all
        lim.admit_registration(Conn(ctx, f"new-{i + 1}", registered=False, source="198.51.100.2"), 130)  # type: ignore[arg-type]
    with pytest.raises(RequestError) as info:
        lim.admit_registration(Conn(ctx, "new-late", registered=False, source="198.51.100.2"), 130)  # type: ignore[arg-type]
    assert str(info.value).startswith("too many registrations from this address; try again in")
    lim.admit_registration(Conn(ctx, "other", registered=False, source="203.0.113.6"), 130)  # type: ignore[arg-type]
    clock.ms += 1000
    lim.admit_registration(Conn(ctx, "new-later", registered=False, source="198.51.100.2"), 130)  # type: ignore[arg-type]


# The handshake guard, the message-request allowance and the audit stream at their defaults ---


def test_the_handshake_guard_of_a_default_node() -> None:
    config = defaults()
    # per address: 100 at once, then 20 a second (the load rate is raised so that only the share acts)
    settings = config.handshake_guard
    relaxed = GuardSettings(
        max_in_progress=10_000, load_rate=settings.load_rate.__class__(per_second=1e6, burst=1e6), per_address=settings.per_address
    )
    g = HandshakeGuard(relaxed, rng=lambda n: bytes(n))
    home = b"192.0.2.50"
    for n in range(100):
        assert g.screen(home, hello(n), 0) is None
    with pytest.raises(RemoteProtocolError) as info:
        g.screen(home, hello(100), 0)
    assert info.value.code == "rate_limited"
    assert g.screen(home, hello(100), 50) is None  # 20 a second: one back after 50 ms
    # a replay is refused for the 10 minutes, then worked on once more
    with pytest.raises(RemoteProtocolError) as info:
        g.screen(b"192.0.2.51", hello(1), 10 * 60 * 1000 - 1)
    assert info.value.code == "replayed"
    # the node's own guard: under load (a cookie) once 32 handshakes are under way
    loaded = HandshakeGuard(settings, rng=lambda n: bytes(n))
    for n in range(32):
        assert loaded.screen(f"198.51.100.{n}".encode(), hello(1_000 + n), 0) is None
    assert loaded.screen(b"198.51.100.99", hello(2_000), 0) is not None
    loaded.release()
    assert loaded.screen(b"198.51.100.99", hello(2_000), 0) is None


def test_message_requests_of_a_default_node() -> None:
    config = defaults()
    allowance = RequestAllowance.for_quota(storage_quota(config), envelope_ttl_ms=config.envelope_ttl_ms, caps=config.budgets.message_requests)
    # per (sending device, mailbox): 10 envelopes and 512 KiB, refilled over a day
    assert (allowance.per_device.burst, allowance.per_device.per_second * 86_400) == (10, pytest.approx(10))
    assert (allowance.per_device_bytes.burst, allowance.per_device_bytes.per_second * 86_400) == (512 * KIB, pytest.approx(512 * KIB))
    assert (allowance.per_peer.burst, allowance.per_peer_bytes.burst) == (50, 2 * MIB)
    # per mailbox: "refill of half the mailbox quota (envelopes and bytes) over one envelope TTL;
    # at most 100 envelopes / 4 MiB at once"
    ttl_s = config.envelope_ttl_ms / 1000
    assert allowance.per_mailbox.per_second * ttl_s == pytest.approx(10_000 / 2)
    assert allowance.per_mailbox_bytes.per_second * ttl_s == pytest.approx(256 * MIB / 2)
    assert (allowance.per_mailbox.burst, allowance.per_mailbox_bytes.burst) == (100, 4 * MIB)


def test_the_audit_stream_of_a_default_node(tmp_path) -> None:  # noqa: ANN001
    # "one entry per distinct event (kind, actor, code) per 10 s with its count, at most 64 per
    # interval and 0.5 per second over time; the rest is counted in an audit_dropped entry";
    # "Network text in fields is cut to 200 characters"
    stream, _key, clock = _stream(tmp_path)
    for i in range(100):
        stream.hear("handshake_refused", {"address": f"10.0.0.{i}", "code": "malformed"})
    stream.hear("handshake_refused", {"address": "10.0.0.0", "code": "malformed"})  # the same event: a count
    stream.write()
    entries = read_entries(tmp_path)
    assert [e.kind for e in entries] == ["handshake_refused"] * 64 + ["audit_dropped"]
    assert entries[0].fields["count"] == 2 and entries[-1].fields["events"] == 36
    # over time: 200 at once in all, then 0.5 a second (5 in a 10 s interval)
    def interval(name: str) -> int:
        for i in range(64):
            stream.hear("rate_limited", {"peer": f"{name}{i}.example", "limit": "peer_requests"})
        stream.write()
        return sum(1 for e in read_entries(tmp_path) if e.kind == "rate_limited" and e.fields["peer"].startswith(name))

    assert [interval(name) for name in ("a", "b", "c")] == [64, 64, 8]  # with the 64 above: 200
    assert interval("d") == 0
    clock.ms += 10_000
    assert interval("e") == 5
    clock.ms += 10_000
    stream.hear("handshake_refused", {"address": "x" * 5_000, "code": "y" * 300})
    stream.write()
    last = [e for e in read_entries(tmp_path) if e.kind == "handshake_refused"][-1]
    assert (last.fields["address"], last.fields["code"]) == ("x" * 200, "y" * 200)
