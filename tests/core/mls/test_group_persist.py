"""Saving and loading a Group (core/mls/group/persist.py): members of suites 1 and 0x004D are
saved and loaded again after every step and carry on as if nothing happened — application
messages both ways, late messages read with the skipped keys kept across a load (and replays
still refused), proposals pending across a load and committed by reference, our own Update's
private key kept until its commit, resumption PSKs of past epochs, the removed and ReInit flags.
A load gives a group whose bytes are the same. Damaged bytes (truncated anywhere, a length
prefix changed, trailing bytes, another format version, values out of range, bytes flipped at
random) are a one-line DecodeError, never anything else.

Measured on this machine (no timing is asserted): a group of 100 members of suite 0x004D, saved
by the member that added them all after 20 of them sent it a message, is 138 KB; to_bytes takes
~1.5 ms, from_bytes ~10-15 ms, about half decoding the ratchet tree and half checking its hash
against the GroupContext (suite 1: 20 KB, ~0.6 ms and ~8 ms)."""

from __future__ import annotations

import random

import pytest

from sonet.core.errors import LocalProtocolError
from sonet.core.mls.codec import DecodeError, Reader, Writer
from sonet.core.mls.group import ApplicationMessage, Group, QueuedProposal, StagedCommit
from sonet.core.mls.group.persist import FORMAT_VERSION
from sonet.core.mls.messages import Add, PreSharedKey, ReInit, Remove
from sonet.core.mls.psk import PreSharedKeyID, ResumptionPSKUsage
from sonet.core.mls.secret_tree import GenerationError
from tests.core.mls.test_group import GROUP_ID, SUITES, Member, assert_agree, deliver, three_members


def reload(*members: Member) -> None:
    """Each member's group saved and loaded again; the loaded one saves to the same bytes."""
    for m in members:
        data = m.g.to_bytes()
        m.group = Group.from_bytes(data, external_psks=m.g.external_psks)
        assert m.g.to_bytes() == data


def send(sender: Member, receivers: list[Member], text: bytes, rng: random.Random) -> None:
    message = sender.g.encrypt(text, rng.randbytes).to_bytes()
    for receiver in receivers:
        assert receiver.g.process(message) == ApplicationMessage(sender.g.leaf_index, text, b"")


@pytest.mark.parametrize("suite", SUITES)
def test_members_saved_after_every_step_carry_on(suite: int) -> None:
    rng, alice, bob, carol = three_members(suite)
    members = [alice, bob, carol]
    reload(*members)
    assert_agree(members)

    # application messages every way, a load after each
    for sender in members:
        send(sender, [m for m in members if m is not sender], b"hello from " + sender.name, rng)
        reload(*members)

    # late messages: Bob reads the third first, then the others after loads (their keys were
    # kept as skipped keys); a replay after a load is still refused
    late = [alice.g.encrypt(b"late %d" % i, rng.randbytes).to_bytes() for i in range(3)]
    reload(alice)
    for i in (2, 0, 1):
        got = bob.g.process(late[i])
        assert isinstance(got, ApplicationMessage) and got.data == b"late %d" % i
        reload(bob)
    for i in range(3):
        with pytest.raises(GenerationError):
            bob.g.process(late[i])

    # a proposal pending across a load, committed by reference by another member
    dave = Member.new(alice.cs, b"dave", rng)
    proposal = alice.g.propose(Add(dave.key_package), rng.randbytes).to_bytes()
    for other in (bob, carol):
        assert isinstance(other.g.process(proposal), QueuedProposal)
    reload(*members)
    assert [len(m.g.pending_proposals()) for m in members] == [1, 1, 1]
    staged, commit, welcome = bob.g.commit(rng.randbytes)
    assert [i for i, _ in staged.added] == [3] and welcome is not None
    reload(alice, carol)
    deliver(bob, staged, commit, [alice, carol])
    dave.join(welcome)
    members = [alice, bob, carol, dave]
    reload(*members)
    assert_agree(members)

    # Carol's own Update: its private key waits across a load, and she follows the next path
    update = carol.g.propose_update(rng.randbytes).to_bytes()
    for other in (alice, bob, dave):
        assert isinstance(other.g.process(update), QueuedProposal)
    reload(*members)
    staged, commit, _ = dave.g.commit(rng.randbytes)
    assert staged.updated == (2,)
    reload(alice, bob, carol)
    deliver(dave, staged, commit, [alice, bob, carol])
    reload(*members)
    assert_agree(members)
    staged, commit, _ = alice.g.commit(rng.randbytes)  # a path Carol decrypts with her new key
    deliver(alice, staged, commit, [bob, carol, dave])
    reload(*members)
    assert_agree(members)

    # the resumption PSK of an epoch before the loads
    psk = PreSharedKeyID.resumption(ResumptionPSKUsage.APPLICATION, GROUP_ID, alice.g.epoch - 2, rng.randbytes(alice.cs.nh))
    staged, commit, _ = bob.g.commit(rng.randbytes, proposals=[PreSharedKey(psk)])
    deliver(bob, staged, commit, [alice, carol, dave])
    reload(*members)
    assert_agree(members)
    for sender in members:
        send(sender, [m for m in members if m is not sender], b"still here", rng)
        reload(*members)

    # Dave is removed: the flag survives a load, the others go on
    staged, commit, _ = alice.g.commit(rng.randbytes, proposals=[Remove(3)])
    dave_sees = dave.g.process(commit)
    assert isinstance(dave_sees, StagedCommit) and dave_sees.removes_us
    deliver(alice, staged, commit, [bob, carol])
    dave.g.merge(dave_sees)
    reload(alice, bob, carol, dave)
    assert not dave.g.active
    with pytest.raises(LocalProtocolError, match="removed"):
        dave.g.encrypt(b"anyone?", rng.randbytes)
    members = [alice, bob, carol]
    assert_agree(members)
    send(carol, [alice, bob], b"bye dave", rng)


