"""The sites that report security events (transport/events.py) and what reaches a running
node's audit log: refused connections, a peer with the wrong identity, rate limiting, a split
view of a peer's key directory."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import trio

from sonet.federation.ratelimit import Rate
from sonet.node.audit import read_entries
from sonet.node.client_limits import ClientLimits
from sonet.transport import DialError, events
from sonet.transport.admission import Admission, ConnectionLimits, Refused
from tests.federation.net import BETA, new_key, peer_link, pin, pin_node, until
from tests.federation.transparency import cosigned_by, federation, lie, rewritten, split_of

from .conftest import RunningNode, StartNode
from .test_client_limits import Clock, Conn, Ctx, batch, refused


class Heard:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def __call__(self, kind: str, fields: Mapping[str, object]) -> None:
        self.events.append((kind, dict(fields)))


def _entries(node: RunningNode, kind: str) -> list[dict]:
    node.node.audit_stream.write()
    return [e.fields for e in read_entries(node.data_dir) if e.kind == kind]


async def test_connections_refused_at_accept_are_reported() -> None:
    heard = Heard()
    admission = Admission(ConnectionLimits(max_connections_per_address=2, max_pending_per_address=1))
    with events.subscribed(heard):
        first = admission.admit("192.0.2.7")
        admission.admit("192.0.2.7")  # evicts the first, still pending
        assert first.ended_by == "evicted_pending_per_address"
        for _ in range(2):
            admission.authenticated(admission.admit("192.0.2.8"))
        with pytest.raises(Refused):
            admission.admit("192.0.2.8")
    assert heard.events == [
        ("connection_refused", {"address": "192.0.2.7", "code": "evicted_pending_per_address"}),
        ("connection_refused", {"address": "192.0.2.8", "code": "too_many_connections"}),
    ]


async def test_rate_limited_devices_are_reported_with_their_account() -> None:
    heard = Heard()
    limits = ClientLimits(envelopes=Rate(per_second=1e-9, burst=1))
    conn = Conn(Ctx(Clock()), "dev-a")
    with events.subscribed(heard):
        await limits.check(conn, batch(sealed=1))  # type: ignore[arg-type]
        await refused(limits, conn, batch(sealed=1))
    assert heard.events == [("rate_limited", {"actor": "alice@alpha.example", "limit": "device_requests"})]


async def test_a_peer_with_the_wrong_identity_is_in_the_audit_log(running: RunningNode) -> None:
    await pin(running, BETA, fingerprint=new_key().public.fingerprint)
    with pytest.raises(DialError):
        async with peer_link(running, new_key(), BETA):
            pass
    [entry] = _entries(running, "wrong_identity")
    assert entry == {"peer": BETA, "unverified_name": BETA, "address": "127.0.0.1", "code": "wrong_identity", "direction": "inbound", "count": 1}
    # a stranger announcing an unconfigured name is a refused handshake, not an identity alarm
    with pytest.raises(DialError):
        async with peer_link(running, new_key(), "stranger.example"):
            pass
    [refusal] = _entries(running, "handshake_refused")
    assert (refusal["code"], refusal["direction"]) == ("unknown_peer", "inbound")


async def test_a_split_view_is_in_the_audit_log(start_node: StartNode, monkeypatch: pytest.MonkeyPatch) -> None:
    alpha = await start_node(name="alpha.example", registration="open")
    beta = await start_node(name=BETA, registration="open")
    await pin_node(alpha, beta)
    await pin_node(beta, alpha)
    bob = await beta.enroll("bob")
    await beta.link(bob)
    # alpha must have witnessed the honest tree of size 2 first: a rewrite of what it never
    # saw is no split view (it then only fails to cosign the forged head, and nothing is recorded)
    await until(lambda: cosigned_by(beta, alpha, 2), "alpha cosigned beta's head of size 2")
    tree, forged = await rewritten(beta, keep=1, extra=2)
    lie(monkeypatch, beta, forged, tree)
    federation(beta).directory_changed()
    await until(lambda: split_of(alpha, BETA), "alpha recorded beta's split view")
    [alarm] = _entries(alpha, "directory_alarm")
    assert (alarm["peer"], alarm["code"], alarm["count"]) == (BETA, "split_view", 1)
    assert alarm["kind"] in ("inconsistent", "fork")
