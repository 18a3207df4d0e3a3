"""Per-device rate limits on the ``/client`` API (node/client_limits.py).

The unit tests drive ``ClientLimits`` with stand-in sessions and a clock they move by hand; the
last tests run a real node whose context carries small limits and such a clock, and talk to it
over raw connections (tests/node/kit.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio

from sonet.core import limits as core_limits
from sonet.core.client_api import Accepted, FetchBundles, FetchDevices, FetchHead, LinkBegin, Ping, Pong, SendBatch
from sonet.core.envelope import Kind
from sonet.core.errors import RemoteProtocolError
from sonet.federation.errors import FederationError
from sonet.federation.lookup_charge import charge_lookup
from sonet.federation.ratelimit import Rate
from sonet.node.client_checks import RequestError
from sonet.node.client_limits import ENVELOPES, EPHEMERAL, ClientLimits

from .conftest import HANG_S, NODE_NAME, NodeParams, RunningNode, StartNode
from .kit import NodeError, opaque_envelope, wall_ms

ALICE = f"alice@{NODE_NAME}"
REMOTE = "carol@beta.example"

#: so slow that no token comes back while a test runs unless the test moves the clock
NEVER = 1e-9


class Clock:
    def __init__(self, start: int = 1_000_000) -> None:
        self.ms = start

    def __call__(self) -> int:
        return self.ms


class Devices:
    """The one store method the limits read: how many devices an account has."""

    def __init__(self, counts: dict[str, int]) -> None:
        self._counts = counts

    async def devices(self, account: str) -> list[object]:
        return [object()] * self._counts.get(account, 0)


class Peer:
    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint


class Ctx:
    def __init__(self, clock: Clock, counts: dict[str, int] | None = None) -> None:
        self.name = NODE_NAME
        self.clock_ms = clock
        self.store = Devices(counts or {})


class Conn:
    """One connection, as ``ClientLimits`` sees a session (compared by identity)."""

    def __init__(self, ctx: Ctx, fingerprint: str, *, registered: bool = True, source: str = "192.0.2.1", account: str = ALICE) -> None:
        self.ctx = ctx
        self.peer = Peer(fingerprint)
        self.mailbox = (account, 1) if registered else None
        self.source = source
        #: the ids this connection delivered and has not seen acknowledged
        self.in_flight: set[bytes] = set()

    def delivered_here(self, ids: Sequence[bytes]) -> int:
        return sum(1 for i in ids if i in self.in_flight)


def batch(sealed: int = 0, ephemeral: int = 0) -> SendBatch:
    envs = [opaque_envelope((ALICE, 1)) for _ in range(sealed)]
    envs += [opaque_envelope((ALICE, 1), kind=Kind.EPHEMERAL) for _ in range(ephemeral)]
    return SendBatch(request=1, envelopes=tuple(envs))


def bundles(account: str = ALICE, devices: tuple[int, ...] = ()) -> FetchBundles:
    return FetchBundles(request=1, account=account, devices=devices)


def link_begin() -> LinkBegin:
    return LinkBegin(request=1, ephemeral=b"e" * 32)


async def refused(limits: ClientLimits, conn: Conn, frame: object) -> str:
    """The message of the rate_limited refusal of ``frame``."""
    with pytest.raises(RequestError) as info:
        await limits.check(conn, frame)  # type: ignore[arg-type]
    assert info.value.code == "rate_limited"
    return str(info.value)


# Token buckets per device -------------------------------------------------------------------


async def test_envelopes_pass_up_to_the_burst_then_refill_with_time() -> None:
    clock = Clock()
    limits = ClientLimits(envelopes=Rate(per_second=10, burst=20))
    conn = Conn(Ctx(clock), "dev-a")
    await limits.check(conn, batch(sealed=15))
    await limits.check(conn, batch(sealed=5))
    message = await refused(limits, conn, batch(sealed=1))
    assert message == "too many messages from this device; try again in a moment"
    clock.ms += 100  # one envelope's worth
    await limits.check(conn, batch(sealed=1))
    await refused(limits, conn, batch(sealed=1))
    clock.ms += 10_000  # refilled to the burst, never beyond it
    await limits.check(conn, batch(sealed=20))
    await refused(limits, conn, batch(sealed=1))


async def test_a_batch_costs_one_token_per_envelope() -> None:
    limits = ClientLimits(envelopes=Rate(per_second=NEVER, burst=10))
    conn = Conn(Ctx(Clock()), "dev-a")
    await refused(limits, conn, batch(sealed=11))
    await limits.check(conn, batch(sealed=10))  # the refused batch spent nothing of this bucket


async def test_one_device_flooding_does_not_limit_another() -> None:
    clock = Clock()
    limits = ClientLimits(envelopes=Rate(per_second=NEVER, burst=5), bundles=Rate(per_second=NEVER, burst=2))
    ctx = Ctx(clock, {ALICE: 1})
    mallory, alice = Conn(ctx, "dev-mallory"), Conn(ctx, "dev-alice")
    await limits.check(mallory, batch(sealed=5))
    await limits.check(mallory, bundles(devices=(1, 2)))
    await refused(limits, mallory, batch(sealed=1))
    await refused(limits, mallory, bundles(devices=(1,)))
    await limits.check(alice, batch(sealed=5))
    await limits.check(alice, bundles(devices=(1, 2)))


async def test_a_device_does_not_get_fresh_buckets_by_reconnecting() -> None:
    limits = ClientLimits(envelopes=Rate(per_second=NEVER, burst=5))
    ctx = Ctx(Clock())
    await limits.check(Conn(ctx, "dev-a"), batch(sealed=5))
    await refused(limits, Conn(ctx, "dev-a"), batch(sealed=1))


async def test_ephemeral_envelopes_have_their_own_bucket() -> None:
    limits = ClientLimits(envelopes=Rate(per_second=NEVER, burst=5), ephemeral=Rate(per_second=NEVER, burst=3))
    conn = Conn(Ctx(Clock()), "dev-a")
    await limits.check(conn, batch(ephemeral=3))
    message = await refused(limits, conn, batch(ephemeral=1))
    assert message == "too many typing or presence updates from this device; try again in a moment"
    await limits.check(conn, batch(sealed=5))  # a typing flood does not stop messages
    await refused(limits, conn, batch(sealed=1))


@pytest.mark.parametrize("kind", ["sealed", "ephemeral"])
async def test_default_limits_take_full_batches_until_the_burst_is_spent(kind: str) -> None:
    limits = ClientLimits()
    conn = Conn(Ctx(Clock()), "dev-a")
    full = core_limits.MAX_ENVELOPES_PER_FRAME
    rate = ENVELOPES if kind == "sealed" else EPHEMERAL
    assert rate.burst >= full  # a full batch can always pass once the bucket has refilled
    for _ in range(int(rate.burst // full)):
        await limits.check(conn, batch(**{kind: full}))
    await refused(limits, conn, batch(**{kind: full}))


# Prekey bundles -----------------------------------------------------------------------------


async def test_bundles_cost_one_token_per_distinct_device_asked() -> None:
    limits = ClientLimits(bundles=Rate(per_second=NEVER, burst=3))
    conn = Conn(Ctx(Clock()), "dev-a")
    await limits.check(conn, bundles(devices=(1, 2, 2)))  # two bundles
    await limits.check(conn, bundles(devices=(3,)))
    message = await refused(limits, conn, bundles(devices=(1,)))
    assert message == "too many prekey bundles fetched by this device; try again in a moment"


async def test_bundles_for_all_devices_cost_the_accounts_device_count() -> None:
    limits = ClientLimits(bundles=Rate(per_second=NEVER, burst=5))
    conn = Conn(Ctx(Clock(), {ALICE: 3}), "dev-a")
    await limits.check(conn, bundles(ALICE.upper()))  # addresses are normalised: alice's 3
    await limits.check(conn, bundles(devices=(1, 2)))
    await refused(limits, conn, bundles(devices=(1,)))


async def test_bundles_for_all_devices_of_a_remote_account_cost_the_most_an_account_has() -> None:
    most = core_limits.MAX_DEVICES_PER_ACCOUNT
    limits = ClientLimits(bundles=Rate(per_second=NEVER, burst=most))
    ctx = Ctx(Clock())
    conn = Conn(ctx, "dev-a")
    await limits.check(conn, bundles(REMOTE))
    await refused(limits, conn, bundles(REMOTE, devices=(1,)))
    # asking for more devices than an account can have is charged as a full account, not refused
    # here for ever (the handler answers it)
    other = Conn(ctx, "dev-b")
    await limits.check(other, bundles(devices=tuple(range(1, 100))))
    await refused(limits, other, bundles(devices=(1,)))


async def test_bundles_with_a_bad_address_cost_one_token() -> None:
    limits = ClientLimits(bundles=Rate(per_second=NEVER, burst=2))
    conn = Conn(Ctx(Clock()), "dev-a")
    await limits.check(conn, bundles("not an address"))
    await limits.check(conn, bundles(devices=(1,)))
    await refused(limits, conn, bundles(devices=(1,)))


# Linking ------------------------------------------------------------------------------------


async def test_link_begin_is_capped_per_connection() -> None:
    limits = ClientLimits(link_begins_per_connection=2)
    ctx = Ctx(Clock())
    conn = Conn(ctx, "new-device", registered=False)
    await limits.check(conn, link_begin())
    await limits.check(conn, link_begin())
    message = await refused(limits, conn, link_begin())
    assert message == "too many link attempts on this connection; reconnect to begin again"
    await limits.check(Conn(ctx, "new-device", registered=False), link_begin())


async def test_link_begins_are_limited_per_address_so_a_flood_from_one_blocks_no_other() -> None:
    clock = Clock()
    limits = ClientLimits(link_begins_per_address=Rate(per_second=1, burst=2))
    ctx = Ctx(clock)
    # fresh keys cost nothing: each connection below is a different "device", same address
    flooder = "198.51.100.7"
    await limits.check(Conn(ctx, "new-1", registered=False, source=flooder), link_begin())
    await limits.check(Conn(ctx, "new-2", registered=False, source=flooder), link_begin())
    message = await refused(limits, Conn(ctx, "new-3", registered=False, source=flooder), link_begin())
    assert message == "too many devices are starting to link from this address; try again in a moment"
    # another address is not affected by the flood
    await limits.check(Conn(ctx, "new-4", registered=False, source="203.0.113.9"), link_begin())
    await limits.check(Conn(ctx, "new-5", registered=False, source="203.0.113.9"), link_begin())
    # a registered device's LinkBegin (refused by the handler) spends nothing of its address's
    await limits.check(Conn(ctx, "old-1", source=flooder), link_begin())
    clock.ms += 1000
    await limits.check(Conn(ctx, "new-6", registered=False, source=flooder), link_begin())
    await refused(limits, Conn(ctx, "new-7", registered=False, source=flooder), link_begin())


# Registrations ----------------------------------------------------------------------------------


def test_registrations_are_charged_per_address_in_count_and_signature_checks() -> None:
    clock = Clock()
    limits = ClientLimits(
        registrations_per_address=Rate(per_second=1, burst=10),
        registration_checks_per_address=Rate(per_second=100, burst=300),
        registrations_per_connection=3,
    )
    ctx = Ctx(clock)
    flooder = "198.51.100.7"
    # fresh keys and connections cost nothing: the address pays the checks
    limits.admit_registration(Conn(ctx, "new-1", registered=False, source=flooder), 130)  # type: ignore[arg-type]
    limits.admit_registration(Conn(ctx, "new-2", registered=False, source=flooder), 130)  # type: ignore[arg-type]
    with pytest.raises(RequestError) as info:  # 40 checks left, 130 needed
        limits.admit_registration(Conn(ctx, "new-3", registered=False, source=flooder), 130)  # type: ignore[arg-type]
    assert (info.value.code, str(info.value)) == ("rate_limited", "too many registrations from this address; try again in 1.0 s")
    # another address has its own budget
    limits.admit_registration(Conn(ctx, "new-4", registered=False, source="203.0.113.9"), 130)  # type: ignore[arg-type]
    clock.ms += 900
    limits.admit_registration(Conn(ctx, "new-5", registered=False, source=flooder), 130)  # type: ignore[arg-type]
    # per connection: a few attempts, whatever is left at the address
    conn = Conn(ctx, "new-6", registered=False, source="192.0.2.44")
    for _ in range(3):
        limits.admit_registration(conn, 2)  # type: ignore[arg-type]
    with pytest.raises(RequestError) as info:
        limits.admit_registration(conn, 2)  # type: ignore[arg-type]
    assert str(info.value) == "too many registration attempts on this connection; reconnect to try again"


# Lookups at other nodes ---------------------------------------------------------------------


def charge(limits: ClientLimits, conn: Conn, node: str = "beta.example") -> None:
    """One lookup going out to ``node`` on ``conn``'s behalf (what Federation._ask does)."""
    with limits.charging_lookups(conn):  # type: ignore[arg-type]
        charge_lookup(node)


