"""Key transparency end to end on in-process nodes: every lookup a device makes is proven, and a
node that tampers with its directory, forks it, rewrites its history or serves heads nobody
witnessed does not get a single message sent on the strength of it (`sonet lookup`,
`sonet witness-quorum` included)."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
import trio

import sonet.client.transparency as transparency
from sonet.cli_output import iso_ms
from sonet.client import cli
from sonet.client.connection import Connection, NodeError
from sonet.client.sdk import Device
from sonet.core.client_api import Bundles, Consistency, Devices, DirectoryProof, FetchConsistency, FetchDevices, SendBatch, SignedHead
from sonet.core.crypto import CryptoMode, HpkePrivateKey, SigningKey
from sonet.core.device import make_device_record
from sonet.core.errors import ProtocolError, VerifyError
from sonet.core.keydir import MerkleTree, decode_entry, decode_head, encode_entry, leaf_hash, sign_head, verify_head, verify_inclusion
from tests.node.conftest import RunningNode

from .conftest import ALICE, BETA, BOB, HANG_S, Clock, node_db, texts
from .loopback import Loopback

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)

Register = Callable[..., Awaitable[Device]]
BOB_B = f"bob@{BETA}"


class _Wire:
    """Records every request the devices send and lets a test replace the answers to
    FetchDevices about one account (as a lying node would answer)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[Any] = []
        self.forge: dict[str, Callable[[Devices], Devices]] = {}
        #: the consistency proofs to answer with instead of the node's
        self.consistency: Callable[[int, int], tuple[bytes, ...]] | None = None
        real = Connection.request

        async def request(conn: Connection, build: Any) -> Any:
            frame = build(0)
            self.sent.append(frame)
            if isinstance(frame, FetchConsistency) and self.consistency is not None:
                return Consistency(request=0, node=frame.node, first=frame.first, second=frame.second,
                                   proof=self.consistency(frame.first, frame.second))
            answer = await real(conn, build)
            if isinstance(answer, Devices) and answer.account in self.forge:
                return self.forge[answer.account](answer)
            return answer

        monkeypatch.setattr(Connection, "request", request)

    def batches(self) -> list[SendBatch]:
        return [f for f in self.sent if isinstance(f, SendBatch)]


def _flip(data: bytes, at: int = -1) -> bytes:
    b = bytearray(data)
    b[at] ^= 1
    return bytes(b)


def _node_leaves(at: RunningNode) -> list[bytes]:
    db = node_db(at)
    try:
        return [bytes(leaf) for (leaf,) in db.execute("SELECT leaf FROM directory_leaves ORDER BY leaf_index")]
    finally:
        db.close()


def _tree(leaves: list[bytes]) -> MerkleTree:
    return MerkleTree(leaf_hash(leaf) for leaf in leaves)


def _forged(at: RunningNode, answer: Devices, leaves: list[bytes], now: int) -> Devices:
    """``answer`` proven against a head over ``leaves`` that the node's own key signed."""
    tree = _tree(leaves)
    index = max(i for i, leaf in enumerate(leaves) if decode_entry(leaf).account == answer.account)
    head = sign_head(at.identity, node=at.config.name, size=tree.size, root=tree.root(), at=now)
    proof = DirectoryProof(leaf=leaves[index], index=index, path=tuple(tree.inclusion_proof(index, tree.size)), head=SignedHead(head=head, cosignatures=()))
    return replace(answer, proof=proof)


def _touched(leaf: bytes) -> bytes:
    """The same entry one millisecond later: another leaf, another root."""
    e = decode_entry(leaf)
    return encode_entry(account=e.account, identity=e.identity, device_list=e.device_list, prev=e.prev, at=e.at + 1)


async def _cli(*argv: str) -> int:
    """`sonet ARGV` in a worker thread (it runs its own trio loop; the nodes run in this one)."""
    return await trio.to_thread.run_sync(cli.main, list(argv))


