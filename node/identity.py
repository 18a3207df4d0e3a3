"""The node identity key on disk (``node.key``, mode 0600, never logged)."""

from __future__ import annotations

import os
from pathlib import Path

from sonet.core.crypto import CryptoMode, SigningKey
from sonet.core.errors import LocalProtocolError

__all__ = ["KEY_FILE", "NodeKeyError", "create_node_key", "load_node_key"]

KEY_FILE = "node.key"

#: why a lost key cannot simply be recreated: it is the node's identity
_RESTORE = "restore it from a backup (peers and devices pin this node by its key; a new key makes a new node)"


class NodeKeyError(Exception):
    """``node.key`` is missing, unreadable or not a node key; the message is one line naming the fix."""


def create_node_key(data_dir: Path, mode: CryptoMode = CryptoMode.HYBRID) -> SigningKey:
    key = SigningKey.generate(mode, os.urandom)
    path = data_dir / KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes())
        f.flush()
        os.fsync(f.fileno())
    return key


def load_node_key(data_dir: Path) -> SigningKey:
    path = data_dir / KEY_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NodeKeyError(f"{path} is missing: {_RESTORE}") from None
    except OSError as exc:
        raise NodeKeyError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return SigningKey.from_private_bytes(raw)
    except LocalProtocolError as exc:
        raise NodeKeyError(f"{path} is not a node key ({exc}): {_RESTORE}") from None
