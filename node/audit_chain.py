"""The audit log's format: hash-chained entries and the node-signed head, and the check of both
(no I/O here; node/audit.py reads and writes the files).

One entry is one JSON line ``{"seq", "at", "kind", "fields", "prev", "hash"}`` written in exactly
one way (compact, keys in that order, UTF-8): ``hash`` is SHA-256 over a label and the canonical
CBOR (core/canonical.py) of the other five, ``prev`` is the hash of the entry before (zeros for
seq 1). The head ``{"seq", "hash", "signed_at", "fingerprint", "signature"}`` is signed with the
node identity key over seq, hash and signed_at. The check re-serialises every parsed line and
compares bytes, so a change of any one byte of the file is caught: either the line no longer
parses, or it is not the node's serialisation, or its hash, its chain link or the head differ.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sonet.core import canonical
from sonet.core.crypto import SigningKey, VerifyKey
from sonet.core.errors import ProtocolError

__all__ = [
    "GENESIS",
    "MAX_ENTRY_BYTES",
    "Entry",
    "Head",
    "Broken",
    "Verified",
    "make_entry",
    "entry_line",
    "parse_entry",
    "sign_head",
    "head_bytes",
    "parse_head",
    "verify_log",
    "unverified_head_seq",
]

_ENTRY_LABEL = b"sonet-audit-entry-v1"
_HEAD_LABEL = b"sonet-audit-head-v1"
#: the ``prev`` of the first entry
GENESIS = "0" * 64
#: one entry's line at most (the writer reads this much of the tail to find the last entry)
MAX_ENTRY_BYTES = 8192
_ENTRY_KEYS = ("seq", "at", "kind", "fields", "prev", "hash")
_HEAD_KEYS = ("seq", "hash", "signed_at", "fingerprint", "signature")


@dataclass(frozen=True)
class Entry:
    seq: int
    at: str
    kind: str
    fields: dict[str, Any]
    prev: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "kind": self.kind, "fields": self.fields, "prev": self.prev, "hash": self.hash}


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str
    signed_at: str
    fingerprint: str
    signature: str


class Broken(Exception):
    """The log or its head does not check out: ``what`` names how ("edited", "removed",
    "reordered", "truncated", "appended", "head missing", "head signature invalid"), ``seq``
    and ``line`` the first bad entry (None when there is none to name)."""

    def __init__(self, what: str, message: str, *, seq: int | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.what = what
        self.seq = seq
        self.line = line


@dataclass(frozen=True)
class Verified:
    count: int
    head: Head | None


def _plain(value: Any, depth: int = 0) -> bool:
    """JSON data that hashes the same after a round trip: no floats, string keys, bounded depth."""
    if depth > 8:
        return False
    t = type(value)
    if t in (str, int, bool) or value is None:
        return True
    if t is list:
        return all(_plain(v, depth + 1) for v in value)
    if t is dict:
        return all(type(k) is str and _plain(v, depth + 1) for k, v in value.items())
    return False


def _digest(seq: int, at: str, kind: str, fields: Mapping[str, Any], prev: str) -> str:
    body = canonical.dumps({"seq": seq, "at": at, "kind": kind, "fields": dict(fields), "prev": prev})
    return hashlib.sha256(_ENTRY_LABEL + b"\x00" + body).hexdigest()


def make_entry(seq: int, at: str, kind: str, fields: Mapping[str, Any], prev: str) -> Entry:
    """The entry after ``prev``; ValueError for fields that cannot be logged (a bug)."""
    if not kind or not _plain(dict(fields)):
        raise ValueError(f"audit entry {kind!r}: fields must be plain JSON data without floats")
    entry = Entry(seq, at, kind, dict(fields), prev, _digest(seq, at, kind, fields, prev))
    if len(entry_line(entry)) > MAX_ENTRY_BYTES:
        raise ValueError(f"audit entry {kind!r} is larger than {MAX_ENTRY_BYTES} bytes")
    return entry


def entry_line(entry: Entry) -> bytes:
    """The one serialisation of ``entry`` (with its newline)."""
    return (json.dumps(entry.as_dict(), ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def parse_entry(line: bytes) -> Entry | None:
    """The entry ``line`` (without its newline) holds if it is exactly one the node writes
    (its own hash aside); None otherwise."""
    try:
        raw = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: JSON nested too deeply
        return None
    if type(raw) is not dict or tuple(raw) != _ENTRY_KEYS:
        return None
    seq, at, kind, fields, prev, hash_ = (raw[k] for k in _ENTRY_KEYS)
    if not (type(seq) is int and seq >= 1 and type(at) is str and type(kind) is str and type(fields) is dict):
        return None
    if not (type(prev) is str and type(hash_) is str and _plain(fields)):
        return None
    entry = Entry(seq, at, kind, fields, prev, hash_)
    if entry_line(entry) != line + b"\n":
        return None
    return entry


def _head_message(seq: int, hash_: str, signed_at: str) -> bytes:
    return canonical.dumps({"seq": seq, "hash": hash_, "signed_at": signed_at})


def sign_head(key: SigningKey, seq: int, hash_: str, signed_at: str) -> Head:
    signature = key.sign(_HEAD_LABEL, _head_message(seq, hash_, signed_at))
    return Head(seq, hash_, signed_at, key.public.fingerprint, signature.hex())


def head_bytes(head: Head) -> bytes:
    return (json.dumps({k: getattr(head, k) for k in _HEAD_KEYS}, separators=(",", ":")) + "\n").encode()


def parse_head(data: bytes, key: VerifyKey) -> Head:
    """The head in ``data`` if the node's key signed it; Broken("head signature invalid") else."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: JSON nested too deeply
        raw = None
    if type(raw) is not dict or tuple(raw) != _HEAD_KEYS:
        raise Broken("head signature invalid", "audit.head is not a signed head the node wrote")
    head = Head(*(raw[k] for k in _HEAD_KEYS))
    if not (type(head.seq) is int and head.seq >= 0 and all(type(getattr(head, k)) is str for k in _HEAD_KEYS[1:])):
        raise Broken("head signature invalid", "audit.head is not a signed head the node wrote")
    try:
        key.verify(_HEAD_LABEL, _head_message(head.seq, head.hash, head.signed_at), bytes.fromhex(head.signature))
    except (ValueError, ProtocolError):
        raise Broken("head signature invalid", f"audit.head is not signed by this node's key ({key.fingerprint})") from None
    return head


