"""client/transparency.py against a scripted directory (tests/client/fake_directory.py): what a
device accepts from a node's key directory, and every way a lying node is caught."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import sonet.client.transparency as transparency
from sonet.client.connection import NodeError
from sonet.client.state import ALERT, DeviceState
from sonet.client.transparency import check_answer, fetch_devices, node_key
from sonet.core.client_api import FetchConsistency, FetchNodeKey, SignedHead
from sonet.core.errors import ProtocolError, VerifyError
from sonet.core.keydir import decode_head

from .fake_directory import T0, FakeConnection, FakeLog, new_key

ALPHA, BETA, GAMMA = "alpha.example", "beta.example", "gamma.example"
ALICE, BOB = f"alice@{ALPHA}", f"bob@{BETA}"


@pytest.fixture
def state(tmp_path: Path) -> Iterator[DeviceState]:
    s = DeviceState(tmp_path / "device")
    yield s
    s.close()


@pytest.fixture
def alpha() -> FakeLog:
    """The home node's directory: alice's leaf, and one more."""
    log = FakeLog(ALPHA)
    log.append(ALICE, new_key())
    log.filler()
    return log


@pytest.fixture
def beta(alpha: FakeLog) -> FakeLog:
    """Another node's directory (size 3, bob's leaf last), its head cosigned by alpha."""
    log = FakeLog(BETA)
    log.filler(2)
    log.append(BOB, new_key())
    log.cosign_by(ALPHA, alpha.key)
    return log


def _flip(data: bytes, at: int = -1) -> bytes:
    b = bytearray(data)
    b[at] ^= 1
    return bytes(b)


async def test_a_proven_answer_is_accepted_and_its_head_kept(state: DeviceState, alpha: FakeLog, beta: FakeLog) -> None:
    conn = FakeConnection(alpha, beta)
    checked = await check_answer(conn, state, beta.devices(BOB), account=BOB, now=T0)
    assert (checked.proven.index, checked.proven.entry.account, checked.proven.head.size) == (2, BOB, 3)
    assert checked.witnesses == (ALPHA,) and [c.verified for c in checked.cosignatures] == [True]
    assert checked.previous is None and conn.asked(FetchConsistency) == []
    assert state.accepted_head(BETA) == beta.head()


async def test_a_larger_head_must_extend_the_one_accepted_and_an_older_one_is_fine(
    state: DeviceState, alpha: FakeLog, beta: FakeLog
) -> None:
    conn = FakeConnection(alpha, beta)
    old = beta.devices(BOB)
    await check_answer(conn, state, old, account=BOB, now=T0)
    beta.filler(3)
    beta.cosign_by(ALPHA, alpha.key)
    checked = await check_answer(conn, state, beta.devices(BOB), account=BOB, now=T0)
    assert checked.previous is not None and checked.previous.size == 3 and checked.proven.head.size == 6
    assert [(f.first, f.second) for f in conn.asked(FetchConsistency)] == [(3, 6)]
    assert state.accepted_head(BETA) == beta.head(6)
    # a node may serve an older (cached) head: consistent with the newer one, it is accepted, and
    # the device keeps the newer one
    assert (await check_answer(conn, state, old, account=BOB, now=T0)).proven.head.size == 3
    assert state.accepted_head(BETA) == beta.head(6)
    assert state.alerts() == []


@pytest.mark.parametrize("field", ["leaf", "path", "head", "index", "cosignature"])
async def test_a_proof_altered_by_one_bit_is_refused(state: DeviceState, alpha: FakeLog, beta: FakeLog, field: str) -> None:
    answer = beta.devices(BOB)
    proof = answer.proof
    if field == "leaf":
        proof = replace(proof, leaf=_flip(proof.leaf, 40))
    elif field == "path":
        proof = replace(proof, path=(_flip(proof.path[0]),))
    elif field == "head":
        proof = replace(proof, head=replace(proof.head, head=_flip(proof.head.head, 30)))
    elif field == "index":
        proof = replace(proof, index=proof.index ^ 1)
    else:  # the only cosignature no longer verifies: the head is not witnessed
        proof = replace(proof, head=replace(proof.head, cosignatures=(_flip(proof.head.cosignatures[0]),)))
    with pytest.raises(ProtocolError) as caught:
        await check_answer(FakeConnection(alpha, beta), state, replace(answer, proof=proof), account=BOB, now=T0)
    expected = {"leaf": "bad_inclusion_proof", "path": "bad_inclusion_proof", "index": "bad_inclusion_proof", "cosignature": "unwitnessed"}
    assert caught.value.code == expected.get(field, "head_forged")
    assert state.accepted_head(BETA) is None


async def test_two_roots_for_one_size_is_a_split_view_and_an_alert(state: DeviceState, alpha: FakeLog, beta: FakeLog) -> None:
    conn = FakeConnection(alpha, beta)
    await check_answer(conn, state, beta.devices(BOB), account=BOB, now=T0)
    forked = FakeLog(BETA, key=beta.key)  # the same node key, another log of the same size
    forked.filler(2)
    forked.append(BOB, new_key())
    forked.cosign_by(ALPHA, alpha.key)
    with pytest.raises(VerifyError) as caught:
        await check_answer(FakeConnection(alpha, forked), state, forked.devices(BOB), account=BOB, now=T0 + 5)
    assert caught.value.code == "split_view" and "two different roots for size 3" in str(caught.value)
    assert state.accepted_head(BETA) == beta.head()
    [alert] = state.alerts()
    assert (alert.kind, alert.at) == (ALERT, T0 + 5) and alert.text.startswith(f"{BETA} showed a split view")


def _rewritten(beta: FakeLog, alpha: FakeLog) -> FakeLog:
    """beta's log with its first leaf replaced and grown: a larger head that is no extension."""
    log = FakeLog(BETA, key=beta.key)
    log.filler(1)
    log.leaves += beta.leaves[1:]
    log.accounts += beta.accounts[1:]
    log.filler(2)
    log.cosign_by(ALPHA, alpha.key)
    return log


