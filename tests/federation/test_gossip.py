"""Gossip of directory heads (federation/gossip.py): peers witness each other through relays,
tell their direct peers the heads they witnessed, and a fork of one node's directory that
reaches another node from a third is detected there; gossip about unknown nodes or with
forged heads changes nothing (real nodes in-process, raw peer links)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pytest

from sonet.core import limits
from sonet.core.client_api import SignedHead
from sonet.core.federation_api import Gossip, Noted, SeenHead
from sonet.core.keydir import sign_head
from sonet.federation.errors import FederationError
from tests.node.conftest import NodeParams, StartNode
from tests.node.kit import wall_ms

from .net import ALPHA, BETA, GAMMA, ask, new_key, peer_link, pin, pin_node, triangle, until
from .transparency import ROUND_S, cosigned_by, every, federation, latest, rewritten, split_of, witnessed_size


def seen(node: str, head: bytes) -> SeenHead:
    return SeenHead(node=node, head=SignedHead(head=head, cosignatures=()))


async def test_a_fork_gossiped_by_a_third_node_is_detected(start_node: StartNode, fast_rounds: None) -> None:
    net = await triangle(start_node)
    # alpha witnesses gamma through beta: the head request and the cosignature are relayed
    await until(lambda: cosigned_by(net.gamma, net.alpha, 1), "alpha's cosignature reached gamma through beta")
    _, fork = await rewritten(net.gamma, keep=0, extra=1)  # gamma's key, size 1, another root
    async with peer_link(net.alpha, net.beta.identity, BETA) as link:  # beta tells alpha what it saw
        assert await ask(link, Gossip(request=1, heads=(seen(GAMMA, fork),))) == Noted(request=1)

    await until(lambda: split_of(net.alpha, GAMMA), "alpha detected gamma's fork")
    split = await split_of(net.alpha, GAMMA)
    assert (split.kind, split.source, split.second) == ("fork", f"gossip:{BETA}", fork)
    with pytest.raises(FederationError) as info:
        await federation(net.alpha).remote_devices(net.carol.address)
    assert info.value.code == "split_view"
    assert await split_of(net.alpha, BETA) is None  # the messenger is not blamed


async def test_gossip_about_strangers_or_with_forged_heads_changes_nothing(start_node: StartNode, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sonet.federation")
    alpha = await start_node(name=ALPHA, registration="open")
    beta = await start_node(name=BETA, registration="open")
    await pin_node(alpha, beta)
    await pin_node(beta, alpha)
    bob = await beta.enroll("bob")
    await until(lambda: cosigned_by(beta, alpha, 1), "alpha cosigned beta's head")
    third = new_key()
    await pin(alpha, "third.example", fingerprint=third.public.fingerprint)
    root = (await latest(beta)).root
    forged = sign_head(new_key(), node=BETA, size=1, root=bytes(32), at=wall_ms())  # not beta's key
    strangers = [seen(f"s{n}.example", sign_head(new_key(), node=f"s{n}.example", size=1, root=root, at=wall_ms())) for n in range(3)]
    heads = [*strangers, seen(BETA, forged)]
    async with peer_link(alpha, third, "third.example") as link:
        assert await ask(link, Gossip(request=1, heads=tuple(heads))) == Noted(request=1)
        await until(lambda: "ignored a directory head of beta.example from gossip:third.example" in caplog.text, "the forged head was dropped")
        # as many heads as a frame may carry are taken (a stranger's are not even looked at)
        many = tuple(strangers[n % 3] for n in range(limits.MAX_GOSSIP_HEADS))
        assert await ask(link, Gossip(request=2, heads=many)) == Noted(request=2)
    assert await split_of(alpha, BETA) is None and await witnessed_size(alpha, BETA) == 1
    assert [d.device for d in (await federation(alpha).remote_devices(bob.address)).devices] == [1]
    assert "s0.example" not in caplog.text


async def test_direct_peers_hear_the_heads_witnessed(start_node: StartNode, node_params: NodeParams, monkeypatch: pytest.MonkeyPatch) -> None:
    every(node_params, witness_interval_s=ROUND_S, gossip_interval_s=ROUND_S)
    net = await triangle(start_node)
    heard: dict[str, bytes] = {}
    inbound = federation(net.alpha)._inbound
    take = inbound._gossiped

    async def record(peer: str, heads: Iterable[SeenHead]) -> None:
        heads = tuple(heads)
        if peer == BETA:
            heard.update((s.node, s.head.head) for s in heads)
        await take(peer, heads)

    monkeypatch.setattr(inbound, "_gossiped", record)

    async def gamma_witnessed_by_beta() -> bool:
        async with net.beta.store() as store:
            row = await store.witnessed(GAMMA)
        return row is not None and heard.get(GAMMA) == row.head

    await until(gamma_witnessed_by_beta, "beta told alpha the head of gamma it witnessed")
    assert heard[BETA] == (await latest(net.beta)).head  # and its own
