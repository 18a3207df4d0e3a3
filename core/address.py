"""Account addresses ``user@node`` and node names, validated and normalised to lower case."""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import limits
from .errors import LocalProtocolError, RemoteProtocolError

__all__ = ["Address", "parse_address", "validate_node_name", "is_address"]

_LOCAL = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def validate_node_name(name: str, *, remote: bool = False) -> str:
    err = RemoteProtocolError if remote else LocalProtocolError
    norm = name.strip().lower()
    labels = norm.split(".")
    if not norm or len(norm) > limits.MAX_NODE_NAME_LEN or not all(_LABEL.fullmatch(lab) for lab in labels):
        raise err(f"invalid node name {name!r} (letters, digits, '-' and '.', like alpha.example)")
    return norm


@dataclass(frozen=True, slots=True)
class Address:
    user: str
    node: str

    def __str__(self) -> str:
        return f"{self.user}@{self.node}"


def parse_address(text: str, *, remote: bool = False) -> Address:
    err = RemoteProtocolError if remote else LocalProtocolError
    if type(text) is not str or text.count("@") != 1 or len(text) > limits.MAX_ACCOUNT_LEN + limits.MAX_NODE_NAME_LEN + 1:
        raise err(f"invalid address {text!r} (expected user@node, like alice@alpha.example)")
    user, node = text.strip().lower().split("@")
    if not _LOCAL.fullmatch(user):
        raise err(f"invalid user name {user!r} (1-64 of a-z, 0-9, '.', '_', '-')")
    return Address(user, validate_node_name(node, remote=remote))


def is_address(text: str) -> bool:
    try:
        parse_address(text)
    except LocalProtocolError:
        return False
    return True
