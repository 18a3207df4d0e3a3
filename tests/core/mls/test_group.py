"""The MLS group state machine (sonet.core.mls.group) with real members of suites 1 and 0x004D:
a group of three made by one commit that adds two, each joining by Welcome; updates with path
from every member, an Update proposal committed by reference, a remove, an add again (with the
tree outside the Welcome), PSKs, group context extensions, commits as PrivateMessages; every
member agrees on the epoch authenticator at every epoch; application messages both ways, late
ones within the window."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from sonet.core.mls.crypto import CipherSuite, cipher_suite
from sonet.core.mls.extensions import Capabilities, Extension, Lifetime
from sonet.core.mls.framing import MLSMessage, WireFormat
from sonet.core.mls.group import ApplicationMessage, Group, QueuedProposal, StagedCommit
from sonet.core.mls.key_package import Credential, KeyPackage, LeafNode, LeafNodeSource
from sonet.core.mls.messages import Add, GroupContextExtensions, PreSharedKey, Remove, Welcome
from sonet.core.mls.psk import PreSharedKeyID, ResumptionPSKUsage

SUITES = [1, 0x004D]
GROUP_ID = b"group of friends"


@dataclass
class Member:
    """A client with a KeyPackage and its private keys, and its Group once it has one."""

    name: bytes
    cs: CipherSuite
    key_package: KeyPackage
    init_priv: bytes
    encryption_priv: bytes
    signature_priv: bytes
    group: Group | None = None

    @classmethod
    def new(cls, cs: CipherSuite, name: bytes, rng: random.Random) -> Member:
        sig_priv, sig_pub = cs.signature_key_pair(rng.randbytes)
        enc_priv, enc_pub = cs.hpke_key_pair(rng.randbytes)
        init_priv, init_pub = cs.hpke_key_pair(rng.randbytes)
        leaf = LeafNode(
            enc_pub,
            sig_pub,
            Credential.basic(name),
            Capabilities(cipher_suites=(cs.id,), extensions=(0xFF00,), credentials=(1,)),
            LeafNodeSource.KEY_PACKAGE,
            Lifetime(0, 2**64 - 1),
        ).signed(cs, sig_priv)
        kp = KeyPackage(cs.id, init_pub, leaf).signed(cs, sig_priv)
        return cls(name, cs, kp, init_priv, enc_priv, sig_priv)

    @property
    def g(self) -> Group:
        assert self.group is not None
        return self.group

    def create(self, rng: random.Random) -> Group:
        self.group = Group.create(
            self.cs, GROUP_ID, self.key_package.leaf_node, signature_priv=self.signature_priv,
            encryption_priv=self.encryption_priv, rng=rng.randbytes,
        )  # fmt: skip
        return self.group

    def join(self, welcome: Welcome | MLSMessage, ratchet_tree: bytes | None = None, psks: dict[bytes, bytes] | None = None) -> Group:
        self.group = Group.join(
            self.cs, welcome, self.key_package, init_priv=self.init_priv, encryption_priv=self.encryption_priv,
            signature_priv=self.signature_priv, ratchet_tree=ratchet_tree, external_psks=psks,
        )  # fmt: skip
        return self.group


def deliver(committer: Member, staged: StagedCommit, message: MLSMessage, others: list[Member]) -> None:
    """Every other member processes ``message`` (as bytes, as from the network) and merges; the
    committer merges its own staged commit."""
    data = message.to_bytes()
    received = []
    for other in others:
        result = other.g.process(data)
        assert isinstance(result, StagedCommit)
        received.append(result)
    committer.g.merge(staged)
    for other, result in zip(others, received):
        other.g.merge(result)


def assert_agree(members: list[Member]) -> None:
    first = members[0].g
    for m in members[1:]:
        assert m.g.epoch == first.epoch
        assert m.g.epoch_authenticator == first.epoch_authenticator
        assert m.g.context == first.context
        assert m.g.ratchet_tree_bytes() == first.ratchet_tree_bytes()
        assert m.g.export_secret(b"test", b"", 32) == first.export_secret(b"test", b"", 32)


def three_members(suite: int, seed: int = 1) -> tuple[random.Random, Member, Member, Member]:
    """Alice creates the group and adds Bob and Carol in one commit; both join by Welcome."""
    rng = random.Random(seed)
    cs = cipher_suite(suite)
    alice, bob, carol = (Member.new(cs, name, rng) for name in (b"alice", b"bob", b"carol"))
    alice.create(rng)
    assert alice.g.epoch == 0
    staged, commit, welcome = alice.g.commit(rng.randbytes, proposals=[Add(bob.key_package), Add(carol.key_package)])
    assert welcome is not None and [i for i, _ in staged.added] == [1, 2]
    assert alice.g.epoch == 0  # staged: nothing changed yet
    alice.g.merge(staged)
    wire = MLSMessage(WireFormat.WELCOME, welcome).to_bytes()
    bob.join(MLSMessage.from_bytes(wire))
    carol.join(welcome)
    assert (bob.g.leaf_index, carol.g.leaf_index) == (1, 2)
    assert_agree([alice, bob, carol])
    assert alice.g.epoch == 1
    return rng, alice, bob, carol


@pytest.mark.parametrize("suite", SUITES)
def test_a_group_lives_through_updates_removes_and_adds(suite: int) -> None:
    rng, alice, bob, carol = three_members(suite)
    members = [alice, bob, carol]

    # an update with path from each member in turn
    for committer in members:
        before = committer.g.epoch_authenticator
        staged, commit, welcome = committer.g.commit(rng.randbytes)
        assert welcome is None and staged.state is not None
        deliver(committer, staged, commit, [m for m in members if m is not committer])
        assert_agree(members)
        assert committer.g.epoch_authenticator != before

    # Bob proposes an Update, Carol commits it by reference: Bob must still follow the next path
    proposal = bob.g.propose_update(rng.randbytes)
    for other in (alice, carol):
        queued = other.g.process(proposal.to_bytes())
        assert isinstance(queued, QueuedProposal) and queued.sender.index == 1
    staged, commit, _ = carol.g.commit(rng.randbytes)
    assert staged.updated == (1,)
    deliver(carol, staged, commit, [alice, bob])
    assert_agree(members)
    staged, commit, _ = alice.g.commit(rng.randbytes)
    deliver(alice, staged, commit, [bob, carol])
    assert_agree(members)

    # Alice removes Carol: Carol sees it, and her group ends
    staged, commit, _ = alice.g.commit(rng.randbytes, proposals=[Remove(2)])
    carol_sees = carol.g.process(commit)
    assert isinstance(carol_sees, StagedCommit) and carol_sees.removes_us
    bob_sees = bob.g.process(commit)
    assert isinstance(bob_sees, StagedCommit) and bob_sees.removed == (2,)
    alice.g.merge(staged)
    bob.g.merge(bob_sees)
    carol.g.merge(carol_sees)
    assert not carol.g.active
    members = [alice, bob]
    assert_agree(members)
    assert [i for i, _ in alice.g.members()] == [0, 1]

    # Bob adds Dave, the tree handed over outside the Welcome
    dave = Member.new(cipher_suite(suite), b"dave", rng)
    staged, commit, welcome = bob.g.commit(rng.randbytes, proposals=[Add(dave.key_package)], ratchet_tree_in_welcome=False)
    assert welcome is not None
    deliver(bob, staged, commit, [alice])
    dave.join(welcome, ratchet_tree=bob.g.ratchet_tree_bytes())
    assert dave.g.leaf_index == 2
    members = [alice, bob, dave]
    assert_agree(members)
    staged, commit, _ = dave.g.commit(rng.randbytes)
    deliver(dave, staged, commit, [alice, bob])
    assert_agree(members)

    # application messages every way
    for sender in members:
        message = sender.g.encrypt(b"hello from " + sender.name, rng.randbytes, authenticated_data=b"ad")
        for receiver in members:
            if receiver is not sender:
                got = receiver.g.process(message.to_bytes())
                assert got == ApplicationMessage(sender.g.leaf_index, b"hello from " + sender.name, b"ad")


@pytest.mark.parametrize("suite", SUITES)
def test_commits_and_proposals_as_private_messages(suite: int) -> None:
    rng, alice, bob, carol = three_members(suite, seed=2)
    proposal = carol.g.propose(Remove(1), rng.randbytes, wire_format=WireFormat.PRIVATE_MESSAGE)
    assert proposal.wire_format is WireFormat.PRIVATE_MESSAGE
    assert isinstance(alice.g.process(proposal), QueuedProposal)
    assert isinstance(bob.g.process(proposal), QueuedProposal)
    staged, commit, _ = alice.g.commit(rng.randbytes, wire_format=WireFormat.PRIVATE_MESSAGE)
    assert commit.wire_format is WireFormat.PRIVATE_MESSAGE and staged.removed == (1,)
    bob_sees = bob.g.process(commit)
    assert isinstance(bob_sees, StagedCommit) and bob_sees.removes_us
    deliver(alice, staged, commit, [carol])
    assert_agree([alice, carol])


def test_an_add_only_commit_has_no_path_and_a_path_can_be_asked_for() -> None:
    rng, alice, bob, carol = three_members(1, seed=3)
    dave = Member.new(alice.cs, b"dave", rng)
    staged, commit, welcome = alice.g.commit(rng.randbytes, proposals=[Add(dave.key_package)])
    assert isinstance(commit.body, object) and staged.state is not None
    public = commit.body
    assert public.content.commit().path is None  # type: ignore[union-attr]
    assert welcome is not None and welcome.secrets
    deliver(alice, staged, commit, [bob, carol])
    dave.join(welcome)
    assert_agree([alice, bob, carol, dave])
    erin = Member.new(alice.cs, b"erin", rng)
    staged, commit, welcome = bob.g.commit(rng.randbytes, proposals=[Add(erin.key_package)], path=True)
    assert commit.body.content.commit().path is not None  # type: ignore[union-attr]
    deliver(bob, staged, commit, [alice, carol, dave])
    assert welcome is not None
    erin.join(welcome)
    assert_agree([alice, bob, carol, dave, erin])


def test_external_and_resumption_psks_and_group_context_extensions() -> None:
    rng, alice, bob, carol = three_members(1, seed=4)
    cs = alice.cs
    members = [alice, bob, carol]
    for m in members:
        m.g.external_psks[b"shared psk"] = b"k" * 32
    resumption = PreSharedKeyID.resumption(ResumptionPSKUsage.APPLICATION, GROUP_ID, 1, rng.randbytes(cs.nh))
    external = PreSharedKeyID.external(b"shared psk", rng.randbytes(cs.nh))
    gce = GroupContextExtensions((Extension(0xFF00, b"topic"),))
    staged, commit, _ = bob.g.commit(rng.randbytes, proposals=[PreSharedKey(external), PreSharedKey(resumption), gce])
    assert staged.psks == (external, resumption)
    deliver(bob, staged, commit, [alice, carol])
    assert_agree(members)
    assert alice.g.context.extensions == (Extension(0xFF00, b"topic"),)

    # a newcomer needs the external PSK a Welcome names
    dave = Member.new(cs, b"dave", rng)
    staged, commit, welcome = alice.g.commit(rng.randbytes, proposals=[Add(dave.key_package), PreSharedKey(PreSharedKeyID.external(b"shared psk", rng.randbytes(cs.nh)))])
    deliver(alice, staged, commit, [bob, carol])
    assert welcome is not None
    with pytest.raises(Exception, match="unknown to this member"):
        dave.join(welcome)
    dave.join(welcome, psks={b"shared psk": b"k" * 32})
    assert_agree([alice, bob, carol, dave])


def test_late_application_messages_within_the_window_are_read() -> None:
    rng, alice, bob, carol = three_members(1, seed=5)
    sent = [alice.g.encrypt(b"message %d" % i, rng.randbytes) for i in range(6)]
    for i in (3, 0, 5, 1, 4, 2):
        got = bob.g.process(sent[i].to_bytes())
        assert isinstance(got, ApplicationMessage) and got.data == b"message %d" % i
    # padding hides the exact length: every message of up to 32 bytes has the same size
    assert len({len(m.to_bytes()) for m in sent}) == 1


def test_proposals_from_an_external_sender_and_a_new_member() -> None:
    from sonet.core.mls.extensions import ExtensionType, ExternalSender, ExternalSenders
    from sonet.core.mls.framing import ContentType, FramedContent, PublicMessage, Sender, sign_content

    rng, alice, bob, carol = three_members(1, seed=6)
    cs = alice.cs
    server_priv, server_pub = cs.signature_key_pair(rng.randbytes)
    senders = ExternalSenders((ExternalSender(server_pub, Credential.basic(b"delivery service")),))
    staged, commit, _ = alice.g.commit(rng.randbytes, proposals=[GroupContextExtensions((Extension(ExtensionType.EXTERNAL_SENDERS, senders.to_bytes()),))])
    deliver(alice, staged, commit, [bob, carol])

    def public(sender: Sender, proposal: object, priv: bytes) -> MLSMessage:
        content = FramedContent(GROUP_ID, alice.g.epoch, sender, b"", ContentType.PROPOSAL, proposal.to_bytes())  # type: ignore[attr-defined]
        signed = sign_content(cs, priv, WireFormat.PUBLIC_MESSAGE, content, None)
        return MLSMessage(WireFormat.PUBLIC_MESSAGE, PublicMessage(signed.content, signed.auth, None))

    dave = Member.new(cs, b"dave", rng)
    removal = public(Sender.external(0), Remove(2), server_priv)
    knock = public(Sender.new_member_proposal(), Add(dave.key_package), dave.signature_priv)
    for m in (alice, bob, carol):
        for message in (removal, knock):
            assert isinstance(m.g.process(message.to_bytes()), QueuedProposal)
    staged, commit, welcome = bob.g.commit(rng.randbytes)
    assert staged.removed == (2,) and [i for i, _ in staged.added] == [2]
    deliver(bob, staged, commit, [alice])
    assert welcome is not None
    dave.join(welcome)
    assert_agree([alice, bob, dave])

    # an unlisted external sender, or one whose signature is not the listed key's, is refused
    with pytest.raises(Exception, match="external sender 1"):
        alice.g.process(public(Sender.external(1), Remove(1), server_priv))
    with pytest.raises(Exception, match="signature does not verify"):
        alice.g.process(public(Sender.external(0), Remove(1), dave.signature_priv))


def test_a_reinit_is_committed_alone_and_ends_the_group() -> None:
    from sonet.core.errors import LocalProtocolError
    from sonet.core.mls.messages import ReInit

    rng, alice, bob, carol = three_members(1, seed=8)
    reinit = ReInit(group_id=b"the next group", version=1, cipher_suite=0x004D)
    with pytest.raises(LocalProtocolError, match="ReInit proposal together"):
        alice.g.commit(rng.randbytes, proposals=[reinit, Remove(2)])
    staged, commit, _ = alice.g.commit(rng.randbytes, proposals=[reinit])
    assert staged.reinit == reinit
    deliver(alice, staged, commit, [bob, carol])
    assert_agree([alice, bob, carol])
    assert not bob.g.active
    with pytest.raises(LocalProtocolError, match="reinitialised"):
        bob.g.encrypt(b"late", rng.randbytes)
