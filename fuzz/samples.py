"""A valid instance of every registered wire frame, built from its declared field types.

Field values come from the field's name where the protocol constrains it (addresses, 16-byte
ids, 32-byte hashes, ...) and from its type otherwise, with real signed material where a frame
carries some. ``frame_samples()`` covers every frame of the endpoints' frame sets, so a frame
added later is fuzzed without touching this module (the fuzz tests fail if one cannot be built).
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Any

from sonet.core import limits
from sonet.core.access import ACCESS_TOKEN_LEN
from sonet.core.client_api import CLIENT_FRAMES, DirectoryProof, SignedHead
from sonet.core.envelope import Envelope, Kind
from sonet.core.federation_api import FEDERATION_FRAMES, EphemeralPush, Report
from sonet.core.groups.items import GroupItem
from sonet.core.handshake import HANDSHAKE_FRAMES
from sonet.core.wire import Frame, Struct, encode_frame

from . import material as m

__all__ = ["frame_samples", "sample_frame"]

_HASH = bytes(range(32))


def _by_name() -> dict[str, Any]:
    d = m.directory()
    return {
        "v": 1,
        "account": m.ACCOUNT,
        "to": m.ACCOUNT,
        "node": m.NODE,
        "origin": m.WITNESS,
        "dest": m.NODE,
        "user": "alice",
        "id": bytes(range(limits.ENVELOPE_ID_LEN)),
        "ids": (bytes(range(limits.ENVELOPE_ID_LEN)),),
        "slot": m.SLOT,
        "mode": "hybrid",
        "offer": ("hybrid", "pq"),
        "nonce": bytes(32),
        "cookie": bytes(range(16)),  # core/handshake.py COOKIE_LEN
        "token": bytes(range(ACCESS_TOKEN_LEN)),
        "device": 1,
        "kind": 1,
        "expires": m.NOW + 60_000,
        "hops": 2,
        "outcome": "ok",
        "state": "queued",
        "first": 3,
        "second": 7,
        "start": 3,
        "end": 7,
        "frontier": tuple(d.tree.frontier(3)),
        "leaves": d.leaves[3:7],
        "path": d.proof.path,
        "proof": tuple(d.tree.consistency_proof(3, 7)),
        "record": m.device_record(),
        "account_identity": m.account_key().public.to_bytes(),
        "device_list": m.device_list(),
        "certificate": m.certificate(),
        "cosignature": d.cosignature,
        "key": m.node_key().public.to_bytes(),
        "code": "bad_input",
        "message": "a reason",
        "outcomes": ("ok", "mailbox_full"),
        # FetchGroupTree / GroupTree (a Transit's group is a GroupItem: its struct sample is used)
        "group": bytes(range(16)),
        "hub": m.NODE,
        "offset": 0,
        "total": 4,
        "chunk": b"tree",
        # the blob store's frames (core/blob_api.py): 4 bytes of a blob of 4 (total)
        "blob": bytes(range(16)),
        "sha256": _HASH,
        "data": b"blob",
    }


def _struct_samples() -> dict[type, Any]:
    d = m.directory()
    return {
        Envelope: m.envelope(),
        DirectoryProof: d.proof,
        SignedHead: d.proof.head,
        # exactly one of envelope, report and group: the generic rule would fill all three
        Report: None,
        GroupItem: None,
    }


def _value(name: str, tp: Any) -> Any:
    structs = _struct_samples()
    if tp in structs:
        return structs[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = next(a for a in args if a is not type(None))
        return None if structs.get(inner, ...) is None else _value(name, inner)
    if name == "access" and tp is bytes:  # an access token (SenderCertificate, Transit)
        return bytes(range(ACCESS_TOKEN_LEN))
    named = _by_name()
    # a name means one thing in most frames; where a frame gives it another type (a group
    # submission's `message` is bytes, an error's is text) the type decides
    if name in named and (not isinstance(tp, type) or isinstance(named[name], tp)):
        return named[name]
    if origin is tuple:
        return (_value(name, args[0]),)
    if isinstance(tp, type) and issubclass(tp, Struct):
        return _build(tp)
    return {int: 1, bool: True, str: "text", bytes: b"bytes"}[tp]


def _build(cls: type) -> Any:
    hints = typing.get_type_hints(cls)
    return cls(**{name: _value(name, hints[name]) for name, _ in cls._wire_fields})


def sample_frame(cls: type[Frame]) -> Frame:
    if cls is EphemeralPush:  # the generic envelope is a stored one
        return EphemeralPush(request=1, origin=m.WITNESS, dest=m.NODE, hops=2, envelopes=(m.envelope(kind=Kind.EPHEMERAL),))
    return _build(cls)


@functools.cache
def frame_samples() -> dict[int, bytes]:
    """tag -> the encoding of a valid frame with that tag (encode_frame checks it), for every
    frame of an endpoint's frame set (not frames a test registers for itself)."""
    protocol = {cls.TAG: cls for frames in (HANDSHAKE_FRAMES, CLIENT_FRAMES, FEDERATION_FRAMES) for cls in frames}
    return {tag: encode_frame(sample_frame(cls)) for tag, cls in sorted(protocol.items())}