def verify_log(open_lines: Callable[[], Iterable[bytes]], head_data: bytes | None, key: VerifyKey) -> Verified:
    """Check every entry and the head; Broken naming the first bad entry. ``open_lines()``
    yields the log's lines with their newlines, from the start, each time it is called (the
    log is read as a stream, once; a second time only to tell a reordering from a removal)."""
    head_seq = unverified_head_seq(head_data)
    signed_hash: str | None = None
    prev, expected, prev_line, number = GENESIS, 1, 0, 0
    for number, raw in enumerate(open_lines(), start=1):
        if not raw.endswith(b"\n"):
            raise Broken("truncated", f"line {number} is cut short (a partial entry after seq {expected - 1}): truncated or edited", seq=expected, line=number)
        entry = parse_entry(raw[:-1])
        if entry is None or _digest(entry.seq, entry.at, entry.kind, entry.fields, entry.prev) != entry.hash:
            raise Broken("edited", f"line {number} (seq {expected}) is not the entry the node wrote: edited", seq=expected, line=number)
        if entry.seq > expected:
            if _found_later(open_lines, number, expected):
                raise Broken("reordered", f"line {number} holds seq {entry.seq} where seq {expected} belongs: reordered", seq=entry.seq, line=number)
            gone = f"seq {expected}" if entry.seq == expected + 1 else f"seq {expected} to {entry.seq - 1}"
            raise Broken("removed", f"{gone} missing before line {number} (seq {entry.seq}): removed", seq=expected, line=number)
        if entry.seq < expected:
            raise Broken("reordered", f"line {number} holds seq {entry.seq} after seq {expected - 1}: reordered or repeated", seq=entry.seq, line=number)
        if entry.prev != prev:
            # each entry is consistent in itself: the one before was replaced, its hash recomputed
            raise Broken("edited", f"line {prev_line} (seq {expected - 1}) was rewritten: seq {entry.seq} does not chain to it", seq=expected - 1, line=prev_line)
        if entry.seq == head_seq:
            signed_hash = entry.hash
        prev, expected, prev_line = entry.hash, expected + 1, number
    last = expected - 1
    if head_data is None:
        if last:
            raise Broken("head missing", f"audit.head is missing but the log holds {last} entries")
        return Verified(0, None)
    head = parse_head(head_data, key)
    if head.seq > last:
        raise Broken("truncated", f"the signed head covers seq 1 to {head.seq} but the log ends at seq {last}: truncated", seq=last + 1, line=last + 1)
    if head.seq == 0:
        if head.hash != GENESIS:
            raise Broken("head signature invalid", "audit.head of an empty log names a hash")
    elif signed_hash != head.hash:
        raise Broken("edited", f"line {head.seq} (seq {head.seq}) is not the entry the node signed: the chain was rewritten", seq=head.seq, line=head.seq)
    if head.seq < last:
        first = head.seq + 1
        raise Broken("appended", f"line {first} (seq {first}) and after are not covered by the node's signed head: appended", seq=first, line=first)
    return Verified(last, head)


def unverified_head_seq(head_data: bytes | None) -> int | None:
    """The seq the head names, before its signature is checked (to note that entry's hash)."""
    try:
        raw = json.loads(head_data) if head_data is not None else None
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: JSON nested too deeply
        return None
    seq = raw.get("seq") if type(raw) is dict else None
    return seq if type(seq) is int else None


def _found_later(open_lines: Callable[[], Iterable[bytes]], after_line: int, seq: int) -> bool:
    for number, raw in enumerate(open_lines(), start=1):
        if number > after_line:
            entry = parse_entry(raw.rstrip(b"\n"))
            if entry is not None and entry.seq == seq:
                return True
    return False
