"""The node identity key on disk (``node.key``, mode 0600, never logged)."""

from __future__ import annotations

import os
from pathlib import Path

from sonet.core.crypto import CryptoMode, SigningKey

__all__ = ["KEY_FILE", "create_node_key", "load_node_key"]

KEY_FILE = "node.key"


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
    return SigningKey.from_private_bytes((data_dir / KEY_FILE).read_bytes())