@pytest.mark.parametrize("where", ["home", "remote"])
async def test_a_larger_head_without_a_valid_consistency_proof_is_refused(state: DeviceState, alpha: FakeLog, beta: FakeLog, where: str) -> None:
    """From the home node itself (over the channel) a failing proof is evidence of a split view;
    from another node it came through the home node and maybe relays (proofs are not signed):
    refused, but no alert."""
    connect = (lambda log: FakeConnection(log, alpha)) if where == "home" else (lambda log: FakeConnection(alpha, log))
    await check_answer(connect(beta), state, beta.devices(BOB), account=BOB, now=T0)
    rewritten = _rewritten(beta, alpha)
    conn = connect(rewritten)
    code, said, alerts = ("split_view", "split view", 1) if where == "home" else ("bad_consistency_proof", "does not verify", 0)
    with pytest.raises(VerifyError) as caught:
        await check_answer(conn, state, rewritten.devices(BOB), account=BOB, now=T0)
    assert caught.value.code == code
    # the node's own proof (of its rewritten tree) or one from the honest tree: neither verifies
    conn.consistency_override[(3, 5)] = tuple(rewritten.tree.consistency_proof(3, 5))[::-1]
    with pytest.raises(VerifyError, match=said):
        await check_answer(conn, state, rewritten.devices(BOB), account=BOB, now=T0)
    assert state.accepted_head(BETA) == beta.head() and len(state.alerts()) == alerts  # recorded once


