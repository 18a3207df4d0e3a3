"""Witnessing (federation/witness.py): peers cosign each other's key-directory heads, each new
one only after a proof that it extends the last one they cosigned. A node caught showing two
versions of its directory on signed evidence (a rewritten history, a fork, also in a lookup
answer, an older head that is not a prefix) is recorded as a split with both signed heads,
shown in the status, still refused after a restart, and its lookups fail with ``split_view``;
an older genuine head replayed by a relay, an error frame or a malformed answer is no evidence
(nothing recorded, retried next round); junk cosignatures are refused without closing the link
(real nodes in-process, raw peer links)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import trio

from sonet.core.client_api import (
    Bundles,
    Consistency,
    Devices,
    ErrorFrame,
    FetchConsistency,
    FetchHead,
    Head,
    Ping,
    Pong,
    SignedHead,
)
from sonet.core.federation_api import Cosign, Noted
from sonet.core.keydir import TreeHead, cosign, sign_head, verify_head, witnesses
from sonet.federation.errors import FederationError
from sonet.federation.routes import Routes
from sonet.federation.settings import FederationSettings
from sonet.federation.witness import Witness
from sonet.node.app import RUNTIME_FILE
from tests.node.conftest import RunningNode, StartNode
from tests.node.kit import wall_ms

from .net import ALPHA, BETA, GAMMA, ask, new_key, peer_link, pin, pin_node, triangle, until
from .transparency import Spy, cosigned_by, directory, federation, latest, lie, rewritten, split_of, witnessed_size


async def pair(start_node: StartNode, **config: object) -> tuple[RunningNode, RunningNode]:
    alpha = await start_node(name=ALPHA, registration="open", **config)
    beta = await start_node(name=BETA, registration="open", **config)
    await pin_node(alpha, beta)
    await pin_node(beta, alpha)
    return alpha, beta


async def test_peers_cosign_each_others_heads_after_a_consistency_proof(start_node: StartNode, monkeypatch: pytest.MonkeyPatch) -> None:
    alpha, beta = await pair(start_node)
    spy = Spy(monkeypatch, alpha)
    bob = await beta.enroll("bob")  # beta signs a head of size 1 and gossips it to alpha at once
    await until(lambda: cosigned_by(beta, alpha, 1), "beta's head carries alpha's cosignature")
    await alpha.enroll("alice")
    await until(lambda: cosigned_by(alpha, beta, 1), "alpha's head carries beta's cosignature")

    await beta.link(bob)  # size 2: alpha must be shown that the tree of size 1 is its prefix
    await until(lambda: cosigned_by(beta, alpha, 2), "alpha cosigned beta's head of size 2")
    assert await witnessed_size(alpha, BETA) == 2
    assert {(f.node, f.first, f.second) for f in spy.of(FetchConsistency)} == {(BETA, 1, 2)}

    snapshot = federation(alpha).snapshot()
    [entry] = [p for p in snapshot["peers"] if p["name"] == BETA]
    assert (entry["witnessed_size"], entry["split"]) == (2, None)
    [row] = snapshot["directory"]["witnessed"]
    assert (row["node"], row["tree_size"], row["root_hash"]) == (BETA, 2, (await latest(beta)).root.hex())
    assert snapshot["directory"]["splits"] == []


async def test_a_node_that_rewrites_its_history_is_caught(start_node: StartNode, monkeypatch: pytest.MonkeyPatch) -> None:
    alpha, beta = await pair(start_node)
    bob = await beta.enroll("bob")
    await beta.link(bob)
    await until(lambda: cosigned_by(beta, alpha, 2), "alpha cosigned beta's head of size 2")
    honest = await latest(beta)
    spy = Spy(monkeypatch, alpha)
    # beta replaces bob's second leaf, adds another and signs the rewritten tree with its key
    tree, forged = await rewritten(beta, keep=1, extra=2)
    lie(monkeypatch, beta, forged, tree)
    federation(beta).directory_changed()  # and gossips it to alpha

    await until(lambda: split_of(alpha, BETA), "alpha recorded beta's split view")
    split = await split_of(alpha, BETA)
    assert (split.kind, split.source, split.first, split.second) == ("inconsistent", f"gossip:{BETA}", honest.head, forged)
    assert [(f.first, f.second) for f in spy.of(FetchConsistency)] == [(2, 3)]
    assert spy.of(Cosign) == [] and await witnessed_size(alpha, BETA) == 2  # nothing cosigned

    fed = federation(alpha)
    lookups = (
        lambda: fed.remote_devices(bob.address),
        lambda: fed.remote_bundles(bob.address, [1]),
        lambda: fed.remote_head(BETA),
        lambda: fed.remote_consistency(BETA, 1, 2),
    )
    for lookup in lookups:
        with pytest.raises(FederationError) as info:
            await lookup()
        assert info.value.code == "split_view" and str(info.value).startswith(f"{BETA} showed two different versions")
    assert await fed.node_key(BETA) == beta.identity.public.to_bytes()  # still allowed

    [entry] = [p for p in fed.snapshot()["peers"] if p["name"] == BETA]
    assert entry["split"] == "inconsistent"

    def shown() -> bool:  # run.json, which `sonet-node status` prints
        info = json.loads((alpha.data_dir / RUNTIME_FILE).read_text())
        return info["federation"]["directory"]["splits"] == [
            {"node": BETA, "kind": "inconsistent", "source": f"gossip:{BETA}", "detected_at": split.detected_at}
        ]

    await until(shown, "run.json shows the split")
    await _refused_after_a_restart(alpha)


async def _refused_after_a_restart(alpha: RunningNode) -> None:
    """A new witness over alpha's store (as after a restart) refuses beta from the start."""

    async def unused(*args: object) -> object:
        raise AssertionError("no peer to ask")

    async def no_peers() -> Routes:
        return Routes(ALPHA, [])

    async with alpha.store() as store:
        fresh = Witness(
            name=ALPHA,
            identity=alpha.identity,
            store=store,
            ask=unused,
            node_key=unused,
            routes=no_peers,
            clock_ms=wall_ms,
            settings=FederationSettings(),
            cosigned=lambda node, head: None,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(fresh.run)
            with pytest.raises(FederationError) as info:
                fresh.refuse(BETA)
            assert info.value.code == "split_view" and fresh.split_kind(BETA) == "inconsistent"
            nursery.cancel_scope.cancel()


async def test_a_fork_is_caught_by_the_next_round(start_node: StartNode, monkeypatch: pytest.MonkeyPatch, fast_rounds: None) -> None:
    alpha, beta = await pair(start_node)
    bob = await beta.enroll("bob")
    await beta.link(bob)
    await until(lambda: cosigned_by(beta, alpha, 2), "alpha cosigned beta's head of size 2")
    honest = await latest(beta)
    spy = Spy(monkeypatch, alpha)
    tree, forged = await rewritten(beta, keep=1, extra=1)  # another tree of size 2, signed by beta
    lie(monkeypatch, beta, forged, tree)

    await until(lambda: split_of(alpha, BETA), "alpha's next round caught beta")
    split = await split_of(alpha, BETA)
    assert (split.kind, split.source, split.first, split.second) == ("fork", "witness", honest.head, forged)
    assert spy.of(Cosign) == []
    with pytest.raises(FederationError) as info:
        await federation(alpha).remote_devices(bob.address)
    assert info.value.code == "split_view"


@pytest.mark.parametrize("replayed", ["older", "forged"])
async def test_a_relay_replaying_an_older_head_is_checked_with_a_proof_and_is_no_evidence(
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch, fast_rounds: None, replayed: str
) -> None:
    net = await triangle(start_node)  # alpha reaches gamma only through beta
    await until(lambda: cosigned_by(net.gamma, net.alpha, 1), "alpha cosigned gamma's head of size 1")
    older = (await latest(net.gamma)).head
    await net.gamma.link(net.carol)
    await until(lambda: cosigned_by(net.gamma, net.alpha, 2), "alpha cosigned gamma's head of size 2")
    honest = await latest(net.gamma)
    # older: gamma's genuine head of size 1; forged: a head of size 1 gamma signed that is not
    # a prefix of its tree of size 2 (what gamma may have shown beta alone)
    stale = older if replayed == "older" else (await rewritten(net.gamma, keep=0, extra=1))[1]
    relay = federation(net.beta)._inbound
    real = relay._relay

    async def replaying(peer, req, node):  # noqa: ANN001, ANN202 - beta answers with the stale head
        answer = await real(peer, req, node)
        if isinstance(answer, Head) and node == GAMMA:
            answer = dataclasses.replace(answer, head=SignedHead(head=stale, cosignatures=()))
        return answer

    spy = Spy(monkeypatch, net.alpha)
    monkeypatch.setattr(relay, "_relay", replaying)
    if replayed == "forged":
        # The proof fails, but proofs are not signed and this one came through the relay: it is
        # not evidence against gamma (beta, gamma's direct peer, is the one who can tell).
        await until(lambda: len(spy.of(FetchConsistency)) >= 2, "alpha asked for a proof twice")
        assert await split_of(net.alpha, GAMMA) is None
        assert spy.of(Cosign) == [] and await witnessed_size(net.alpha, GAMMA) == 2
        assert honest.size == 2
        return

    await until(lambda: len(spy.of(FetchHead)) >= 3, "alpha's witness rounds fetched the replayed head")
    # proven a prefix once (smaller -> witnessed), then known: never cosigned, nothing recorded
    assert [(f.node, f.first, f.second) for f in spy.of(FetchConsistency)] == [(GAMMA, 1, 2)]
    assert spy.of(Cosign) == [] and await split_of(net.alpha, GAMMA) is None
    assert await witnessed_size(net.alpha, GAMMA) == 2
    head = await federation(net.alpha).remote_head(GAMMA)  # a lookup carrying it is answered
    assert head.head.head == stale


@pytest.mark.parametrize("how", ["bad_request", "mismatched"])
async def test_no_proof_now_is_no_evidence_and_the_next_round_retries(
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch, fast_rounds: None, how: str
) -> None:
    alpha, beta = await pair(start_node)
    bob = await beta.enroll("bob")
    await until(lambda: cosigned_by(beta, alpha, 1), "alpha cosigned beta's head of size 1")
    failed: list[tuple[int, int]] = []
    if how == "bad_request":  # beta cannot prove it for now: ValueError -> ErrorFrame bad_request
        honest = directory(beta).consistency

        async def refusing(first: int, second: int) -> tuple[bytes, ...]:
            if len(failed) < 3:
                failed.append((first, second))
                raise ValueError("not now")
            return await honest(first, second)

        monkeypatch.setattr(directory(beta), "consistency", refusing)
    else:  # an answer for other sizes than asked (a buggy relay)
        fed = federation(alpha)
        real = fed._pool.request

        async def mismatched(hop, frame, **kw):  # noqa: ANN001, ANN202
            answer = await real(hop, frame, **kw)
            if isinstance(answer, Consistency) and len(failed) < 3:
                failed.append((answer.first, answer.second))
                answer = dataclasses.replace(answer, second=answer.second + 1)
            return answer

        monkeypatch.setattr(fed._pool, "request", mismatched)
    spy = Spy(monkeypatch, alpha)
    await beta.link(bob)  # size 2: alpha needs a proof that size 1 is its prefix

    await until(lambda: len(failed) >= 2, "alpha asked again at its next round")
    assert failed[:2] == [(1, 2), (1, 2)]
    assert await split_of(alpha, BETA) is None and await witnessed_size(alpha, BETA) == 1
    assert [d.device for d in (await federation(alpha).remote_devices(bob.address)).devices] == [1, 2]  # not refused
    await until(lambda: cosigned_by(beta, alpha, 2), "alpha cosigned beta's head once it got a proof")
    assert await split_of(alpha, BETA) is None and len(spy.of(Cosign)) >= 1


async def test_a_lookup_answer_must_carry_a_verified_head_that_agrees(start_node: StartNode, monkeypatch: pytest.MonkeyPatch) -> None:
    alpha, beta = await pair(start_node)
    bob = await beta.enroll("bob")
    await until(lambda: cosigned_by(beta, alpha, 1), "alpha cosigned beta's head")
    fed = federation(alpha)
    real = fed._pool.request
    replacement: list[bytes] = []

    async def tampered(hop, frame, **kw):  # noqa: ANN001, ANN202 - a relay that swaps the proof's head
        answer = await real(hop, frame, **kw)
        if replacement and isinstance(answer, (Devices, Bundles)):
            head = SignedHead(head=replacement[-1], cosignatures=())
            answer = dataclasses.replace(answer, proof=dataclasses.replace(answer.proof, head=head))
        return answer

    monkeypatch.setattr(fed._pool, "request", tampered)
    root = (await latest(beta)).root
    replacement.append(sign_head(new_key(), node=BETA, size=1, root=root, at=wall_ms()))  # not beta's key
    for lookup in (lambda: fed.remote_devices(bob.address), lambda: fed.remote_bundles(bob.address, [1])):
        with pytest.raises(FederationError) as info:
            await lookup()
        assert info.value.code == "invalid" and "does not verify" in str(info.value)
    assert bob.address not in fed._devices  # never cached
    assert await split_of(alpha, BETA) is None

    _, fork = await rewritten(beta, keep=0, extra=1)  # beta's key, size 1, another root
    replacement.append(fork)
    with pytest.raises(FederationError) as info:
        await fed.remote_devices(bob.address)
    assert info.value.code == "split_view"
    split = await split_of(alpha, BETA)
    assert (split.kind, split.source, split.second) == ("fork", "lookup", fork)


async def test_a_new_device_shows_up_as_soon_as_its_head_is_cosigned(start_node: StartNode) -> None:
    alpha, beta = await pair(start_node)
    bob = await beta.enroll("bob")
    await until(lambda: cosigned_by(beta, alpha, 1), "alpha cosigned beta's head")
    fed = federation(alpha)
    assert [d.device for d in (await fed.remote_devices(bob.address)).devices] == [1]  # cached now
    await beta.link(bob)

    async def both() -> bool:
        # without the cosigned head dropping the cache this would wait for its 30 s TTL (past
        # the hang guard)
        return len((await fed.remote_devices(bob.address)).devices) == 2

    await until(both, "alpha sees bob's second device")
    proof = (await fed.remote_devices(bob.address)).proof
    head = verify_head(proof.head.head, node_key=beta.identity.public, node=BETA)
    assert head.size == 2 and witnesses(proof.head.cosignatures, head=head, keys={ALPHA: alpha.identity.public}) == [ALPHA]


async def test_junk_cosignatures_are_refused_and_the_link_stays_up(start_node: StartNode) -> None:
    beta = await start_node(name=BETA)
    await beta.enroll("bob")
    key = new_key()
    await pin(beta, ALPHA, fingerprint=key.public.fingerprint)
    row = await latest(beta)
    head = verify_head(row.head, node_key=beta.identity.public, node=BETA)
    other_root = TreeHead(node=BETA, size=head.size, root=bytes(32), at=0, raw=b"")
    junk = [
        b"junk",
        cosign(new_key(), witness=ALPHA, head=head, now=wall_ms()),  # not alpha's key
        cosign(key, witness=ALPHA, head=other_root, now=wall_ms()),  # a tree beta never had
        cosign(key, witness="nobody.example", head=head, now=wall_ms()),  # no peer of beta
    ]
    async with peer_link(beta, key, ALPHA) as link:
        for n, cosignature in enumerate(junk, 1):
            answer = await ask(link, Cosign(request=n, cosignature=cosignature))
            assert isinstance(answer, ErrorFrame) and (answer.request, answer.code) == (n, "bad_cosignature"), answer
        assert await ask(link, Ping(request=10)) == Pong(request=10)
        good = cosign(key, witness=ALPHA, head=head, now=wall_ms())
        assert await ask(link, Cosign(request=11, cosignature=good)) == Noted(request=11)

        answer = await ask(link, FetchHead(request=12, node=BETA))
        assert isinstance(answer, Head) and answer.node == BETA and good in answer.head.cosignatures
        assert verify_head(answer.head.head, node_key=beta.identity.public, node=BETA).size == head.size
        answer = await ask(link, FetchConsistency(request=13, node=BETA, first=1, second=99))
        assert isinstance(answer, ErrorFrame) and (answer.request, answer.code) == (13, "bad_request")
    assert (await latest(beta)).cosignatures == (good,)
    assert beta.alive
