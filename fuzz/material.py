"""Deterministic keys and valid protocol objects that the fuzz targets start from.

Every key comes from a fixed label (SHAKE-256), so a seed corpus and a crashing input reproduce
across runs and machines. Hybrid ML-DSA signatures and HPKE/ML-KEM encapsulations still take
OpenSSL's randomness, so two runs may encode a signed object differently, but each one verifies.
Each object is built once per process: hybrid key generation costs milliseconds.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from dataclasses import dataclass

from sonet.core import limits
from sonet.core.certs import issue_certificate
from sonet.core.client_api import DirectoryProof, SignedHead
from sonet.core.call import CallSignal
from sonet.core.cards import ContactCard, Event, Location
from sonet.core.content import Content, encode_content
from sonet.core.poll import Poll
from sonet.core.crypto import CryptoMode, CryptoPolicy, HpkePrivateKey, Rng, SigningKey
from sonet.core.device import make_device_record
from sonet.core.device_list import sign_device_list
from sonet.core.envelope import ENVELOPE_VERSION, Envelope, Kind
from sonet.core.keydir import MerkleTree, cosign, decode_head, encode_entry, leaf_hash, sign_head

__all__ = [
    "NODE",
    "WITNESS",
    "ACCOUNT",
    "NOW",
    "POLICY",
    "SLOT",
    "rng",
    "signing_key",
    "hpke_key",
    "node_key",
    "witness_key",
    "account_key",
    "device_key",
    "recipient",
    "link_key",
    "certificate",
    "device_list",
    "device_record",
    "envelope",
    "contents",
    "Directory",
    "directory",
]

NODE = "alpha.example"
WITNESS = "beta.example"
ACCOUNT = f"alice@{NODE}"
#: the fixed "now" of every target (ms): certificates and entries are valid at this time
NOW = 1_700_000_000_000
POLICY = CryptoPolicy()
SLOT = bytes(range(limits.LINK_SLOT_LEN))


def rng(label: str) -> Rng:
    """A deterministic randomness source: the same label yields the same bytes, call by call."""
    counter = itertools.count()

    def draw(n: int) -> bytes:
        return hashlib.shake_256(f"sonet-fuzz {label} {next(counter)}".encode()).digest(n)

    return draw


@functools.cache
def signing_key(label: str, mode: CryptoMode = CryptoMode.HYBRID) -> SigningKey:
    return SigningKey.generate(mode, rng(label))


@functools.cache
def hpke_key(label: str, mode: CryptoMode = CryptoMode.HYBRID) -> HpkePrivateKey:
    return HpkePrivateKey.generate(mode, rng(label))


def node_key() -> SigningKey:
    return signing_key("node")


def witness_key() -> SigningKey:
    return signing_key("witness")


def account_key() -> SigningKey:
    return signing_key("account")


def device_key() -> SigningKey:
    """The identity key of ACCOUNT's device 1 (and of the handshake initiator)."""
    return signing_key("device")


def recipient() -> HpkePrivateKey:
    """Device 1's sealed-sender key: sealed boxes are addressed to it."""
    return hpke_key("device-hpke")


def link_key() -> HpkePrivateKey:
    """A new device's ephemeral linking key: provisioning payloads are sealed to it."""
    return hpke_key("link")


@functools.cache
def certificate() -> bytes:
    return issue_certificate(node_key(), node=NODE, account=ACCOUNT, device=1, identity=device_key().public, now=NOW)


@functools.cache
def device_list() -> bytes:
    return sign_device_list(account_key(), account=ACCOUNT, version=1, devices=[device_key().public.fingerprint], now=NOW)


@functools.cache
def device_record() -> bytes:
    return make_device_record(account=ACCOUNT, identity=device_key(), hpke=recipient().public, created=NOW)


def envelope(*, kind: int = Kind.SEALED, body: bytes = b"sealed box") -> Envelope:
    return Envelope(
        v=ENVELOPE_VERSION, id=bytes(range(16)), to=ACCOUNT, device=1, expires=NOW + 60_000, kind=kind, body=body
    )


@functools.cache
def contents() -> tuple[bytes, ...]:
    """One content object of every type."""
    mid, other = bytes(16), bytes(range(16))
    return tuple(
        encode_content(c)
        for c in (
            Content.make_text(id=mid, sent_at=NOW, text="hello"),
            Content.make_receipt(id=mid, sent_at=NOW, receipt="read", ids=(other,)),
            Content.make_typing(id=mid, sent_at=NOW, typing="started"),
            Content.make_sync(id=mid, sent_at=NOW, to=f"bob@{WITNESS}", text="hi bob"),
            Content.make_alert(id=mid, sent_at=NOW, text="a device you do not know"),
            # issue 17 gestures, and the sync that carries one (its inner content nested)
            Content.make_reply(id=mid, sent_at=NOW, text="me too", refers_to=other),
            Content.make_reaction(id=mid, sent_at=NOW, refers_to=other, emoji="👍🏽"),
            Content.make_edit(id=mid, sent_at=NOW, refers_to=other, text="hello!"),
            Content.make_sync_of(Content.make_delete(id=mid, sent_at=NOW, refers_to=other), to=f"bob@{WITNESS}"),
            # issue 17 item 6: nested maps (core/cards.py, core/poll.py, core/call.py), a vote in a sync
            Content.make_poll(id=mid, sent_at=NOW, poll=Poll(question="Lunch?", options=("pizza", "sushi", "salad"), multiple=True)),
            Content.make_sync_of(Content.make_vote(id=mid, sent_at=NOW, refers_to=other, option=2), to=f"bob@{WITNESS}"),
            Content.make_poll_close(id=mid, sent_at=NOW, refers_to=other),
            Content.make_location(id=mid, sent_at=NOW, location=Location(lat=525_163_000, lon=-133_777_000, accuracy=5, label="Tor")),
            Content.make_contact(id=mid, sent_at=NOW, contact=ContactCard(name="Carol", addresses=(f"carol@{WITNESS}",))),
            Content.make_event(id=mid, sent_at=NOW, event=Event(title="Standup", start=NOW, end=NOW + 1, place="Room 1")),
            Content.make_call(id=mid, sent_at=NOW, call=CallSignal(call=other, signal="offer", data="v=0\r\n")),
        )
    )


@dataclass(frozen=True)
class Directory:
    """NODE's key directory: a few leaves, ACCOUNT's among them, and what proves it."""

    leaves: tuple[bytes, ...]
    tree: MerkleTree
    #: ACCOUNT's leaf
    index: int
    #: signed head over the whole tree, and the witness's cosignature of it
    head: bytes
    cosignature: bytes
    proof: DirectoryProof


@functools.cache
def directory() -> Directory:
    index = 4
    leaves = tuple(
        encode_entry(
            account=ACCOUNT if i == index else f"user{i}@{NODE}",
            identity=account_key().public.to_bytes(),
            device_list=device_list(),
            prev=-1,
            at=NOW + i,
        )
        for i in range(7)
    )
    tree = MerkleTree(leaf_hash(leaf) for leaf in leaves)
    head = sign_head(node_key(), node=NODE, size=tree.size, root=tree.root(), at=NOW)
    cosignature = cosign(witness_key(), witness=WITNESS, head=decode_head(head), now=NOW)
    proof = DirectoryProof(
        leaf=leaves[index],
        index=index,
        path=tuple(tree.inclusion_proof(index, tree.size)),
        head=SignedHead(head=head, cosignatures=(cosignature,)),
    )
    return Directory(leaves=leaves, tree=tree, index=index, head=head, cosignature=cosignature, proof=proof)