@pytest.mark.parametrize("code", ["unreachable", "bad_request", "unknown_node"])
async def test_a_consistency_proof_the_node_cannot_give_is_no_split_view(
    state: DeviceState, alpha: FakeLog, beta: FakeLog, monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    """Only signed evidence makes a split view: an error answer is "not now" (no alert, the
    head stays, and the next lookup asks again)."""
    conn = FakeConnection(alpha, beta)
    await check_answer(conn, state, beta.devices(BOB), account=BOB, now=T0)
    beta.filler()
    beta.cosign_by(ALPHA, alpha.key)
    answer = beta.devices(BOB)
    real = conn.request

    async def failing(build):  # noqa: ANN001, ANN202
        if isinstance(build(0), FetchConsistency):
            raise NodeError(code, "nope")
        return await real(build)

    monkeypatch.setattr(conn, "request", failing)
    with pytest.raises(NodeError) as caught:
        await check_answer(conn, state, answer, account=BOB, now=T0)
    assert caught.value.code == code and state.alerts() == []
    assert state.accepted_head(BETA) == beta.head(3)
    monkeypatch.setattr(conn, "request", real)
    assert (await check_answer(conn, state, answer, account=BOB, now=T0)).proven.head.size == 4


async def test_another_node_needs_a_cosignature_by_a_witness_the_home_node_knows(state: DeviceState, alpha: FakeLog) -> None:
    beta = FakeLog(BETA)
    beta.append(BOB, new_key())
    conn = FakeConnection(alpha, beta)
    with pytest.raises(VerifyError) as caught:
        await check_answer(conn, state, beta.devices(BOB), account=BOB, now=T0)
    assert caught.value.code == "unwitnessed" and "no cosignature from a witness yet (need 1)" in str(caught.value)
    beta.cosign_by(GAMMA, new_key())  # a witness the home node has no key for
    beta.cosign_by(ALPHA, new_key())  # claims to be alpha, signed by another key
    with pytest.raises(VerifyError, match="no cosignature from a witness yet"):
        await check_answer(conn, state, beta.devices(BOB), account=BOB, now=T0)
    assert state.accepted_head(BETA) is None
    beta.cosign_by(ALPHA, alpha.key)
    checked = await check_answer(conn, state, beta.devices(BOB), account=BOB, now=T0)
    assert checked.witnesses == (ALPHA,)
    assert [(c.witness, c.verified) for c in checked.cosignatures] == [(GAMMA, False), (ALPHA, False), (ALPHA, True)]


async def test_the_witness_quorum_setting(state: DeviceState, alpha: FakeLog) -> None:
    beta = FakeLog(BETA)
    beta.append(BOB, new_key())
    conn = FakeConnection(alpha, beta)
    state.set_witness_quorum(0)
    assert (await check_answer(conn, state, beta.devices(BOB), account=BOB, now=T0)).witnesses == ()
    gamma = new_key()
    conn.keys[GAMMA] = gamma.public
    beta.cosign_by(ALPHA, alpha.key)
    state.set_witness_quorum(2)
    with pytest.raises(VerifyError, match=r"only 1 witness cosignatures \(need 2\)"):
        await check_answer(conn, state, beta.devices(BOB), account=BOB, now=T0)
    beta.cosign_by(GAMMA, gamma)
    assert (await check_answer(conn, state, beta.devices(BOB), account=BOB, now=T0)).witnesses == (ALPHA, GAMMA)
    state.set_witness_quorum(None)
    assert state.witness_quorum() is None


async def test_the_home_node_needs_witnesses_once_it_has_shown_it_has_them(state: DeviceState, alpha: FakeLog) -> None:
    conn = FakeConnection(alpha)
    await check_answer(conn, state, alpha.devices(ALICE), account=ALICE, now=T0)  # no witnesses yet: fine
    alpha.filler()
    alpha.cosign_by(BETA, (beta_key := new_key()))
    conn.keys[BETA] = beta_key.public
    await check_answer(conn, state, alpha.devices(ALICE), account=ALICE, now=T0)
    assert state.ever_cosigned(ALPHA)
    alpha.filler()  # a new head nobody cosigned yet
    with pytest.raises(VerifyError) as caught:
        await check_answer(conn, state, alpha.devices(ALICE), account=ALICE, now=T0)
    assert caught.value.code == "unwitnessed"


async def test_the_answer_must_be_the_proven_entry(state: DeviceState, alpha: FakeLog, beta: FakeLog) -> None:
    conn = FakeConnection(alpha, beta)
    answer = beta.devices(BOB)
    other = FakeLog(BETA)
    other.append(BOB, new_key())
    swapped = other.devices(BOB)
    with pytest.raises(VerifyError) as caught:
        await check_answer(conn, state, replace(answer, account_identity=swapped.account_identity), account=BOB, now=T0)
    assert caught.value.code == "directory_mismatch"
    with pytest.raises(VerifyError, match="not its proven directory entry"):
        await check_answer(conn, state, replace(answer, device_list=swapped.device_list), account=BOB, now=T0)
    with pytest.raises(ProtocolError, match="answered about"):
        await check_answer(conn, state, answer, account=f"carol@{BETA}", now=T0)
    carol = beta.append(f"carol@{BETA}", new_key())
    beta.cosign_by(ALPHA, alpha.key)
    forged = replace(answer, account=f"carol@{BETA}", proof=beta.proof(beta.latest(BOB)))
    with pytest.raises(VerifyError) as caught:  # bob's leaf offered as carol's
        await check_answer(conn, state, forged, account=f"carol@{BETA}", now=T0)
    assert caught.value.code == "wrong_account" and carol == 3


async def test_an_unwitnessed_lookup_is_asked_again_for_a_while(
    state: DeviceState, alpha: FakeLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transparency, "UNWITNESSED_DELAY_S", 0)
    beta = FakeLog(BETA)
    beta.append(BOB, new_key())
    conn = FakeConnection(alpha, beta)
    conn.devices_answers = [beta.devices(BOB), beta.devices(BOB)]
    beta.cosign_by(ALPHA, alpha.key)  # the witness catches up after two answers
    reply, checked = await fetch_devices(conn, state, BOB, now=T0)
    assert checked.witnesses == (ALPHA,) and reply.proof.head.cosignatures
    beta.cosignatures.clear()
    beta.filler()
    with pytest.raises(VerifyError) as caught:  # never witnessed: given up after the last try
        await fetch_devices(conn, state, BOB, now=T0)
    assert caught.value.code == "unwitnessed"
    assert len(conn.requests) - len(conn.asked(FetchNodeKey)) - len(conn.asked(FetchConsistency)) == 3 + transparency.UNWITNESSED_TRIES


async def test_node_keys_are_asked_once_per_connection(state: DeviceState, alpha: FakeLog, beta: FakeLog) -> None:
    conn = FakeConnection(alpha, beta)
    assert await node_key(conn, state, ALPHA, now=T0) == alpha.key.public and conn.requests == []
    assert await node_key(conn, state, BETA, now=T0) == beta.key.public
    assert await node_key(conn, state, BETA, now=T0) == beta.key.public
    for _ in range(2):  # a definite "no" is kept for the connection
        with pytest.raises(NodeError) as caught:
            await node_key(conn, state, GAMMA, now=T0)
        assert caught.value.code == "unknown_node"
    assert [f.node for f in conn.asked(FetchNodeKey)] == [BETA, GAMMA]


@pytest.mark.parametrize("code", ["unreachable", "rate_limited", "unavailable", "unwitnessed"])
async def test_a_node_key_the_home_node_cannot_give_now_is_asked_again(state: DeviceState, alpha: FakeLog, beta: FakeLog, code: str) -> None:
    conn = FakeConnection(alpha, beta)
    conn.node_key_error = NodeError(code, "not now")
    with pytest.raises(NodeError) as caught:
        await node_key(conn, state, BETA, now=T0)
    assert caught.value.code == code
    conn.node_key_error = None
    assert await node_key(conn, state, BETA, now=T0) == beta.key.public
    assert len(conn.asked(FetchNodeKey)) == 2


async def test_a_node_key_is_pinned_and_another_key_later_is_refused(state: DeviceState, alpha: FakeLog, beta: FakeLog) -> None:
    await check_answer(FakeConnection(alpha, beta), state, beta.devices(BOB), account=BOB, now=T0)  # beta's key: pinned
    impostor = new_key()
    conn = FakeConnection(alpha, beta, keys={BETA: impostor.public})  # a later connection: the home node lies
    for _ in range(2):
        with pytest.raises(VerifyError) as caught:
            await node_key(conn, state, BETA, now=T0 + 1)
        assert caught.value.code == "node_key_changed" and BETA in str(caught.value)
    with pytest.raises(VerifyError, match="changed"):
        await check_answer(conn, state, beta.devices(BOB), account=BOB, now=T0 + 1)
    [alert] = state.alerts()  # said once
    assert alert.kind == ALERT and f"another identity key for {BETA}" in alert.text
    # the pin survives: the real key is still accepted
    assert await node_key(FakeConnection(alpha, beta), state, BETA, now=T0 + 2) == beta.key.public


async def test_a_witness_key_made_up_by_the_home_node_does_not_count(state: DeviceState, alpha: FakeLog, beta: FakeLog) -> None:
    gamma = new_key()
    conn = FakeConnection(alpha, beta, keys={GAMMA: gamma.public})
    beta.cosign_by(GAMMA, gamma)
    state.set_witness_quorum(2)
    assert (await check_answer(conn, state, beta.devices(BOB), account=BOB, now=T0)).witnesses == (ALPHA, GAMMA)
    beta.filler()
    beta.cosign_by(ALPHA, alpha.key)
    fake = new_key()  # "gamma", as the home node now says, cosigns its new head
    beta.cosign_by(GAMMA, fake)
    with pytest.raises(VerifyError) as caught:
        await check_answer(FakeConnection(alpha, beta, keys={GAMMA: fake.public}), state, beta.devices(BOB), account=BOB, now=T0)
    assert caught.value.code == "unwitnessed"
    assert [a.text for a in state.alerts()] == [f"the home node gave another identity key for {GAMMA} than the one this device pinned: refusing it"]


async def test_an_older_entry_of_an_account_than_one_accepted_is_refused(state: DeviceState, alpha: FakeLog, beta: FakeLog) -> None:
    conn = FakeConnection(alpha, beta)
    old = beta.devices(BOB)  # leaf 2
    beta.append(BOB, new_key())
    beta.cosign_by(ALPHA, alpha.key)
    assert (await check_answer(conn, state, beta.devices(BOB), account=BOB, now=T0)).proven.index == 3
    with pytest.raises(VerifyError) as caught:
        await check_answer(conn, state, old, account=BOB, now=T0)
    assert caught.value.code == "stale_entry" and "an older entry of" in str(caught.value) and "(leaf 2)" in str(caught.value)
    assert state.accepted_head(BETA) == beta.head(4)
    # the same leaf again is fine, and indices count per account
    assert (await check_answer(conn, state, beta.devices(BOB), account=BOB, now=T0)).proven.index == 3
    assert (await check_answer(conn, state, alpha.devices(ALICE), account=ALICE, now=T0)).proven.index == 0


async def test_the_home_node_needs_a_witness_when_its_welcome_says_it_has_peers(state: DeviceState, alpha: FakeLog) -> None:
    conn = FakeConnection(alpha)
    conn.welcome.witnesses = 1
    with pytest.raises(VerifyError) as caught:
        await check_answer(conn, state, alpha.devices(ALICE), account=ALICE, now=T0)
    assert caught.value.code == "unwitnessed" and "(need 1)" in str(caught.value)
    assert state.accepted_head(ALPHA) is None
    alpha.cosign_by(BETA, (beta_key := new_key()))
    conn.keys[BETA] = beta_key.public
    assert (await check_answer(conn, state, alpha.devices(ALICE), account=ALICE, now=T0)).witnesses == (BETA,)


async def test_a_head_signed_by_another_key_or_naming_another_node_is_refused(
    state: DeviceState, alpha: FakeLog, beta: FakeLog, tmp_path: Path
) -> None:
    answer = beta.devices(BOB)
    alpha_head = SignedHead(head=alpha.head(), cosignatures=())
    with pytest.raises(VerifyError) as caught:
        await check_answer(FakeConnection(alpha, beta), state, replace(answer, proof=replace(answer.proof, head=alpha_head)), account=BOB, now=T0)
    assert caught.value.code in ("head_forged", "head_mismatch")
    assert decode_head(alpha_head.head).node == ALPHA and state.accepted_head(BETA) is None
    other = DeviceState(tmp_path / "other")  # a device that never saw beta's key: it pins the one it is given
    try:
        with pytest.raises(VerifyError) as caught:
            await check_answer(FakeConnection(alpha, beta, keys={BETA: new_key().public}), other, answer, account=BOB, now=T0)
        assert caught.value.code == "head_forged" and other.accepted_head(BETA) is None
    finally:
        other.close()
    with pytest.raises(VerifyError) as caught:  # this device pinned beta's real key
        await check_answer(FakeConnection(alpha, beta, keys={BETA: new_key().public}), state, answer, account=BOB, now=T0)
    assert caught.value.code == "node_key_changed"
