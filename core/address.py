"""Account addresses ``user@node`` and node names, validated and normalised to lower case."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from . import limits
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError

__all__ = ["Address", "parse_address", "validate_node_name", "is_address"]

_LOCAL = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


class _Invalid(ValueError):
    """What is wrong with a name; worded as a Local- or RemoteProtocolError by the caller."""


def validate_node_name(name: str, *, remote: bool = False) -> str:
    try:
        if type(name) is not str:
            raise _bad_node_name(name)
        return _node_name(name)
    except _Invalid as exc:
        raise _refusal(str(exc), remote=remote) from None


@lru_cache(maxsize=1024)  # a node sees the same few names on every item (see _parse)
def _node_name(name: str) -> str:
    norm = name.strip().lower()
    labels = norm.split(".")
    if not norm or len(norm) > limits.MAX_NODE_NAME_LEN or not all(_LABEL.fullmatch(lab) for lab in labels):
        raise _bad_node_name(name)
    return norm


def _bad_node_name(name: object) -> _Invalid:
    return _Invalid(f"invalid node name {name!r} (letters, digits, '-' and '.', like alpha.example)")


def _refusal(message: str, *, remote: bool) -> ProtocolError:
    """A peer's bad name is its fault; ours is most often a user's typo, not a bug: bad_address."""
    return RemoteProtocolError(message) if remote else LocalProtocolError(message, code="bad_address")


@dataclass(frozen=True, slots=True)
class Address:
    user: str
    node: str

    def __str__(self) -> str:
        return f"{self.user}@{self.node}"


def parse_address(text: str, *, remote: bool = False) -> Address:
    try:
        if type(text) is not str:
            raise _Invalid(f"invalid address {text!r} (expected user@node, like alice@alpha.example)")
        return _parse(text)
    except _Invalid as exc:
        raise _refusal(str(exc), remote=remote) from None


# Every envelope names an address and a node sees the same few again and again: valid ones
# are remembered (an invalid one raises, and exceptions are never cached).
@lru_cache(maxsize=4096)
def _parse(text: str) -> Address:
    if text.count("@") != 1 or len(text) > limits.MAX_ACCOUNT_LEN + limits.MAX_NODE_NAME_LEN + 1:
        raise _Invalid(f"invalid address {text!r} (expected user@node, like alice@alpha.example)")
    user, node = text.strip().lower().split("@")
    if not _LOCAL.fullmatch(user):
        raise _Invalid(f"invalid user name {user!r} (1-64 of a-z, 0-9, '.', '_', '-')")
    return Address(user, _node_name(node))


def is_address(text: str) -> bool:
    try:
        parse_address(text)
    except LocalProtocolError:
        return False
    return True
