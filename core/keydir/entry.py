"""Directory entries: the leaves of a node's key-directory log (ARCHITECTURE §7).

Every change to an account's identity key or device list appends one leaf,
``CBOR{"v": 1, "account", "identity", "device_list", "prev", "at"}``: the account, its identity
key and signed device list as they are from then on, the index of the account's previous leaf
(``-1`` for its first), and the time of the change. ``prev`` chains an account's leaves, so a
monitor can walk its own history back.

A leaf is only data the node put in its log; the device list inside is verified by whoever uses
it (core/device_list.py), and a leaf is only trusted once proven included in a signed head
(core/keydir/proof.py). Malformed input is ``RemoteProtocolError`` (``directory_malformed``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import canonical, limits
from ..address import parse_address
from ..errors import LocalProtocolError, RemoteProtocolError

__all__ = ["DirectoryEntry", "encode_entry", "decode_entry"]

_VERSION = 1
_FIELDS = {"v": int, "account": str, "identity": bytes, "device_list": bytes, "prev": int, "at": int}
_INT_MAX = 2**63 - 1


@dataclass(frozen=True, kw_only=True, slots=True)
class DirectoryEntry:
    account: str
    #: the account identity key, encoded (core/device_list.py decode_account_identity)
    identity: bytes = field(repr=False)
    #: the account's signed device list, not verified here
    device_list: bytes = field(repr=False)
    #: index of the account's previous leaf, -1 for its first
    prev: int
    at: int
    raw: bytes = field(repr=False)


def malformed(message: str) -> RemoteProtocolError:
    """The one error for malformed directory data (shared by the keydir modules)."""
    return RemoteProtocolError(f"key directory: {message}", code="directory_malformed")


def _field_error(device_list: bytes, prev: int, at: int) -> str | None:
    """What is wrong with these (well-typed) entry fields, if anything."""
    if len(device_list) > limits.MAX_DEVICE_LIST_BYTES:
        return f"device list exceeds {limits.MAX_DEVICE_LIST_BYTES} bytes"
    if not -1 <= prev <= _INT_MAX:
        return "previous leaf index out of range"
    if not 0 <= at <= _INT_MAX:
        return "entry time out of range"
    return None


def encode_entry(*, account: str, identity: bytes, device_list: bytes, prev: int, at: int) -> bytes:
    """The canonical leaf for ``account`` (normalised) holding ``identity`` and ``device_list``."""
    address = str(parse_address(account))
    if type(identity) is not bytes or type(device_list) is not bytes or type(prev) is not int or type(at) is not int:
        raise LocalProtocolError("directory entry fields have the wrong types")
    problem = _field_error(device_list, prev, at)
    if problem:
        raise LocalProtocolError(f"directory entry: {problem}")
    raw = canonical.dumps(
        {"v": _VERSION, "account": address, "identity": identity, "device_list": device_list, "prev": prev, "at": at}
    )
    if len(raw) > limits.MAX_DIRECTORY_LEAF_BYTES:
        raise LocalProtocolError(f"directory entry exceeds {limits.MAX_DIRECTORY_LEAF_BYTES} bytes")
    return raw


def decode_entry(raw: bytes) -> DirectoryEntry:
    """Strictly decode a leaf (structure only: the device list inside is not verified)."""
    if type(raw) is not bytes or len(raw) > limits.MAX_DIRECTORY_LEAF_BYTES:
        raise malformed(f"an entry is bytes of at most {limits.MAX_DIRECTORY_LEAF_BYTES}")
    try:
        body = canonical.loads_map(raw, _FIELDS, max_bytes=limits.MAX_DIRECTORY_LEAF_BYTES)
        address = str(parse_address(body["account"], remote=True))
    except RemoteProtocolError as exc:
        raise malformed(str(exc)) from None
    if body["v"] != _VERSION:
        raise malformed(f"unsupported entry version {body['v']}")
    if address != body["account"]:
        raise malformed("account is not in normal form")
    problem = _field_error(body["device_list"], body["prev"], body["at"])
    if problem:
        raise malformed(problem)
    return DirectoryEntry(
        account=address,
        identity=body["identity"],
        device_list=body["device_list"],
        prev=body["prev"],
        at=body["at"],
        raw=raw,
    )
