"""The delivery service's view of a group (sonet.core.mls.group.PublicGroup), suites 1 and
0x004D: it starts from the creator's GroupInfo and tree and follows real members' PublicMessages
(adds by value and by reference, updates by proposal and by path, removes, a group context
extensions change, empty commits), its context and tree equal to every member's after each
merge, its state round-tripping through to_bytes/from_bytes midway with a proposal pending. What
it refuses, each with one line: PrivateMessages, external senders, another epoch, a bad
signature, a sender that is not a member, a commit that removes a non-member or adds an invalid
KeyPackage, a tampered UpdatePath key, truncated bytes, a GroupInfo with a bad signature or a
tree that is not its own, and damaged saved state."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from sonet.core.errors import LocalProtocolError, RemoteProtocolError, VerifyError
from sonet.core.mls.codec import DecodeError
from sonet.core.mls.crypto import cipher_suite
from sonet.core.mls.extensions import Extension
from sonet.core.mls.framing import (
    ContentType,
    FramedContent,
    MLSMessage,
    PublicMessage,
    Sender,
    WireFormat,
    WrongEpochError,
    protect_public,
    sign_content,
)
from sonet.core.mls.group import MAX_PENDING_PROPOSALS, Group, PublicCommit, PublicGroup, PublicProposal, QueuedProposal, StagedCommit
from sonet.core.mls.key_package import ValidationError
from sonet.core.mls.key_schedule import GroupContext
from sonet.core.mls.messages import Add, Commit, GroupContextExtensions, ProposalRef, ReInit, Remove, Update, UpdatePath, UpdatePathNode

from .test_group import SUITES, Member, three_members


def hub_of(creator: Member) -> PublicGroup:
    """The hub's view from the creator's signed GroupInfo (without the tree) and the tree."""
    info = MLSMessage(WireFormat.GROUP_INFO, creator.g.group_info(with_ratchet_tree=False)).to_bytes()
    return PublicGroup.from_group_info(info, creator.g.ratchet_tree_bytes())


def assert_hub_agrees(hub: PublicGroup, members: list[Member]) -> None:
    for m in members:
        assert hub.context == m.g.context
        assert hub.tree.to_bytes() == m.g.ratchet_tree_bytes()
    assert hub.tree.root_tree_hash() == hub.context.tree_hash
    assert hub.members() == members[0].g.members()


def through_hub(hub: PublicGroup, committer: Member, staged: StagedCommit, message: MLSMessage, others: list[Member]) -> PublicCommit:
    """The hub takes the commit first (as the delivery service orders it), then the members."""
    data = message.to_bytes()
    public = hub.process(data)
    assert isinstance(public, PublicCommit)
    assert public.sender == committer.g.leaf_index and public.epoch == committer.g.epoch + 1
    hub.merge(public)
    received = [other.g.process(data) for other in others]
    committer.g.merge(staged)
    for other, result in zip(others, received):
        assert isinstance(result, StagedCommit)
        other.g.merge(result)
    return public


def proposal_through_hub(hub: PublicGroup, message: MLSMessage, sender: Member, others: list[Member]) -> PublicProposal:
    public = hub.process(message.to_bytes())
    assert isinstance(public, PublicProposal) and public.sender == sender.g.leaf_index
    for other in others:
        queued = other.g.process(message.to_bytes())
        assert isinstance(queued, QueuedProposal) and queued.ref == public.ref
    return public


def forged(member: Member, context: GroupContext, content_type: ContentType, body: bytes, *, sender: int | None = None) -> bytes:
    """A PublicMessage ``member`` signs over ``context`` (the hub's) that no honest Group would
    send; its membership tag and confirmation tag are junk, which the hub cannot check."""
    index = member.g.leaf_index if sender is None else sender
    content = FramedContent(context.group_id, context.epoch, Sender.member(index), b"", content_type, body)
    tag = b"\x00" * member.cs.nh if content_type is ContentType.COMMIT else None
    auth = sign_content(member.cs, member.signature_priv, WireFormat.PUBLIC_MESSAGE, content, context, confirmation_tag=tag)
    return MLSMessage(WireFormat.PUBLIC_MESSAGE, protect_public(member.cs, auth, context, b"\x00" * member.cs.nh)).to_bytes()


def resigned(member: Member, context: GroupContext, message: MLSMessage, commit: Commit) -> bytes:
    """``message`` (a commit of ``member``) carrying ``commit`` instead, signed again."""
    body = message.body
    assert isinstance(body, PublicMessage) and body.auth.confirmation_tag is not None
    content = replace(body.content, body=commit.to_bytes(), decoded=None)
    auth = sign_content(
        member.cs, member.signature_priv, WireFormat.PUBLIC_MESSAGE, content, context, confirmation_tag=body.auth.confirmation_tag
    )
    return MLSMessage(WireFormat.PUBLIC_MESSAGE, protect_public(member.cs, auth, context, b"\x00" * member.cs.nh)).to_bytes()


@pytest.mark.parametrize("suite", SUITES)
def test_the_hub_follows_a_group_through_every_kind_of_commit(suite: int) -> None:
    rng = random.Random(suite)
    cs = cipher_suite(suite)
    alice, bob, carol, dave, erin = (Member.new(cs, name, rng) for name in (b"alice", b"bob", b"carol", b"dave", b"erin"))
    alice.create(rng)
    hub = hub_of(alice)
    assert (hub.group_id, hub.epoch, hub.cs.id) == (alice.g.group_id, 0, suite)
    assert_hub_agrees(hub, [alice])

    # adds by value: Alice adds Bob and Carol
    staged, commit, welcome = alice.g.commit(rng.randbytes, proposals=[Add(bob.key_package), Add(carol.key_package)])
    public = through_hub(hub, alice, staged, commit, [])
    assert welcome is not None
    bob.join(welcome)
    carol.join(welcome)
    assert public.added == ((1, bob.key_package.leaf_node), (2, carol.key_package.leaf_node))
    assert [(type(p), by) for p, by in public.proposals] == [(Add, 0), (Add, 0)]
    assert public.removed == () and public.extensions is None
    members = [alice, bob, carol]
    assert_hub_agrees(hub, members)

    # an add by reference: Bob proposes Dave, Carol commits it
    proposal = proposal_through_hub(hub, bob.g.propose(Add(dave.key_package), rng.randbytes), bob, [alice, carol])
    assert [p.ref for p in hub.pending_proposals()] == [proposal.ref]
    staged, commit, welcome = carol.g.commit(rng.randbytes)
    public = through_hub(hub, carol, staged, commit, [alice, bob])
    assert welcome is not None
    dave.join(welcome)
    assert public.added == ((3, dave.key_package.leaf_node),) and [(type(p), by) for p, by in public.proposals] == [(Add, 1)]
    assert hub.pending_proposals() == []
    members.append(dave)
    assert_hub_agrees(hub, members)

    # empty commits: an update with path from every member
    for committer in members:
        staged, commit, _ = committer.g.commit(rng.randbytes)
        public = through_hub(hub, committer, staged, commit, [m for m in members if m is not committer])
        assert public.proposals == () and public.added == () and public.removed == ()
        assert_hub_agrees(hub, members)

    # an Update proposal, committed by reference
    proposal_through_hub(hub, bob.g.propose_update(rng.randbytes), bob, [alice, carol, dave])
    staged, commit, _ = dave.g.commit(rng.randbytes)
    public = through_hub(hub, dave, staged, commit, [alice, bob, carol])
    assert [(type(p), by) for p, by in public.proposals] == [(Update, 1)]
    assert_hub_agrees(hub, members)

    # a Remove pending across a save and a restore of the hub's state
    pending = proposal_through_hub(hub, alice.g.propose(Remove(3), rng.randbytes), alice, [bob, carol, dave])
    saved = hub.to_bytes()
    hub = PublicGroup.from_bytes(saved)
    assert hub.to_bytes() == saved
    assert hub.pending_proposals() == [pending]
    dave_leaf = hub.tree.leaf(3)
    staged, commit, _ = carol.g.commit(rng.randbytes)
    dave_sees = dave.g.process(commit)
    assert isinstance(dave_sees, StagedCommit) and dave_sees.removes_us
    public = through_hub(hub, carol, staged, commit, [alice, bob])
    assert public.removed == ((3, dave_leaf),) and [(type(p), by) for p, by in public.proposals] == [(Remove, 0)]
    members.remove(dave)
    assert_hub_agrees(hub, members)

    # a group context extensions change (by value, with a path)
    extensions = (Extension(0xFF00, b"topic: lunch"),)
    staged, commit, _ = bob.g.commit(rng.randbytes, proposals=[GroupContextExtensions(extensions)])
    public = through_hub(hub, bob, staged, commit, [alice, carol])
    assert public.extensions == extensions and hub.context.extensions == extensions
    assert_hub_agrees(hub, members)

    # an add and a remove in one commit, restored state again, then an empty commit
    hub = PublicGroup.from_bytes(hub.to_bytes())
    staged, commit, welcome = alice.g.commit(rng.randbytes, proposals=[Remove(1), Add(erin.key_package)])
    bob_leaf = hub.tree.leaf(1)
    assert isinstance(bob.g.process(commit), StagedCommit)
    public = through_hub(hub, alice, staged, commit, [carol])
    assert welcome is not None
    erin.join(welcome)
    assert public.removed == ((1, bob_leaf),) and public.added == ((1, erin.key_package.leaf_node),)
    members = [alice, erin, carol]
    assert_hub_agrees(hub, members)
    staged, commit, _ = erin.g.commit(rng.randbytes)
    through_hub(hub, erin, staged, commit, [alice, carol])
    assert_hub_agrees(hub, members)
    assert hub.epoch == alice.g.epoch == 11


@pytest.fixture(params=SUITES)
def group(request: pytest.FixtureRequest) -> tuple[random.Random, Member, Member, Member, PublicGroup]:
    """Alice, Bob and Carol at epoch 1, and the hub's view (from Alice's GroupInfo of epoch 1)."""
    rng, alice, bob, carol = three_members(request.param, seed=7)
    return rng, alice, bob, carol, hub_of(alice)


Group3 = tuple[random.Random, Member, Member, Member, PublicGroup]


def test_a_private_message_or_an_external_sender_is_refused(group: Group3) -> None:
    rng, alice, bob, _, hub = group
    _, commit, _ = alice.g.commit(rng.randbytes, wire_format=WireFormat.PRIVATE_MESSAGE)
    with pytest.raises(ValidationError, match="private_message where the hub takes a member's PublicMessage only"):
        hub.process(commit.to_bytes())
    proposal = bob.g.propose(Remove(2), rng.randbytes, wire_format=WireFormat.PRIVATE_MESSAGE)
    with pytest.raises(ValidationError, match="private_message"):
        hub.process(proposal)
    outsider = Member.new(alice.cs, b"outsider", rng)
    _, external = Group.join_external(
        alice.cs, alice.g.group_info(), outsider.key_package.leaf_node, signature_priv=outsider.signature_priv, rng=rng.randbytes
    )
    with pytest.raises(ValidationError, match="new_member_commit sender; the hub takes members' messages only"):
        hub.process(external)
    welcome = alice.g.commit(rng.randbytes, proposals=[Add(outsider.key_package)])[2]
    assert welcome is not None
    with pytest.raises(ValidationError, match="a welcome where"):
        hub.process(MLSMessage(WireFormat.WELCOME, welcome))
    assert hub.epoch == 1 and hub.pending_proposals() == []


def test_another_epoch_a_bad_signature_and_truncated_bytes_are_refused(group: Group3) -> None:
    rng, alice, bob, carol, hub = group
    late_staged, late, _ = bob.g.commit(rng.randbytes)
    staged, commit, _ = alice.g.commit(rng.randbytes)

    body = commit.body
    assert isinstance(body, PublicMessage)
    signature = bytearray(body.auth.signature)
    signature[5] ^= 1
    flipped = MLSMessage(WireFormat.PUBLIC_MESSAGE, replace(body, auth=replace(body.auth, signature=bytes(signature))))
    with pytest.raises(VerifyError, match="signature does not verify"):
        hub.process(flipped.to_bytes())
    data = commit.to_bytes()
    for cut in (1, 40, len(data) // 2, len(data) - 1):
        with pytest.raises(DecodeError, match="truncated|runs past the end"):
            hub.process(data[:cut])
    with pytest.raises(DecodeError, match="trailing"):
        hub.process(data + b"\x00")
    assert hub.epoch == 1

    through_hub(hub, alice, staged, commit, [bob, carol])
    with pytest.raises(WrongEpochError, match="a message of epoch 1, the group is at epoch 2"):
        hub.process(late)
    assert late_staged.epoch == 2
    with pytest.raises(WrongEpochError, match="epoch 1"):
        hub.process(commit)  # a replay


def test_a_sender_that_is_not_a_member_is_refused(group: Group3) -> None:
    rng, alice, bob, carol, hub = group
    staged, commit, _ = alice.g.commit(rng.randbytes, proposals=[Remove(2)])
    assert isinstance(carol.g.process(commit), StagedCommit)
    through_hub(hub, alice, staged, commit, [bob])
    # Carol, removed, signs with her old leaf index over the current context
    for content_type, body in ((ContentType.PROPOSAL, Remove(1).to_bytes()), (ContentType.COMMIT, Commit().to_bytes())):
        with pytest.raises(ValidationError, match="a message from leaf 2, which is not a member"):
            hub.process(forged(carol, hub.context, content_type, body))
    with pytest.raises(ValidationError, match="a message from leaf 9, which is not a member"):
        hub.process(forged(alice, hub.context, ContentType.PROPOSAL, Remove(1).to_bytes(), sender=9))
    # a member's key under another member's index does not verify
    with pytest.raises(VerifyError):
        hub.process(forged(carol, hub.context, ContentType.PROPOSAL, Remove(0).to_bytes(), sender=1))


def test_commits_that_break_the_rules_are_refused(group: Group3) -> None:
    rng, alice, bob, carol, hub = group
    before = hub.to_bytes()
    with pytest.raises(ValidationError, match="a Remove proposal for leaf 5, which is not a member"):
        hub.process(forged(alice, hub.context, ContentType.COMMIT, Commit((Remove(5),)).to_bytes()))
    with pytest.raises(ValidationError, match="a Remove proposal for leaf 5"):
        hub.process(forged(bob, hub.context, ContentType.PROPOSAL, Remove(5).to_bytes()))
    with pytest.raises(ValidationError, match="removes the committer"):
        hub.process(forged(alice, hub.context, ContentType.COMMIT, Commit((Remove(0),)).to_bytes()))
    with pytest.raises(ValidationError, match="proposal .* which this member has not received"):
        hub.process(forged(alice, hub.context, ContentType.COMMIT, Commit((ProposalRef(b"\x01" * alice.cs.nh),)).to_bytes()))

    dave = Member.new(alice.cs, b"dave", rng)
    signature = bytearray(dave.key_package.signature)
    signature[0] ^= 1
    bad_signature = replace(dave.key_package, signature=bytes(signature))
    with pytest.raises(RemoteProtocolError, match="KeyPackage"):
        hub.process(forged(alice, hub.context, ContentType.COMMIT, Commit((Add(bad_signature),)).to_bytes()))
    with pytest.raises(ValidationError, match="KeyPackage of cipher suite"):
        hub.process(forged(alice, hub.context, ContentType.COMMIT, Commit((Add(replace(dave.key_package, cipher_suite=3)),)).to_bytes()))
    with pytest.raises(RemoteProtocolError, match="KeyPackage"):
        hub.process(forged(bob, hub.context, ContentType.PROPOSAL, Add(bad_signature).to_bytes()))
    with pytest.raises(ValidationError, match="UpdatePath its proposals require"):
        hub.process(forged(alice, hub.context, ContentType.COMMIT, Commit((Remove(1),)).to_bytes()))
    assert hub.to_bytes() == before  # nothing refused left a trace


def test_a_tampered_update_path_is_refused(group: Group3) -> None:
    rng, alice, bob, carol, hub = group
    staged, message, _ = alice.g.commit(rng.randbytes)
    body = message.body
    assert isinstance(body, PublicMessage)
    commit = body.content.commit()
    assert commit.path is not None
    _, other_key = alice.cs.hpke_key_pair(rng.randbytes)
    nodes = list(commit.path.nodes)
    nodes[-1] = UpdatePathNode(other_key, nodes[-1].encrypted_path_secret)
    tampered = Commit(commit.proposals, UpdatePath(commit.path.leaf_node, tuple(nodes)))
    with pytest.raises(ValidationError, match="parent hash does not match"):
        hub.process(resigned(alice, hub.context, message, tampered))
    short = Commit(commit.proposals, UpdatePath(commit.path.leaf_node, commit.path.nodes[:-1]))
    with pytest.raises(ValidationError, match="UpdatePath has 1 nodes, the sender's filtered direct path 2"):
        hub.process(resigned(alice, hub.context, message, short))
    missing = list(commit.path.nodes)
    missing[0] = UpdatePathNode(missing[0].encryption_key, missing[0].encrypted_path_secret[1:])
    with pytest.raises(ValidationError, match="UpdatePath node 1 has 0 ciphertexts for 1 recipients"):
        hub.process(resigned(alice, hub.context, message, Commit(commit.proposals, UpdatePath(commit.path.leaf_node, tuple(missing)))))
    # the untouched commit goes through
    through_hub(hub, alice, staged, message, [bob, carol])
    assert_hub_agrees(hub, [alice, bob, carol])


def test_a_group_info_with_a_bad_signature_or_another_tree_is_refused(group: Group3) -> None:
    rng, alice, bob, carol, _ = group
    info = alice.g.group_info(with_ratchet_tree=False)
    old_tree = alice.g.ratchet_tree_bytes()
    signature = bytearray(info.signature)
    signature[-1] ^= 0x80
    with pytest.raises(VerifyError, match="GroupInfo signature does not verify"):
        PublicGroup.from_group_info(replace(info, signature=bytes(signature)), old_tree)
    with pytest.raises(ValidationError, match="GroupInfo carries no ratchet tree and none was given"):
        PublicGroup.from_group_info(info)
    with pytest.raises(ValidationError, match="where a GroupInfo was expected"):
        PublicGroup.from_group_info(alice.g.commit(rng.randbytes)[1])
    with pytest.raises(DecodeError):
        PublicGroup.from_group_info(MLSMessage(WireFormat.GROUP_INFO, info).to_bytes()[:-3], old_tree)

    staged, commit, _ = bob.g.commit(rng.randbytes)
    for m, result in ((alice, alice.g.process(commit)), (carol, carol.g.process(commit))):
        assert isinstance(result, StagedCommit)
        m.g.merge(result)
    bob.g.merge(staged)
    new_info = alice.g.group_info(with_ratchet_tree=False)
    with pytest.raises(ValidationError, match="tree hash"):
        PublicGroup.from_group_info(new_info, old_tree)  # the tree of the epoch before
    # the GroupInfo that carries its tree needs none beside it
    carried = PublicGroup.from_group_info(alice.g.group_info())
    assert carried.context == alice.g.context
    with pytest.raises(ValidationError, match="a ratchet tree was given and the GroupInfo carries one too"):
        PublicGroup.from_group_info(alice.g.group_info(), alice.g.ratchet_tree_bytes())


def test_merge_only_on_the_epoch_the_commit_was_staged_on(group: Group3) -> None:
    rng, alice, _, _, hub = group
    staged, commit, _ = alice.g.commit(rng.randbytes)
    public = hub.process(commit)
    assert isinstance(public, PublicCommit)
    assert hub.epoch == 1  # staged only
    restored = PublicGroup.from_bytes(hub.to_bytes())
    with pytest.raises(LocalProtocolError, match="staged on another epoch"):
        restored.merge(public)
    hub.merge(public)
    with pytest.raises(LocalProtocolError, match="staged on another epoch"):
        hub.merge(public)
    assert hub.context == staged.state.context  # type: ignore[union-attr]


def test_saved_state_is_decoded_strictly(group: Group3) -> None:
    rng, alice, bob, _, hub = group
    hub.process(bob.g.propose(Remove(2), rng.randbytes))
    data = hub.to_bytes()
    assert PublicGroup.from_bytes(data).to_bytes() == data
    with pytest.raises(DecodeError, match="format 2, this code reads format 1"):
        PublicGroup.from_bytes(b"\x02" + data[1:])
    for cut in (0, 1, 30, len(data) // 2, len(data) - 1):
        with pytest.raises(DecodeError):
            PublicGroup.from_bytes(data[:cut])
    with pytest.raises(DecodeError, match="trailing"):
        PublicGroup.from_bytes(data + b"\x00")
    # a tree that is not the context's: a byte of a leaf's signature key changed
    key = alice.g.tree.leaf(0).signature_key  # type: ignore[union-attr]
    assert data.count(key) == 1
    at = data.index(key)
    tampered = data[:at] + bytes([key[0] ^ 1]) + data[at + 1 :]
    with pytest.raises(DecodeError, match="does not match its context's tree hash"):
        PublicGroup.from_bytes(tampered)
    # a pending proposal from a leaf that is not a member
    index = data.rindex(b"\x00\x00\x00\x01\x00\x03\x00\x00\x00\x02")  # proposer leaf 1, then Remove(2)
    with pytest.raises(DecodeError, match="pending proposal from leaf 7, which is not a member"):
        PublicGroup.from_bytes(data[:index] + b"\x00\x00\x00\x07" + data[index + 4 :])


def test_too_many_pending_proposals_are_refused(group: Group3) -> None:
    rng, alice, bob, carol, hub = group
    message = bob.g.propose(Remove(2), rng.randbytes)
    hub.process(message)
    hub.process(message)  # the same proposal again is one entry
    assert len(hub.pending_proposals()) == 1
    for n in range(1, MAX_PENDING_PROPOSALS):  # each member can hold at most the cap itself
        proposer = bob if n % 2 else carol
        hub.process(proposer.g.propose(Remove(0), rng.randbytes, authenticated_data=n.to_bytes(2, "big")))
    assert len(hub.pending_proposals()) == MAX_PENDING_PROPOSALS
    with pytest.raises(ValidationError, match=f"more than {MAX_PENDING_PROPOSALS} proposals in one epoch"):
        hub.process(alice.g.propose(Remove(1), rng.randbytes))
    assert len(PublicGroup.from_bytes(hub.to_bytes()).pending_proposals()) == MAX_PENDING_PROPOSALS


def test_after_a_reinit_the_group_takes_no_more_messages(group: Group3) -> None:
    rng, alice, bob, carol, hub = group
    staged, commit, _ = alice.g.commit(rng.randbytes, proposals=[ReInit(b"next group", 1, alice.cs.id, ())])
    public = through_hub(hub, alice, staged, commit, [bob, carol])
    assert [type(p) for p, _ in public.proposals] == [ReInit] and hub.reinitialised
    restored = PublicGroup.from_bytes(hub.to_bytes())
    assert restored.reinitialised and restored.context == hub.context
    for view in (hub, restored):
        with pytest.raises(ValidationError, match="the group was reinitialised: it takes no more messages"):
            view.process(forged(bob, hub.context, ContentType.PROPOSAL, Remove(2).to_bytes()))