def test_lookups_at_other_nodes_are_budgeted_per_device() -> None:
    clock = Clock()
    limits = ClientLimits(lookups=Rate(per_second=1, burst=3))
    ctx = Ctx(clock)
    mallory, alice = Conn(ctx, "dev-mallory"), Conn(ctx, "dev-alice")
    for _ in range(3):
        charge(limits, mallory)
    with pytest.raises(FederationError) as info:
        charge(limits, mallory)
    assert (info.value.code, str(info.value)) == ("rate_limited", "too many lookups at other nodes from this device; try again in a moment")
    # the flood spent only mallory's share; a reconnect (a new connection) gets no new one
    charge(limits, alice)
    with pytest.raises(FederationError):
        charge(limits, Conn(ctx, "dev-mallory"))
    clock.ms += 1000
    charge(limits, mallory)
    # outside a request's handler nothing is charged
    for _ in range(5):
        charge_lookup("beta.example")


async def test_requests_that_look_up_at_other_nodes_spend_nothing_before_they_go_out() -> None:
    limits = ClientLimits(lookups=Rate(per_second=NEVER, burst=1))
    ctx = Ctx(Clock())
    conn = Conn(ctx, "dev-a")
    remote = [opaque_envelope((f"user{n}@beta.example", 1)) for n in range(4)]
    for _ in range(3):  # the check alone spends no lookup: only what goes out is charged
        await limits.check(conn, FetchDevices(request=1, account=REMOTE))
        await limits.check(conn, FetchHead(request=1, node="beta.example"))
        await limits.check(conn, SendBatch(request=1, envelopes=tuple(remote)))
    charge(limits, conn)
    with pytest.raises(FederationError):
        charge(limits, conn)


