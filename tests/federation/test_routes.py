"""federation/routes.py: next hops, routes, relay permission (pure)."""

from __future__ import annotations

from sonet.federation.peers import Peer
from sonet.federation.routes import Routes

FP = "a" * 32


def peer(name: str, via: str | None = None, url: str = "ws://127.0.0.1:1") -> Peer:
    return Peer(name=name, url=url, fingerprint=FP, via=via, added_at=0)


# alpha's view: beta direct, gamma through beta, delta through gamma (a via of a via)
ROUTES = Routes("alpha", [peer("beta"), peer("gamma", via="beta"), peer("delta", via="gamma"), peer("epsilon")])


def test_a_direct_peer_is_its_own_next_hop() -> None:
    hop = ROUTES.next_hop("beta")
    assert hop is not None and hop.name == "beta"
    assert ROUTES.route("beta") == ["beta"]


def test_a_peer_behind_a_relay_is_reached_through_it() -> None:
    hop = ROUTES.next_hop("gamma")
    assert hop is not None and hop.name == "beta"
    assert ROUTES.route("gamma") == ["beta", "gamma"]


def test_a_via_of_a_via_has_no_route() -> None:
    assert ROUTES.next_hop("delta") is None and ROUTES.route("delta") == []


def test_an_unknown_node_and_this_node_have_no_route() -> None:
    assert ROUTES.next_hop("zeta") is None and ROUTES.route("zeta") == []
    assert Routes("alpha", [peer("alpha"), peer("beta")]).next_hop("alpha") is None


def test_direct_peers_and_what_goes_through_each() -> None:
    assert [p.name for p in ROUTES.direct()] == ["beta", "epsilon"]
    assert ROUTES.through("beta") == ["beta", "gamma"]
    assert ROUTES.through("epsilon") == ["epsilon"]
    assert ROUTES.through("gamma") == []  # not a direct peer: nothing goes through it


def test_relaying_needs_origin_link_peer_and_destination_all_configured() -> None:
    beta = Routes("beta", [peer("alpha"), peer("gamma")])
    assert beta.may_relay(origin="alpha", link_peer="alpha", dest="gamma")
    assert beta.may_relay(origin="gamma", link_peer="gamma", dest="alpha")
    assert not beta.may_relay(origin="stranger", link_peer="alpha", dest="gamma")
    assert not beta.may_relay(origin="alpha", link_peer="stranger", dest="gamma")
    assert not beta.may_relay(origin="alpha", link_peer="alpha", dest="delta")
    assert not beta.may_relay(origin="beta", link_peer="alpha", dest="gamma")  # itself is no peer


def test_routes_compare_by_their_peer_entries() -> None:
    entries = [peer("beta"), peer("gamma", via="beta")]
    assert Routes("alpha", entries) == Routes("alpha", list(reversed(entries)))
    assert Routes("alpha", entries) != Routes("alpha", [peer("beta", url="ws://127.0.0.1:2"), entries[1]])
    assert Routes("alpha", entries) != Routes("omega", entries)
