"""Targets for what a member does with received MLS messages (core/mls/group): a group of two
(Alice, Bob; suite 1; keys from a fixed seed) at epoch 1, and Bob

- ``mls-group-process``: processes any bytes as a received MLSMessage (and merges a commit that
  stages);
- ``mls-group-commit``: processes a Commit that Alice, a member, signs and tags as a PublicMessage
  of this epoch: a hostile member's commit passes the signature and membership-tag checks, so
  every check behind them (proposal list, path, tree, PSKs) is reached; its confirmation tag is
  Alice's real one for the seeds, so a mutated commit is refused at the latest there;
- ``mls-group-proposal``: likewise for a Proposal Alice sends;
- ``mls-group-welcome``: joins by any bytes as a Welcome made for Bob's KeyPackage;
- ``mls-group-external-join``: Carol joins by external commit with any bytes as the GroupInfo
  (Bob's ``process`` also gets her external commit among its seeds).

Each input starts from the same state (a new ``Group`` on Bob's epoch state with fresh
ratchets), so inputs do not depend on one another. The harness reads the groups' private state
(``_state``, Alice's signature key) to sign as Alice and to restart Bob: no API gives it, rightly. The contract: a result, or a
RemoteProtocolError (a refusal of the input, any code); never another exception.
"""

from __future__ import annotations

import copy

import functools
import random
from dataclasses import dataclass, replace
from typing import Any

from sonet.core.errors import RemoteProtocolError
from sonet.core.mls.codec import DecodeError, decode_all
from sonet.core.mls.crypto import CipherSuite, cipher_suite
from sonet.core.mls.extensions import Capabilities, Lifetime
from sonet.core.mls.framing import (
    ContentType,
    FramedContent,
    MLSMessage,
    PublicMessage,
    Sender,
    WireFormat,
    membership_tag,
    sign_content,
)
from sonet.core.mls.group import ApplicationMessage, Group, QueuedProposal, StagedCommit
from sonet.core.mls.key_package import Credential, KeyPackage, LeafNode, LeafNodeSource
from sonet.core.mls.messages import Add, Commit, GroupContextExtensions, PreSharedKey, Remove, read_proposal
from sonet.core.mls.psk import PreSharedKeyID
from sonet.core.mls.secret_tree import SecretTree

from .target import Target, Unusable, register

__all__ = ["MLS_GROUP_TARGETS"]

_GROUP_ID = b"fuzzed group"
#: the external PSK both members have (psk_id -> psk)
_PSKS = {b"a psk id": bytes(32)}


@dataclass(frozen=True)
class _Client:
    key_package: KeyPackage
    init_priv: bytes
    encryption_priv: bytes
    signature_priv: bytes


def _client(cs: CipherSuite, name: bytes, rng: random.Random) -> _Client:
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
    return _Client(KeyPackage(cs.id, init_pub, leaf).signed(cs, sig_priv), init_priv, enc_priv, sig_priv)


@dataclass(frozen=True)
class _World:
    cs: CipherSuite
    alice: Group
    alice_signature_priv: bytes
    bob: _Client
    carol: _Client
    welcome: bytes
    group_info: bytes
    bob_group: Group
    #: MLSMessages Alice sends in epoch 1 (bytes), and the Commit / Proposal bodies inside them
    messages: tuple[bytes, ...]
    commits: tuple[bytes, ...]
    proposals: tuple[bytes, ...]


@functools.cache
def _world() -> _World:
    rng = random.Random(20261206)
    cs = cipher_suite(1)
    alice_c, bob, carol = (_client(cs, name, rng) for name in (b"alice", b"bob", b"carol"))
    alice = Group.create(
        cs, _GROUP_ID, alice_c.key_package.leaf_node, signature_priv=alice_c.signature_priv,
        encryption_priv=alice_c.encryption_priv, rng=rng.randbytes,
    )  # fmt: skip
    staged, _, welcome = alice.commit(rng.randbytes, proposals=[Add(bob.key_package)])
    alice.merge(staged)
    assert welcome is not None
    welcome_bytes = MLSMessage(WireFormat.WELCOME, welcome).to_bytes()
    bob_group = _join(cs, bob, welcome_bytes)
    # What Alice may send in epoch 1 (none of it merged: the world stays at epoch 1).
    psk = PreSharedKeyID.external(b"a psk id", bytes(cs.nh))
    alice.external_psks.update(_PSKS)
    sent = [
        alice.commit(rng.randbytes)[1],  # an empty commit: path only
        alice.commit(rng.randbytes, proposals=[Add(carol.key_package)])[1],
        alice.commit(rng.randbytes, proposals=[Remove(1)])[1],
        alice.commit(rng.randbytes, proposals=[GroupContextExtensions(())], wire_format=WireFormat.PRIVATE_MESSAGE)[1],
        alice.propose(Add(carol.key_package), rng.randbytes),
        alice.propose(Remove(1), rng.randbytes, wire_format=WireFormat.PRIVATE_MESSAGE),
        alice.propose(PreSharedKey(psk), rng.randbytes),
        alice.encrypt(b"hello bob", rng.randbytes),
    ]
    group_info = MLSMessage(WireFormat.GROUP_INFO, alice.group_info()).to_bytes()
    sent.append(_join_external(cs, carol, group_info)[1])
    public = [m.body for m in sent if isinstance(m.body, PublicMessage) and m.body.content.sender.is_member]  # Alice's
    return _World(
        cs,
        alice,
        alice_c.signature_priv,
        bob,
        carol,
        welcome_bytes,
        group_info,
        bob_group,
        tuple(m.to_bytes() for m in sent),
        tuple(p.content.body for p in public if p.content.content_type is ContentType.COMMIT),
        tuple(p.content.body for p in public if p.content.content_type is ContentType.PROPOSAL),
    )