# One-time prekeys ---------------------------------------------------------------------------


async def test_bundles_of_one_account_are_limited_per_asking_device() -> None:
    limits = ClientLimits(bundles_per_account=Rate(per_second=NEVER, burst=3))
    ctx = Ctx(Clock())
    mallory = Conn(ctx, "dev-mallory")
    await limits.check(mallory, bundles(devices=(1, 2, 3)))
    message = await refused(limits, mallory, bundles(devices=(1,)))
    assert message == f"too many prekey bundles of {ALICE} fetched by this device; try again in a moment"
    await limits.check(mallory, bundles("dave@" + NODE_NAME, devices=(1,)))  # another account
    await limits.check(Conn(ctx, "dev-bob"), bundles(devices=(1, 2, 3)))  # another device


async def test_a_contact_on_another_node_can_be_named_in_four_groups_at_once_then_one_a_minute() -> None:
    # Found by newbie10: KeyPackages of one account shared the prekey bundles' rate (32, then
    # 16 an hour), and another node's account costs 16 (its device count is not known before
    # asking): the third group naming a contact on another node was refused for about an hour.
    from sonet.core.client_api import FetchKeyPackages

    clock = Clock()
    limits = ClientLimits()
    ctx = Ctx(clock)
    alice = Conn(ctx, "dev-alice")
    fetch = FetchKeyPackages(request=1, account=REMOTE)
    for _ in range(4):
        await limits.check(alice, fetch)
    message = await refused(limits, alice, fetch)
    assert message == f"too many KeyPackages of {REMOTE} fetched by this device; try again in a moment"
    await limits.check(alice, FetchKeyPackages(request=1, account="dave@beta.example"))  # another contact
    clock.ms += 60_000
    await limits.check(alice, fetch)
    await refused(limits, alice, fetch)