async def test_a_lookup_is_verified_and_sonet_lookup_prints_it(
    alpha_beta: tuple[RunningNode, RunningNode], register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(HANG_S):
        alpha, beta = alpha_beta
        alice, bob = await register(alpha, "alice"), await register(beta, "bob")
        home = str(alice.state.home)
        assert await _cli("--home", home, "lookup", "Bob@Beta.Example", "--json") == 0
        found = json.loads(capsys.readouterr().out)
        me = bob.state.profile()
        entry = found["entry"]
        assert (found["address"], entry["account"], entry["prev"]) == (BOB_B, BOB_B, -1)
        assert entry["identity"] == me.account_key.public.to_bytes().hex()
        assert entry["identity_fingerprint"] == me.account_key.public.fingerprint
        assert entry["device_list"]["devices"] == [me.identity.public.fingerprint] and entry["device_list"]["version"] == 1
        leaf = bytes.fromhex(found["leaf"])
        assert leaf in _node_leaves(beta) and iso_ms(decode_entry(leaf).at) == entry["logged_at"]
        root = bytes.fromhex(found["root_hash"])
        verify_inclusion(
            leaf_hash=leaf_hash(leaf), index=found["leaf_index"], size=found["tree_size"],
            proof=[bytes.fromhex(h) for h in found["inclusion_proof"]], root=root,
        )
        head = found["tree_head"]
        signed = verify_head(bytes.fromhex(head["signed_head"]), node_key=beta.identity.public, node=BETA)
        assert (head["node"], head["tree_size"], head["root_hash"], head["signed_at"]) == (BETA, signed.size, root.hex(), iso_ms(signed.at))
        assert [(c["witness"], c["verified"]) for c in found["cosignatures"]] == [("alpha.example", True)]
        assert found["verified"] is True and found["consistent_with"] is None and found["identity_changed"] is False

        # bob links a device: a larger tree, checked consistent with the head accepted before
        await register(beta, "carol")
        assert await _cli("--home", home, "lookup", BOB_B, "--json") == 0
        second = json.loads(capsys.readouterr().out)
        assert second["consistent_with"] == {"tree_size": found["tree_size"], "root_hash": found["root_hash"]}
        assert second["tree_size"] > found["tree_size"] and second["leaf"] == found["leaf"]

        assert await _cli("--home", home, "lookup", BOB_B) == 0
        out = capsys.readouterr().out
        assert f"{BOB_B}: identity {me.account_key.public.fingerprint}, 1 device (device list version 1)" in out
        assert f"of {BETA}'s key directory; tree size {second['tree_size']}" in out and "witnesses: alpha.example" in out

        assert await _cli("--home", home, "lookup", f"nobody@{BETA}") == 1
        assert capsys.readouterr().err.startswith("sonet: error: ")


@pytest.mark.parametrize("field", ["leaf", "path", "head", "index"])
async def test_a_lookup_altered_by_one_bit_blocks_the_send(
    alpha: RunningNode, register: Register, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        await register(alpha, "bob")
        wire = _Wire(monkeypatch)

        def alter(answer: Devices) -> Devices:
            p = answer.proof
            if field == "leaf":
                p = replace(p, leaf=_flip(p.leaf, 20))
            elif field == "path":
                p = replace(p, path=(_flip(p.path[0]), *p.path[1:]))
            elif field == "head":
                p = replace(p, head=replace(p.head, head=_flip(p.head.head, 40)))
            else:
                p = replace(p, index=p.index ^ 1)
            return replace(answer, proof=p)

        wire.forge[BOB] = alter
        with pytest.raises(ProtocolError) as caught:
            await alice.send_text(BOB, "must not go out")
        assert caught.value.code in ("bad_inclusion_proof", "head_forged", "directory_malformed")
        assert wire.batches() == [] and await alpha.pending(BOB) == []
        del wire.forge[BOB]
        assert (await alice.send_text(BOB, "now it may")).devices == 1


async def test_a_forked_directory_is_a_split_view_and_an_alert(
    alpha: RunningNode, register: Register, monkeypatch: pytest.MonkeyPatch, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await alice.send_text(BOB, "before")  # alice accepts the head of size 2
        wire = _Wire(monkeypatch)
        leaves = _node_leaves(alpha)
        # the same size, signed by the node, with alice's leaf changed: a second root
        wire.forge[BOB] = lambda answer: _forged(alpha, answer, [_touched(leaves[0]), *leaves[1:]], clock())
        with pytest.raises(VerifyError) as caught:
            await alice.send_text(BOB, "must not go out")
        assert caught.value.code == "split_view" and "two different roots for size 2" in str(caught.value)
        assert wire.batches() == []
        [alert] = alice.state.alerts()
        assert alert.kind == "alert" and alert.text.startswith("alpha.example showed a split view")
        # the CLI says it once: the error, then the alert found on the way
        assert await _cli("--home", str(alice.state.home), "send", BOB, "must not go out") == 1
        err = capsys.readouterr().err.splitlines()
        assert err[0].startswith("sonet: error: alpha.example is showing a split view") and err[0].endswith("(split_view)")
        assert err[1] == f"sonet: ALERT: {alert.text}" and len(err) == 2
        wire.forge.clear()  # bob's device never saw the fork
        assert texts(bob, await bob.receive()) == [(ALICE, "before")]


async def test_a_larger_head_that_does_not_extend_the_accepted_one_is_refused(
    alpha: RunningNode, register: Register, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        await register(alpha, "bob")
        await alice.send_text(BOB, "before")  # head of size 2 accepted
        wire = _Wire(monkeypatch)
        leaves = _node_leaves(alpha)
        # a head of size 3 over a history in which alice's leaf was rewritten
        rewritten = [_touched(leaves[0]), leaves[1], _touched(leaves[0])]
        wire.forge[BOB] = lambda answer: _forged(alpha, answer, rewritten, clock())
        with pytest.raises(NodeError) as caught:  # the node has no tree of size 3 to prove it from
            await alice.send_text(BOB, "must not go out")
        assert caught.value.code == "bad_request" and alice.state.alerts() == []  # no evidence of a split (yet)
        # the consistency proof of the rewritten tree (all a lying node has) does not verify
        wire.consistency = lambda first, second: tuple(_tree(rewritten).consistency_proof(first, second))
        with pytest.raises(VerifyError) as caught:
            await alice.send_text(BOB, "must not go out")
        assert caught.value.code == "split_view" and "does not extend the one of size 2" in str(caught.value)
        assert [(f.first, f.second) for f in wire.sent if isinstance(f, FetchConsistency)] == [(2, 3), (2, 3)]
        assert wire.batches() == [] and len(alice.state.alerts()) == 1
        assert decode_head(alice.state.accepted_head("alpha.example")).size == 2


async def test_another_nodes_head_needs_a_witness_unless_the_quorum_is_zero(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    with trio.fail_after(HANG_S):
        monkeypatch.setattr(transparency, "UNWITNESSED_DELAY_S", 0)
        alpha, beta = alpha_beta
        loopback.witnessing = False
        alice = await register(alpha, "alice")
        await register(beta, "bob")
        wire = _Wire(monkeypatch)
        home = str(alice.state.home)
        # nothing goes out on an unwitnessed head: the text waits on the device instead
        assert await _cli("--home", home, "send", BOB_B, "must not go out yet") == 0
        out = capsys.readouterr().out
        assert out.startswith("queued on this device") and "no cosignature from a witness yet" in out
        asked = [f for f in wire.sent if isinstance(f, FetchDevices) and f.account == BOB_B]
        assert len(asked) == transparency.UNWITNESSED_TRIES and wire.batches() == []
        [waiting] = [m for m in alice.state.sent_messages(100) if m.state == "pending"]
        assert (waiting.to, waiting.code) == (BOB_B, "unwitnessed")

        loopback.witnessing = True  # alpha cosigns beta's head: the waiting text goes first
        assert (await alice.send_text(BOB_B, "witnessed")).devices == 1
        assert [m.state for m in alice.state.sent_messages(100) if m.id == waiting.id] == ["sent"]  # no longer pending

        loopback.witnessing = False
        await register(beta, "carol")  # a new head of beta that nobody cosigned
        assert await _cli("--home", home, "witness-quorum") == 0
        assert capsys.readouterr().out.startswith("auto")
        assert await _cli("--home", home, "witness-quorum", "0") == 0
        assert capsys.readouterr().out == "0 witness cosignatures\n"
        assert (await alice.send_text(f"carol@{BETA}", "unwitnessed but allowed")).devices == 1
        assert await _cli("--home", home, "witness-quorum", "many") == 2
        assert capsys.readouterr().err == "sonet: error: the witness quorum is a number from 0 to 32, or auto (usage: sonet witness-quorum [N|auto])\n"
        assert await _cli("--home", home, "witness-quorum", "auto") == 0
        assert alice.state.witness_quorum() is None


async def test_a_quorum_above_the_home_nodes_witnesses_says_waiting_cannot_help(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    # a lone node has no witnesses: a quorum of 1 can never be met, so "try again in a
    # moment" would be wrong; the line says what to change
    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        await register(alpha, "bob")
        home = str(alice.state.home)
        assert await _cli("--home", home, "witness-quorum", "1") == 0
        capsys.readouterr()
        assert await _cli("--home", home, "lookup", BOB) == 1
        err = capsys.readouterr().err
        assert "your witness quorum (1) is more than its 0 witnesses: lower it with `sonet witness-quorum N`" in err, err
        assert "try again" not in err


async def test_bundles_are_proven_too(alpha: RunningNode, register: Register, monkeypatch: pytest.MonkeyPatch) -> None:
    """The prekey bundles a new session starts from come with the same proof; a bundle for a
    device the proven list does not name is refused."""
    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        await register(alpha, "bob")
        # a well-formed, self-signed record of a device of bob that his list does not name
        stranger = make_device_record(
            account=BOB, identity=SigningKey.generate(CryptoMode.HYBRID, os.urandom),
            hpke=HpkePrivateKey.generate(CryptoMode.HYBRID, os.urandom).public, created=1,
        )
        real = Connection.request

        async def request(conn: Connection, build: Any) -> Any:
            answer = await real(conn, build)
            if isinstance(answer, Bundles) and answer.account == BOB:
                return replace(answer, bundles=(replace(answer.bundles[0], record=stranger),))
            return answer

        monkeypatch.setattr(Connection, "request", request)
        with pytest.raises(VerifyError) as caught:
            await alice.send_text(BOB, "must not go out")
        assert caught.value.code == "unlisted_device"
        assert await alpha.pending(BOB) == []