def test_external_psks_are_the_applications_and_a_reinit_survives_a_load() -> None:
    rng, alice, bob, carol = three_members(1, seed=7)
    psks = {b"shared": b"k" * 32}
    for m in (alice, bob, carol):
        m.group = Group.from_bytes(m.g.to_bytes(), external_psks=psks)
        assert m.g.external_psks is psks
    external = PreSharedKeyID.external(b"shared", rng.randbytes(alice.cs.nh))
    staged, commit, _ = carol.g.commit(rng.randbytes, proposals=[PreSharedKey(external)])
    deliver(carol, staged, commit, [alice, bob])
    assert_agree([alice, bob, carol])
    # without them, the loaded group does not know the PSK
    bare = Group.from_bytes(alice.g.to_bytes())
    assert bare.external_psks == {}

    staged, commit, _ = bob.g.commit(rng.randbytes, proposals=[ReInit(b"next", 1, 0x004D, ())])
    deliver(bob, staged, commit, [alice, carol])
    reload(alice, bob, carol)
    assert not alice.g.active
    with pytest.raises(LocalProtocolError, match="reinitialised"):
        alice.g.encrypt(b"x", rng.randbytes)
    with pytest.raises(LocalProtocolError, match="not reinitialised"):
        Group.from_bytes(three_members(1, seed=8)[1].g.to_bytes()).reinit(
            alice.key_package.leaf_node, signature_priv=alice.signature_priv, encryption_priv=alice.encryption_priv,
            key_packages=[], rng=rng.randbytes,
        )  # fmt: skip


def test_a_staged_commit_does_not_merge_into_a_loaded_group() -> None:
    rng, alice, bob, _ = three_members(1, seed=9)
    staged, _, _ = alice.g.commit(rng.randbytes)
    reload(alice)
    with pytest.raises(LocalProtocolError, match="not made on this group's current epoch"):
        alice.g.merge(staged)


# ---- damaged bytes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved() -> bytes:
    """Bob's group with something in every part: used ratchets with skipped keys, a pending
    proposal of his own Update, resumption PSKs of two epochs."""
    rng, alice, bob, carol = three_members(1, seed=10)
    staged, commit, _ = carol.g.commit(rng.randbytes)
    deliver(carol, staged, commit, [alice, bob])
    late = [alice.g.encrypt(b"%d" % i, rng.randbytes).to_bytes() for i in range(3)]
    bob.g.process(late[2])
    bob.g.propose_update(rng.randbytes)
    return bob.g.to_bytes()


def refused(data: bytes, match: str | None) -> None:
    with pytest.raises(DecodeError, match=match) as caught:
        Group.from_bytes(data)
    message = str(caught.value)
    assert message.startswith("MLS: group state: ") and "\n" not in message


def test_the_saved_bytes_load_to_the_same_bytes(saved: bytes) -> None:
    assert Group.from_bytes(saved).to_bytes() == saved


def test_truncated_anywhere_is_refused(saved: bytes) -> None:
    for end in range(len(saved)):
        refused(saved[:end], None)


def test_trailing_bytes_and_another_version_are_refused(saved: bytes) -> None:
    refused(saved + b"\x00", "1 trailing bytes")
    for version in (0, FORMAT_VERSION + 1, 255):
        refused(bytes([version]) + saved[1:], f"format version {version} is not one this code reads")
    refused(saved[:1] + (0xFFFF).to_bytes(2, "big") + saved[3:], "cipher suite")


def test_a_changed_length_prefix_is_refused(saved: bytes) -> None:
    # the signature key's length prefix (after the version and the suite): 32 bytes as written
    assert saved[3] == 32
    for length in (0, 31, 33, 63):
        refused(saved[:3] + bytes([length]) + saved[4:], None)
    # the ratchet tree's: a prefix that claims more than is left
    tree_at = _tree_offset(saved)
    refused(saved[:tree_at] + b"\x7f\xff" + saved[tree_at + 2 :], "ratchet tree: opaque of 16383 bytes runs past the end")
    refused(saved[:tree_at] + b"\xbf\xff\xff\xff" + saved[tree_at + 2 :], "ratchet tree: opaque of 1073741823 bytes is over the cap")


