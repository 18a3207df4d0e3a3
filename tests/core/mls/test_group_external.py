"""External commits (RFC 9420 §12.4.3.2, §8.3) with real members of suites 1 and 0x004D: an
outsider joins a group of three from its GroupInfo (with and without the tree in it) and every
member agrees on the new epoch; a member rejoins replacing its old leaf (resync); external
commits that break a rule (two ExternalInit, a proposal by reference, an Add, no path, a
tampered or wrong kem_output, another epoch, a Remove of someone else) are refused with one
clear error and leave the group as it was."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

import pytest

from sonet.core.errors import DecryptError, LocalProtocolError, VerifyError
from sonet.core.mls.crypto import CipherSuite, cipher_suite
from sonet.core.mls.framing import MLSMessage, PublicMessage, WireFormat, WrongEpochError, protect_public, sign_content
from sonet.core.mls.group import ApplicationMessage, Group, StagedCommit
from sonet.core.mls.group import external as external_module
from sonet.core.mls.key_schedule import GroupContext
from sonet.core.mls.key_package import ValidationError
from sonet.core.mls.messages import Add, Commit, ExternalInit, GroupInfo, ProposalRef
from sonet.core.mls.psk import PreSharedKeyID
from tests.core.mls.test_group import SUITES, Member, assert_agree, deliver, three_members


def join_external(member: Member, info: GroupInfo | bytes, rng: random.Random, **kwargs: object) -> MLSMessage:
    group, message = Group.join_external(
        member.cs, info, member.key_package.leaf_node, signature_priv=member.signature_priv, rng=rng.randbytes, **kwargs  # type: ignore[arg-type]
    )
    member.group = group
    return message


def group_info_bytes(member: Member, **kwargs: bool) -> bytes:
    return MLSMessage(WireFormat.GROUP_INFO, member.g.group_info(**kwargs)).to_bytes()


def process_all(message: MLSMessage, members: list[Member]) -> list[StagedCommit]:
    staged = []
    for m in members:
        result = m.g.process(message.to_bytes())
        assert isinstance(result, StagedCommit)
        staged.append(result)
    for m, s in zip(members, staged):
        m.g.merge(s)
    return staged


@pytest.mark.parametrize("suite", SUITES)
def test_an_outsider_joins_a_group_of_three_by_external_commit(suite: int) -> None:
    rng, alice, bob, carol = three_members(suite)
    dave = Member.new(alice.cs, b"dave", rng)
    message = join_external(dave, group_info_bytes(bob), rng)
    assert message.wire_format is WireFormat.PUBLIC_MESSAGE
    assert dave.g.epoch == 2 and dave.g.leaf_index == 3
    staged = process_all(message, [alice, bob, carol])
    assert all(s.external and s.committer == 3 and s.removed == () for s in staged)
    assert_agree([alice, bob, carol, dave])

    # dave is a member like any other: application data both ways, then a commit of bob's
    data = dave.g.encrypt(b"hello from dave", rng.randbytes).to_bytes()
    for m in (alice, bob, carol):
        assert m.g.process(data) == ApplicationMessage(3, b"hello from dave", b"")
    reply = carol.g.encrypt(b"welcome dave", rng.randbytes).to_bytes()
    assert dave.g.process(reply) == ApplicationMessage(2, b"welcome dave", b"")
    staged_update, commit, _ = bob.g.commit(rng.randbytes)
    deliver(bob, staged_update, commit, [alice, carol, dave])
    assert_agree([alice, bob, carol, dave])

    # a GroupInfo without the tree: the joiner gets the tree some other way
    erin = Member.new(alice.cs, b"erin", rng)
    bare = group_info_bytes(alice, with_ratchet_tree=False)
    with pytest.raises(ValidationError, match="no ratchet tree"):
        join_external(erin, bare, rng)
    message = join_external(erin, bare, rng, ratchet_tree=alice.g.ratchet_tree_bytes())
    process_all(message, [alice, bob, carol, dave])
    assert_agree([alice, bob, carol, dave, erin])


@pytest.mark.parametrize("suite", SUITES)
def test_a_member_rejoins_replacing_its_old_leaf(suite: int) -> None:
    rng, alice, bob, carol = three_members(suite)
    old_bob = bob.g
    info = group_info_bytes(alice)
    message = join_external(bob, info, rng, resync=1)
    assert bob.g.leaf_index == 1  # the leftmost blank leaf once the old one is removed
    staged = process_all(message, [alice, carol])
    assert staged[0].removed == (1,) and staged[0].committer == 1
    assert_agree([alice, bob, carol])
    # the lost device, if it comes back, sees itself removed
    gone = old_bob.process(message.to_bytes())
    assert isinstance(gone, StagedCommit) and gone.removes_us
    old_bob.merge(gone)
    assert not old_bob.active

    # only a member's own leaf can be replaced: dave may not remove carol
    dave = Member.new(alice.cs, b"dave", rng)
    with pytest.raises(LocalProtocolError, match="credential is not the joiner's"):
        join_external(dave, group_info_bytes(alice), rng, resync=2)


def test_a_group_info_without_external_pub_or_with_a_bad_signature_is_refused() -> None:
    rng, alice, bob, carol = three_members(1)
    dave = Member.new(alice.cs, b"dave", rng)
    with pytest.raises(LocalProtocolError, match="no external_pub"):
        join_external(dave, group_info_bytes(alice, external_pub=False), rng)
    info = alice.g.group_info()
    forged = replace(info, signer=1)  # signed by alice, claims bob
    with pytest.raises(VerifyError, match="GroupInfo signature"):
        join_external(dave, MLSMessage(WireFormat.GROUP_INFO, forged).to_bytes(), rng)
    with pytest.raises(ValidationError, match="where a GroupInfo was expected"):
        join_external(dave, alice.g.encrypt(b"x", rng.randbytes).to_bytes(), rng)


def resigned(
    cs: CipherSuite, joiner: Member, context: GroupContext, message: MLSMessage, change: Callable[[Commit], Commit]
) -> MLSMessage:
    """The external commit ``message`` (made on the epoch ``context``) with its Commit changed by
    ``change``, signed again by the joiner: what members refuse is the rule broken, not the
    signature."""
    body = message.body
    assert isinstance(body, PublicMessage)
    content = replace(body.content, body=change(body.content.commit()).to_bytes())
    auth = sign_content(cs, joiner.signature_priv, WireFormat.PUBLIC_MESSAGE, content, context, confirmation_tag=body.auth.confirmation_tag)
    return MLSMessage(WireFormat.PUBLIC_MESSAGE, protect_public(cs, auth, context, None))


@pytest.mark.parametrize("suite", SUITES)
def test_external_commits_that_break_a_rule_are_refused_and_change_nothing(suite: int) -> None:
    rng, alice, bob, carol = three_members(suite)
    cs = alice.cs
    dave = Member.new(cs, b"dave", rng)
    genuine = join_external(dave, group_info_bytes(alice), rng)
    context = alice.g.context  # the epoch the commit was made on
    before = (alice.g.epoch, alice.g.epoch_authenticator, alice.g.ratchet_tree_bytes())

    def init_of(commit: Commit) -> ExternalInit:
        found = [p for p in commit.proposals if isinstance(p, ExternalInit)]
        return found[0]

    erin = Member.new(cs, b"erin", rng)
    other_pub = cs.hpke_key_pair(rng.randbytes)[1]
    wrong_kem_output, _ = external_module.external_init(cs, other_pub, rng.randbytes)
    cases: list[tuple[MLSMessage, type[Exception], str]] = [
        (resigned(cs, dave, context, genuine, lambda c: replace(c, proposals=(*c.proposals, init_of(c)))), ValidationError, "2 ExternalInit"),
        (resigned(cs, dave, context, genuine, lambda c: replace(c, proposals=tuple(p for p in c.proposals if not isinstance(p, ExternalInit)))),
         ValidationError, "0 ExternalInit"),
        (resigned(cs, dave, context, genuine, lambda c: replace(c, proposals=(*c.proposals, ProposalRef(bytes(cs.nh))))), ValidationError,
         "by reference"),
        (resigned(cs, dave, context, genuine, lambda c: replace(c, proposals=(*c.proposals, Add(erin.key_package)))), ValidationError,
         "add proposal"),
        (resigned(cs, dave, context, genuine, lambda c: replace(c, path=None)), ValidationError, "without a path"),
        (resigned(cs, dave, context, genuine, lambda c: replace(c, proposals=(ExternalInit(wrong_kem_output),))), VerifyError,
         "confirmation tag"),
        (resigned(cs, dave, context, genuine, lambda c: replace(c, proposals=(ExternalInit(wrong_kem_output[:-1]),))), DecryptError,
         "kem_output does not decapsulate"),
    ]  # fmt: skip
    tampered = bytearray(genuine.to_bytes())
    kem_output = init_of(genuine.body.content.commit()).kem_output  # type: ignore[union-attr]
    at = bytes(tampered).index(kem_output)
    tampered[at + 5] ^= 1
    cases.append((MLSMessage.from_bytes(bytes(tampered)), VerifyError, "signature"))
    for message, error, reason in cases:
        with pytest.raises(error, match=reason) as caught:
            alice.g.process(message.to_bytes())
        assert "\n" not in str(caught.value)
        assert (alice.g.epoch, alice.g.epoch_authenticator, alice.g.ratchet_tree_bytes()) == before
    # nothing changed: the genuine commit still goes through
    process_all(genuine, [alice, bob, carol])
    assert_agree([alice, bob, carol, dave])


def test_an_external_commit_of_another_epoch_or_removing_someone_else_is_refused() -> None:
    rng, alice, bob, carol = three_members(1)
    dave = Member.new(alice.cs, b"dave", rng)
    late = join_external(dave, group_info_bytes(alice), rng)
    staged, commit, _ = bob.g.commit(rng.randbytes)
    deliver(bob, staged, commit, [alice, carol])
    with pytest.raises(WrongEpochError, match="epoch 1, the group is at epoch 2"):
        alice.g.process(late.to_bytes())

    # a joiner that removes carol (its credential is not carol's) is refused by the members
    erin = Member.new(alice.cs, b"erin", rng)
    original = external_module._check_resync
    external_module._check_resync = lambda *args: None  # type: ignore[assignment]
    try:
        evil = join_external(erin, group_info_bytes(alice), rng, resync=2)
    finally:
        external_module._check_resync = original
    with pytest.raises(ValidationError, match="removes leaf 2, whose credential is not the joiner's"):
        alice.g.process(evil.to_bytes())


def test_an_external_commit_with_a_psk() -> None:
    rng, alice, bob, carol = three_members(1)
    psk_id = PreSharedKeyID.external(b"shared", rng.randbytes(32))
    for m in (alice, bob, carol):
        m.g.external_psks[b"shared"] = b"k" * 32
    dave = Member.new(alice.cs, b"dave", rng)
    with pytest.raises(LocalProtocolError, match="unknown to this member"):
        join_external(dave, group_info_bytes(alice), rng, psks=[psk_id])
    message = join_external(dave, group_info_bytes(alice), rng, psks=[psk_id], external_psks={b"shared": b"k" * 32})
    staged = process_all(message, [alice, bob, carol])
    assert staged[0].psks == (psk_id,)
    assert_agree([alice, bob, carol, dave])
