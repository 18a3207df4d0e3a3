"""The passive-client interop kind (core/mls/interop/passive_client.py) over scenarios our own
active members play, written in the passive-client JSON format of test-vectors.md: a client
joins by Welcome (tree inside or handed over, with an external PSK) and follows updates,
proposals committed by reference, removes, adds, PSKs and PrivateMessage commits, checking every
epoch's authenticator. Damaged copies of a scenario fail."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from sonet.core.mls.crypto import cipher_suite
from sonet.core.mls.framing import MLSMessage, WireFormat
from sonet.core.mls.group import StagedCommit
from sonet.core.mls.interop import passive_client
from sonet.core.mls.interop.runner import run_cases
from sonet.core.mls.messages import Add, PreSharedKey, Remove
from sonet.core.mls.psk import PreSharedKeyID

from .test_group import SUITES, Member

PSK_ID, PSK = b"scenario psk", bytes(range(32))


def scenario(suite: int, *, tree_in_welcome: bool, seed: int = 7) -> dict[str, Any]:
    """Alice and Carol act; Bob is the passive client, added together with Carol."""
    rng = random.Random(seed)
    cs = cipher_suite(suite)
    alice, bob, carol = (Member.new(cs, name, rng) for name in (b"alice", b"bob", b"carol"))
    alice.create(rng)
    alice.g.external_psks[PSK_ID] = PSK
    psk = PreSharedKey(PreSharedKeyID.external(PSK_ID, rng.randbytes(cs.nh)))
    staged, _, welcome = alice.g.commit(
        rng.randbytes, proposals=[Add(bob.key_package), Add(carol.key_package), psk], ratchet_tree_in_welcome=tree_in_welcome
    )
    alice.g.merge(staged)
    assert welcome is not None
    carol.join(welcome, None if tree_in_welcome else alice.g.ratchet_tree_bytes(), psks={PSK_ID: PSK})
    case: dict[str, Any] = {
        "cipher_suite": suite,
        "external_psks": [{"psk_id": PSK_ID.hex(), "psk": PSK.hex()}],
        "key_package": MLSMessage(WireFormat.KEY_PACKAGE, bob.key_package).to_bytes().hex(),
        "signature_priv": bob.signature_priv.hex(),
        "encryption_priv": bob.encryption_priv.hex(),
        "init_priv": bob.init_priv.hex(),
        "welcome": MLSMessage(WireFormat.WELCOME, welcome).to_bytes().hex(),
        "ratchet_tree": None if tree_in_welcome else alice.g.ratchet_tree_bytes().hex(),
        "initial_epoch_authenticator": alice.g.epoch_authenticator.hex(),
        "epochs": [],
    }
    actives = [alice, carol]

    def epoch(committer: Member, sent: list[tuple[Member, MLSMessage]], **commit_args: Any) -> None:
        for proposer, message in sent:
            for m in actives:
                if m is not proposer:
                    m.g.process(message)
        staged, commit, _ = committer.g.commit(rng.randbytes, **commit_args)
        for m in actives:
            if m is committer:
                m.g.merge(staged)
            else:
                received = m.g.process(commit)
                assert isinstance(received, StagedCommit)
                m.g.merge(received)
        assert alice.g.epoch_authenticator == carol.g.epoch_authenticator
        case["epochs"].append(
            {
                "proposals": [p.to_bytes().hex() for _, p in sent],
                "commit": commit.to_bytes().hex(),
                "epoch_authenticator": alice.g.epoch_authenticator.hex(),
            }
        )

    epoch(alice, [])
    epoch(carol, [], wire_format=WireFormat.PRIVATE_MESSAGE)
    epoch(alice, [(carol, carol.g.propose_update(rng.randbytes))])
    dave = Member.new(cs, b"dave", rng)
    epoch(carol, [(alice, alice.g.propose(Add(dave.key_package), rng.randbytes, wire_format=WireFormat.PRIVATE_MESSAGE))])
    epoch(alice, [], proposals=[Remove(3), PreSharedKey(PreSharedKeyID.external(PSK_ID, rng.randbytes(cs.nh)))])
    epoch(carol, [], wire_format=WireFormat.PRIVATE_MESSAGE)
    return json.loads(json.dumps(case))  # exactly what a file would hold


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("tree_in_welcome", [True, False])
def test_a_passive_client_follows_our_scenario(suite: int, tree_in_welcome: bool) -> None:
    case = scenario(suite, tree_in_welcome=tree_in_welcome)
    assert len(case["epochs"]) == 6
    passive_client.check(case)


def damaged(case: dict[str, Any]) -> list[dict[str, Any]]:
    out = []

    def variant(change: Any) -> None:
        c = copy.deepcopy(case)
        change(c)
        out.append(c)

    def flip(text: str, at: int) -> str:
        data = bytearray(bytes.fromhex(text))
        data[at] ^= 1
        return data.hex()

    variant(lambda c: c.update(initial_epoch_authenticator=flip(c["initial_epoch_authenticator"], 0)))
    variant(lambda c: c["epochs"][3].update(epoch_authenticator=flip(c["epochs"][3]["epoch_authenticator"], 5)))
    variant(lambda c: c["epochs"][1].update(commit=flip(c["epochs"][1]["commit"], -3)))
    variant(lambda c: c["epochs"][2].update(proposals=[]))  # the commit names a proposal never seen
    variant(lambda c: c["epochs"].reverse())
    variant(lambda c: c.update(init_priv=c["encryption_priv"]))
    variant(lambda c: c.update(external_psks=[]))
    variant(lambda c: c.update(welcome=flip(c["welcome"], -1)))
    return out


def test_damaged_scenarios_fail() -> None:
    case = scenario(1, tree_in_welcome=True)
    cases = damaged(case)
    result = run_cases(passive_client.check, [case, *cases])
    assert result.passed == 1 and result.failed == len(cases)
