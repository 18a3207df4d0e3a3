"""What a group member refuses (sonet.core.mls.group), each with one clear error, and a refused
commit leaves the group as it was (the genuine commit still goes through afterwards): a commit
from a removed member, a tampered commit (signature, confirmation tag, membership tag), a commit
of another epoch, a commit naming a proposal never received, a Welcome for another KeyPackage,
a replayed application message; our own mistakes (a stale staged commit, an invalid proposal
list) are LocalProtocolError."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sonet.core.errors import DecryptError, LocalProtocolError, Refusal, VerifyError
from sonet.core.mls.framing import (
    FramedContentAuthData,
    MLSMessage,
    PublicMessage,
    WireFormat,
    WrongEpochError,
    membership_tag,
    sign_content,
)
from sonet.core.mls.group import Group, StagedCommit
from sonet.core.mls.key_package import ValidationError
from sonet.core.mls.messages import Add, Commit, ProposalRef, Remove
from sonet.core.mls.secret_tree import GenerationError

from .test_group import SUITES, Member, deliver, three_members


def snapshot(group: Group) -> tuple[object, ...]:
    return (group.epoch, group.epoch_authenticator, group.context, group.ratchet_tree_bytes(), len(group.pending_proposals()))


def retagged(group: Group, message: PublicMessage) -> MLSMessage:
    """``message`` with a membership tag that verifies in ``group``'s epoch (as a member who holds
    the epoch's membership key could make it), so the checks after the tag are reached."""
    state = group._state
    auth = message.authenticated_content()
    tag = membership_tag(group.cs, state.secrets.membership_key, auth, state.context)
    return MLSMessage(WireFormat.PUBLIC_MESSAGE, replace(message, membership_tag=tag))


def refuses(group: Group, message: MLSMessage | bytes, error: type[Refusal], match: str) -> Refusal:
    before = snapshot(group)
    with pytest.raises(error, match=match) as caught:
        group.process(message)
    assert snapshot(group) == before
    assert "\n" not in str(caught.value)
    return caught.value


@pytest.mark.parametrize("suite", SUITES)
def test_a_tampered_commit_is_refused_and_changes_nothing(suite: int) -> None:
    rng, alice, bob, carol = three_members(suite)
    staged, commit, _ = alice.g.commit(rng.randbytes)
    public = commit.body
    assert isinstance(public, PublicMessage)

    flipped = bytes([public.auth.signature[0] ^ 1]) + public.auth.signature[1:]
    bad_signature = replace(public, auth=FramedContentAuthData(flipped, public.auth.confirmation_tag))
    # as sent (the membership tag covers the signature) ...
    refuses(bob.g, MLSMessage(WireFormat.PUBLIC_MESSAGE, bad_signature), VerifyError, "membership tag")
    # ... and re-tagged by an insider: the signature itself is checked
    error = refuses(bob.g, retagged(bob.g, bad_signature), VerifyError, "signature does not verify")
    assert error.code == "verify_failed"

    tag = public.auth.confirmation_tag
    assert tag is not None
    bad_tag = replace(public, auth=FramedContentAuthData(public.auth.signature, bytes([tag[0] ^ 1]) + tag[1:]))
    refuses(bob.g, retagged(bob.g, bad_tag), VerifyError, "confirmation tag")

    assert public.membership_tag is not None
    bad_membership = replace(public, membership_tag=bytes([public.membership_tag[0] ^ 1]) + public.membership_tag[1:])
    refuses(bob.g, MLSMessage(WireFormat.PUBLIC_MESSAGE, bad_membership), VerifyError, "membership tag")

    # Alice herself signs a commit whose UpdatePath lies: a parent node's key that is not the
    # one her leaf's parent hash covers
    path = public.content.commit().path
    assert path is not None and path.nodes
    lying_node = replace(path.nodes[0], encryption_key=carol.g.tree.leaf(2).encryption_key)  # type: ignore[union-attr]
    lying = Commit(public.content.commit().proposals, replace(path, nodes=(lying_node, *path.nodes[1:])))
    content = replace(public.content, body=lying.to_bytes())
    signed = sign_content(alice.cs, alice.signature_priv, WireFormat.PUBLIC_MESSAGE, content, alice.g.context, confirmation_tag=tag)
    refuses(bob.g, retagged(bob.g, PublicMessage(signed.content, signed.auth, b"")), ValidationError, "parent hash")

    deliver(alice, staged, commit, [bob, carol])  # the genuine commit still works
    assert bob.g.epoch_authenticator == alice.g.epoch_authenticator == carol.g.epoch_authenticator