def test_one_time_prekeys_are_handed_out_within_an_allowance_per_asking_account() -> None:
    limits = ClientLimits(one_time_per_account=Rate(per_second=NEVER, burst=4))
    ctx = Ctx(Clock())
    mallory = f"mallory@{NODE_NAME}"
    first, second = Conn(ctx, "dev-m1", account=mallory), Conn(ctx, "dev-m2", account=mallory)
    assert limits.one_time_allowed(first, ALICE, 3)  # type: ignore[arg-type]
    assert not limits.one_time_allowed(first, ALICE, 2)  # type: ignore[arg-type]
    # a new device of the same account does not get a new allowance
    assert limits.one_time_allowed(second, ALICE, 1)  # type: ignore[arg-type]
    assert not limits.one_time_allowed(second, ALICE, 1)  # type: ignore[arg-type]
    # other accounts asked about, and other asking accounts, have their own
    assert limits.one_time_allowed(first, "dave@" + NODE_NAME, 4)  # type: ignore[arg-type]
    assert limits.one_time_allowed(Conn(ctx, "dev-b", account="bob@" + NODE_NAME), ALICE, 4)  # type: ignore[arg-type]


# Requests per connection, and persistent abuse ----------------------------------------------


async def test_requests_of_any_kind_are_capped_per_connection() -> None:
    clock = Clock()
    limits = ClientLimits(requests=Rate(per_second=2, burst=3))
    ctx = Ctx(clock)
    conn = Conn(ctx, "dev-a")
    for _ in range(3):
        await limits.check(conn, Ping(request=1))
    message = await refused(limits, conn, Ping(request=1))
    assert message == "too many requests on this connection; try again in a moment"
    await limits.check(Conn(ctx, "dev-a"), Ping(request=1))  # another connection has its own
    clock.ms += 500
    await limits.check(conn, Ping(request=1))