def _join(cs: CipherSuite, bob: _Client, welcome: bytes) -> Group:
    return Group.join(
        cs, MLSMessage.from_bytes(welcome), bob.key_package, init_priv=bob.init_priv,
        encryption_priv=bob.encryption_priv, signature_priv=bob.signature_priv,
    )  # fmt: skip


def _join_external(cs: CipherSuite, carol: _Client, group_info: bytes) -> tuple[Group, MLSMessage]:
    return Group.join_external(
        cs, group_info, carol.key_package.leaf_node, signature_priv=carol.signature_priv, rng=random.Random(7).randbytes
    )


def _fresh_bob() -> Group:
    """Bob at epoch 1 as he joined: no pending proposals, every ratchet at its start."""
    w = _world()
    state = w.bob_group._state
    # a copy of the ratchets as they were at the join (the state keeps no encryption_secret to
    # derive them again: §9.2 forward secrecy)
    fresh = replace(state, secret_tree=copy.deepcopy(state.secret_tree))
    return Group(w.cs, fresh, w.bob.signature_priv, external_psks=dict(_PSKS))


def _process(data: bytes) -> object:
    bob = _fresh_bob()
    result = bob.process(data)
    if isinstance(result, StagedCommit):
        bob.merge(result)
    return result


def _from_alice(content_type: ContentType, body: bytes) -> bytes:
    """``body`` sent by Alice as a PublicMessage of epoch 1, signed and tagged with her keys; a
    commit carries the confirmation tag of the seed it came from (else a wrong one)."""
    w = _world()
    state = w.alice._state
    content = FramedContent(_GROUP_ID, state.context.epoch, Sender.member(0), b"", content_type, body)
    tag = _confirmation_tags().get(body, bytes(w.cs.nh)) if content_type is ContentType.COMMIT else None
    auth = sign_content(w.cs, w.alice_signature_priv, WireFormat.PUBLIC_MESSAGE, content, state.context, confirmation_tag=tag)
    member_tag = membership_tag(w.cs, state.secrets.membership_key, auth, state.context)
    return MLSMessage(WireFormat.PUBLIC_MESSAGE, PublicMessage(content, auth.auth, member_tag)).to_bytes()


@functools.cache
def _confirmation_tags() -> dict[bytes, bytes]:
    tags = {}
    for data in _world().messages:
        body = MLSMessage.from_bytes(data).body
        if isinstance(body, PublicMessage) and body.content.content_type is ContentType.COMMIT:
            assert body.auth.confirmation_tag is not None
            tags[body.content.body] = body.auth.confirmation_tag
    return tags


def _commit(data: bytes) -> object:
    try:
        Commit.from_bytes(data)
    except DecodeError:
        raise Unusable() from None  # the Commit decoder has its own target
    return _process(_from_alice(ContentType.COMMIT, data))


def _proposal(data: bytes) -> object:
    try:
        decode_all(data, read_proposal)
    except DecodeError:
        raise Unusable() from None
    return _process(_from_alice(ContentType.PROPOSAL, data))


def _welcome(data: bytes) -> Group:
    w = _world()
    return _join(w.cs, w.bob, data)


def _external_join(data: bytes) -> Group:
    w = _world()
    return _join_external(w.cs, w.carol, data)[0]


_RESULTS: tuple[type[Any], ...] = (ApplicationMessage, QueuedProposal, StagedCommit)

MLS_GROUP_TARGETS = [
    Target(
        name="mls-group-process",
        summary="core/mls/group Group.process: any received MLSMessage at epoch 1 of a two-member group (a staged commit merged)",
        decode=_process,
        errors=(RemoteProtocolError,),
        returns=_RESULTS,
        seeds=lambda: _world().messages,
    ),
    Target(
        name="mls-group-commit",
        summary="core/mls/group: a Commit a member signs and tags, processed and merged (every check behind the signature)",
        decode=_commit,
        errors=(RemoteProtocolError,),
        returns=_RESULTS,
        seeds=lambda: _world().commits,
    ),
    Target(
        name="mls-group-proposal",
        summary="core/mls/group: a Proposal a member signs and tags, processed",
        decode=_proposal,
        errors=(RemoteProtocolError,),
        returns=_RESULTS,
        seeds=lambda: _world().proposals,
    ),
    Target(
        name="mls-group-welcome",
        summary="core/mls/group Group.join: any MLSMessage as the Welcome for Bob's KeyPackage",
        decode=_welcome,
        errors=(RemoteProtocolError,),
        returns=Group,
        seeds=lambda: [_world().welcome],
    ),
    Target(
        name="mls-group-external-join",
        summary="core/mls/group Group.join_external: any MLSMessage as the GroupInfo Carol joins by external commit",
        decode=_external_join,
        errors=(RemoteProtocolError,),
        returns=Group,
        seeds=lambda: [_world().group_info],
    ),
]

for _target in MLS_GROUP_TARGETS:
    register(_target)