def test_a_commit_from_a_removed_member_is_refused() -> None:
    rng, alice, bob, carol = three_members(1)
    carol_old_commit = carol.g.commit(rng.randbytes)[1]  # made before she learns of her removal
    staged, commit, _ = alice.g.commit(rng.randbytes, proposals=[Remove(2)])
    deliver(alice, staged, commit, [bob])
    # her commit is of the epoch she was removed in
    error = refuses(bob.g, carol_old_commit, WrongEpochError, "epoch 1, the group is at epoch 2")
    assert error.code == "mls_invalid"
    # and one of the current epoch (an insider lends her the membership key) is refused: leaf 2 is blank
    state = bob.g._state
    content = replace(carol_old_commit.body.content, epoch=bob.g.epoch)  # type: ignore[union-attr]
    signed = sign_content(carol.cs, carol.signature_priv, WireFormat.PUBLIC_MESSAGE, content, state.context, confirmation_tag=b"\0" * 32)
    forged = PublicMessage(signed.content, signed.auth, b"")
    refuses(bob.g, retagged(bob.g, forged), ValidationError, "leaf 2, which is not a member")
    # Carol's own group refuses to go on once she merged her removal
    removal = carol.g.process(commit)
    assert isinstance(removal, StagedCommit) and removal.removes_us
    carol.g.merge(removal)
    with pytest.raises(LocalProtocolError, match="removed"):
        carol.g.encrypt(b"still here?", rng.randbytes)


def test_a_commit_of_another_epoch_is_refused() -> None:
    rng, alice, bob, carol = three_members(1)
    staged, first, _ = alice.g.commit(rng.randbytes)
    deliver(alice, staged, first, [bob, carol])
    refuses(bob.g, first, WrongEpochError, "epoch 1, the group is at epoch 2")  # replayed commit
    staged, second, _ = carol.g.commit(rng.randbytes)
    deliver(carol, staged, second, [alice, bob])
    refuses(bob.g, first, WrongEpochError, "epoch 1, the group is at epoch 3")


def test_a_commit_naming_a_proposal_never_received_is_refused() -> None:
    rng, alice, bob, carol = three_members(1)
    proposal = carol.g.propose(Remove(1), rng.randbytes)
    assert alice.g.process(proposal)  # Alice has it, Bob never got it
    staged, commit, _ = alice.g.commit(rng.randbytes)
    assert isinstance(commit.body, PublicMessage)
    assert isinstance(commit.body.content.commit().proposals[0], ProposalRef)
    refuses(bob.g, commit, ValidationError, "has not received")
    # once it arrives, the same commit is accepted
    bob.g.process(proposal)
    assert isinstance(bob.g.process(commit), StagedCommit)


def test_a_welcome_for_another_key_package_is_refused() -> None:
    rng, alice, bob, carol = three_members(1)
    dave = Member.new(alice.cs, b"dave", rng)
    erin = Member.new(alice.cs, b"erin", rng)
    _, _, welcome = alice.g.commit(rng.randbytes, proposals=[Add(dave.key_package)])
    assert welcome is not None
    with pytest.raises(ValidationError, match="no group secrets for this KeyPackage") as caught:
        erin.join(welcome)
    assert caught.value.code == "mls_invalid"
    # Erin's init key cannot open Dave's secrets either
    erin_with_daves_package = Member(b"erin", alice.cs, dave.key_package, erin.init_priv, erin.encryption_priv, erin.signature_priv)
    with pytest.raises(DecryptError):
        erin_with_daves_package.join(welcome)
    # a Welcome without the tree needs it from elsewhere
    _, _, bare = alice.g.commit(rng.randbytes, proposals=[Add(erin.key_package)], ratchet_tree_in_welcome=False)
    assert bare is not None
    with pytest.raises(ValidationError, match="no ratchet tree"):
        erin.join(bare)


def test_a_replayed_application_message_is_refused() -> None:
    rng, alice, bob, carol = three_members(1)
    message = alice.g.encrypt(b"once", rng.randbytes).to_bytes()
    assert bob.g.process(message).data == b"once"  # type: ignore[union-attr]
    with pytest.raises(GenerationError) as caught:
        bob.g.process(message)
    assert caught.value.code == "mls_generation"
    # a tampered ciphertext is refused without using up the sender's key
    fresh = bytearray(alice.g.encrypt(b"twice", rng.randbytes).to_bytes())
    genuine = bytes(fresh)
    fresh[-1] ^= 1
    with pytest.raises(DecryptError):
        bob.g.process(bytes(fresh))
    assert bob.g.process(genuine).data == b"twice"  # type: ignore[union-attr]