async def test_a_connection_that_keeps_hammering_is_closed() -> None:
    clock = Clock()
    limits = ClientLimits(requests=Rate(per_second=1, burst=1), refusals_before_disconnect=3)
    conn = Conn(Ctx(clock), "dev-a")
    await limits.check(conn, Ping(request=1))
    for _ in range(3):
        await refused(limits, conn, Ping(request=1))
    with pytest.raises(RemoteProtocolError) as info:
        await limits.check(conn, Ping(request=1))  # type: ignore[arg-type]
    assert info.value.code == "rate_limited"
    assert str(info.value) == "more than 3 requests in a row were over the rate limit"


async def test_a_request_that_passes_ends_the_run_of_refusals() -> None:
    clock = Clock()
    limits = ClientLimits(requests=Rate(per_second=1, burst=1), refusals_before_disconnect=3)
    conn = Conn(Ctx(clock), "dev-a")
    await limits.check(conn, Ping(request=1))
    for _ in range(3):
        await refused(limits, conn, Ping(request=1))
    clock.ms += 1000  # the device waited, as it was told
    await limits.check(conn, Ping(request=1))
    for _ in range(3):
        await refused(limits, conn, Ping(request=1))


# Through a real node ------------------------------------------------------------------------


@pytest.fixture
def start_limited(start_node: StartNode, node_params: NodeParams):  # noqa: ANN201
    """``await start_limited(limits)`` -> (node, clock): a node with the per-device ``limits``
    and a clock that stands still unless the test moves it."""

    async def start(limits: ClientLimits) -> tuple[RunningNode, Clock]:
        clock = Clock(wall_ms())
        node_params.client_limits, node_params.clock_ms = limits, clock
        return await start_node(), clock

    return start