def _tree_offset(data: bytes) -> int:
    """Where the ratchet tree's length prefix starts (after version, suite, key and context)."""
    from sonet.core.mls.key_schedule import GroupContext

    r = Reader(data)
    r.u8(), r.u16(), r.opaque()
    GroupContext.read(r)
    at = len(data) - r.remaining
    assert data[at] >> 6 == 1  # a two-byte varint, as the test above assumes
    return at


def test_values_out_of_range_and_contradictions_are_refused(saved: bytes) -> None:
    # the last two bytes are the removed flag and the reinit's presence flag
    assert saved[-2:] == b"\x00\x00"
    refused(saved[:-2] + b"\x02\x00", "removed flag 2")
    refused(saved[:-1] + b"\x02", "reinit: optional presence flag 2")
    # a byte of the tree changed: its hash is no longer the context's (or it does not decode)
    at = _tree_offset(saved) + 40
    refused(saved[:at] + bytes([saved[at] ^ 1]) + saved[at + 1 :], "ratchet tree")
    # the signature key of someone else
    other = bytearray(saved)
    other[4] ^= 1
    refused(bytes(other), "signature private key is not our leaf's")


def test_a_state_that_contradicts_itself_is_refused() -> None:
    """Fields re-encoded with a wrong value, each refused by name."""
    rng, alice, bob, _ = three_members(1, seed=11)
    bob.g.propose_update(rng.randbytes)
    group = bob.g
    good = group.to_bytes()

    group._removed, group._reinit = True, ReInit(b"x", 1, 1, ())
    refused(group.to_bytes(), "both removed and reinitialised")
    group._removed, group._reinit = False, None

    own = dict(group._own_updates)
    group._own_updates = {bytes(32): next(iter(own.values()))}
    refused(group.to_bytes(), "own updates: a key for an Update of ours that is not pending")
    group._own_updates = {next(iter(own)): alice.encryption_priv}
    refused(group.to_bytes(), "own updates: an Update's private key does not match its leaf")
    group._own_updates = own

    resumption = group._resumption.copy()
    group._resumption.popitem()
    group._resumption[group.epoch - 1] = bytes(32)
    refused(group.to_bytes(), "resumption PSKs: the last one is not the current epoch's")
    group._resumption = resumption
    assert group.to_bytes() == good


def test_a_secret_tree_in_a_state_it_cannot_reach_is_refused() -> None:
    """Only one of a sender's two ratchets, a node held with its parent, a sender nothing
    covers, skipped keys outside the window: each is refused."""
    rng, alice, bob, _ = three_members(1, seed=12)
    late = [alice.g.encrypt(b"%d" % i, rng.randbytes).to_bytes() for i in range(3)]
    bob.g.process(late[2])
    tree = bob.g._state.secret_tree
    from sonet.core.mls.secret_tree import RatchetKind

    ratchets = dict(tree._ratchets)
    del tree._ratchets[(0, RatchetKind.HANDSHAKE)]
    refused(bob.g.to_bytes(), "secret tree: a sender with one ratchet of the two")
    tree._ratchets = ratchets

    nodes = dict(tree._nodes)
    tree._nodes[3] = bytes(32)  # the root of four leaves, above every node still held
    refused(bob.g.to_bytes(), "secret tree: node .* and one of its ancestors are both held")
    tree._nodes = nodes

    del tree._nodes[min(tree._nodes)]
    refused(bob.g.to_bytes(), "secret tree: the secrets held do not cover every sender")
    tree._nodes = dict(nodes)

    ratchet = tree._ratchets[(0, RatchetKind.APPLICATION)]
    skipped = ratchet._skipped
    ratchet._next += 100
    refused(bob.g.to_bytes(), "secret tree: skipped generations outside the window")
    ratchet._next -= 100
    ratchet._skipped = skipped


def test_flipped_bytes_are_a_decode_error_or_a_group(saved: bytes) -> None:
    """Any byte changed anywhere: the bytes load (secrets carry no integrity here: the vault's
    job) or are refused with DecodeError, never another exception."""
    rng = random.Random(13)
    loaded = 0
    for _ in range(400):
        data = bytearray(saved)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            Group.from_bytes(bytes(data))
            loaded += 1
        except DecodeError as e:
            assert str(e).startswith("MLS: group state: ")
    assert loaded < 400


def test_the_writer_and_reader_agree_on_every_prefix_form() -> None:
    """A sanity check of the assumption the length tests make: a two-byte varint is 0b01."""
    w = Writer()
    w.opaque(bytes(100))
    assert w.bytes()[0] >> 6 == 1