def test_our_own_mistakes_are_local_errors() -> None:
    rng, alice, bob, carol = three_members(1)
    with pytest.raises(LocalProtocolError, match="removes the committer"):
        alice.g.commit(rng.randbytes, proposals=[Remove(0)])
    with pytest.raises(LocalProtocolError, match="need a commit with a path"):
        alice.g.commit(rng.randbytes, proposals=[Remove(1)], path=False)
    with pytest.raises(LocalProtocolError, match="client already|signature key is a member"):
        alice.g.commit(rng.randbytes, proposals=[Add(bob.key_package)])
    stale, _, _ = alice.g.commit(rng.randbytes)
    newer, commit, _ = alice.g.commit(rng.randbytes)
    with pytest.raises(LocalProtocolError, match="merge its StagedCommit"):
        alice.g.process(commit)  # our own commit coming back from the delivery service
    alice.g.merge(newer)
    with pytest.raises(LocalProtocolError, match="not made on this group's current epoch"):
        alice.g.merge(stale)


@pytest.mark.parametrize("wire_format", [WireFormat.PUBLIC_MESSAGE, WireFormat.PRIVATE_MESSAGE])
def test_our_own_messages_coming_back_are_named(wire_format: WireFormat) -> None:
    """A delivery service echoes what we sent: each is named (not "generation used already"),
    nothing of ours is used up, and the others read them all."""
    rng, alice, bob, carol = three_members(1)
    dave = Member.new(alice.cs, b"dave", rng)
    proposal = alice.g.propose(Add(dave.key_package), rng.randbytes, wire_format=wire_format)
    staged, commit, _ = alice.g.commit(rng.randbytes, wire_format=wire_format)
    with pytest.raises(LocalProtocolError, match="our own proposal comes back: it is pending already"):
        alice.g.process(proposal.to_bytes())
    with pytest.raises(LocalProtocolError, match=r"our own commit comes back: merge its StagedCommit \(the one commit\(\) returned\)"):
        alice.g.process(commit.to_bytes())
    if wire_format is WireFormat.PRIVATE_MESSAGE:
        data = alice.g.encrypt(b"echo", rng.randbytes)
        with pytest.raises(LocalProtocolError, match="our own application message comes back"):
            alice.g.process(data.to_bytes())
        assert bob.g.process(data.to_bytes()).data == b"echo"  # type: ignore[union-attr]
    for other in (bob, carol):
        other.g.process(proposal.to_bytes())
    deliver(alice, staged, commit, [bob, carol])
    assert alice.g.epoch == bob.g.epoch == 2 and alice.g.epoch_authenticator == carol.g.epoch_authenticator


def test_a_malformed_message_is_refused() -> None:
    rng, alice, bob, carol = three_members(1)
    _, commit, _ = alice.g.commit(rng.randbytes)
    data = commit.to_bytes()
    for broken in (data[:-1], data + b"\0", b"", b"\x00\x01\x00\x09"):
        with pytest.raises(Refusal) as caught:
            bob.g.process(broken)
        assert caught.value.code in ("mls_malformed", "mls_invalid", "verify_failed")
    assert bob.g.process(data)


def test_a_commit_adding_one_client_twice_is_refused() -> None:
    rng, alice, bob, carol = three_members(1)
    dave = Member.new(alice.cs, b"dave", rng)
    with pytest.raises(LocalProtocolError, match="two Add proposals for the same client"):
        alice.g.commit(rng.randbytes, proposals=[Add(dave.key_package), Add(dave.key_package)])
    # and when a member proposes it, the other pending Add of the same client is left out
    first = bob.g.propose(Add(dave.key_package), rng.randbytes)
    alice.g.process(first)
    staged, commit, welcome = alice.g.commit(rng.randbytes, proposals=[Add(dave.key_package)])
    assert len(staged.added) == 1 and welcome is not None


def test_a_commit_without_the_path_its_proposals_require_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from sonet.core.mls.group import commit as commit_module

    rng, alice, bob, carol = three_members(1)
    with monkeypatch.context() as patched:  # a committer that skips the rule
        patched.setattr(commit_module, "path_required", lambda proposals: False)
        _, pathless, _ = alice.g.commit(rng.randbytes, proposals=[Remove(2)])
    assert pathless.body.content.commit().path is None  # type: ignore[union-attr]
    refuses(bob.g, pathless, ValidationError, "without the UpdatePath its proposals require")