async def test_a_flooding_device_is_refused_while_others_send(start_limited) -> None:  # noqa: ANN001
    with trio.fail_after(HANG_S):
        at, clock = await start_limited(ClientLimits(envelopes=Rate(per_second=1, burst=3)))
        alice, bob = await at.enroll("alice"), await at.enroll("bob")
        async with at.raw(alice.first) as flooder, at.raw(bob.first) as other:
            to_bob = [opaque_envelope(bob.first) for _ in range(3)]
            reply = await flooder.request(lambda n: SendBatch(request=n, envelopes=tuple(to_bob)))
            assert isinstance(reply, Accepted) and reply.stored == 3
            extra = opaque_envelope(bob.first)
            with pytest.raises(NodeError) as info:
                await flooder.request(lambda n: SendBatch(request=n, envelopes=(extra,)))
            assert str(info.value) == "rate_limited: too many messages from this device; try again in a moment"
            # the connection stays open, and bob is not limited by alice's flood
            assert isinstance(await flooder.request(lambda n: Ping(request=n)), Pong)
            reply = await other.request(lambda n: SendBatch(request=n, envelopes=(opaque_envelope(alice.first),)))
            assert isinstance(reply, Accepted) and reply.stored == 1
            clock.ms += 1000
            reply = await flooder.request(lambda n: SendBatch(request=n, envelopes=(extra,)))
            assert isinstance(reply, Accepted) and reply.stored == 1
        assert [i.id for i in await at.pending(bob.address, now=clock.ms)] == [e.id for e in to_bob] + [extra.id]


async def test_a_device_that_ignores_refusals_is_disconnected(start_limited) -> None:  # noqa: ANN001
    with trio.fail_after(HANG_S):
        limits = ClientLimits(bundles=Rate(per_second=NEVER, burst=1), refusals_before_disconnect=2)
        at, _clock = await start_limited(limits)
        alice, bob = await at.enroll("alice"), await at.enroll("bob")
        async with at.raw(bob.first) as conn:
            await conn.request(lambda n: FetchBundles(request=n, account=ALICE, devices=(1,)))
            for _ in range(2):
                with pytest.raises(NodeError) as info:
                    await conn.request(lambda n: FetchBundles(request=n, account=ALICE, devices=(1,)))
                assert info.value.code == "rate_limited"
            with pytest.raises(NodeError) as info:
                await conn.request(lambda n: FetchBundles(request=n, account=ALICE, devices=(1,)))
            assert str(info.value) == "rate_limited: more than 2 requests in a row were over the rate limit"
            await conn.closed.wait()
            assert isinstance(conn.error, NodeError) and conn.error.code == "rate_limited"
        assert at.alive
        # the limit outlives the connection; other devices are served as before
        async with at.raw(bob.first) as again:
            with pytest.raises(NodeError, match="rate_limited"):
                await again.request(lambda n: FetchBundles(request=n, account=ALICE, devices=(1,)))
        async with at.raw(alice.first) as conn:
            assert isinstance(await conn.request(lambda n: Ping(request=n)), Pong)
