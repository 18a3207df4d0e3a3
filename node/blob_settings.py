"""node.toml ``[blobs]``: the attachment store's limits (node/blobs.py, docs/operations.md).

- ``max_file_bytes``: the largest file one blob may hold (default 100 MiB; its blob, the
  ciphertext, is 16 bytes a 64 KiB segment larger: core/crypto/stream.py ``sealed_size``);
- ``account_max_bytes`` / ``account_max_blobs``: what one account may hold at once, counted
  from the declared size at ``BlobCreate`` (default 2 GiB, 1000 blobs);
- ``retention_days``: how long a blob is kept after it was created (default 30), uploaded or not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from sonet.core.blob_api import MAX_BLOB_BYTES
from sonet.core.crypto.stream import sealed_size

__all__ = ["BlobSettings", "BLOB_KEYS", "blob_settings", "blobs_toml"]

_MIB = 1 << 20
_DAY_MS = 24 * 3600 * 1000
#: the largest file a node can be configured to take (its blob stays under MAX_BLOB_BYTES)
_MAX_FILE = MAX_BLOB_BYTES // 2
#: (key, default, (low, high)) in node.toml order
BLOB_KEYS: tuple[tuple[str, int, tuple[int, int]], ...] = (
    ("max_file_bytes", 100 * _MIB, (1, _MAX_FILE)),
    ("account_max_bytes", 2048 * _MIB, (1, MAX_BLOB_BYTES * 16)),
    ("account_max_blobs", 1000, (1, 10_000_000)),
    ("retention_days", 30, (1, 3650)),
)


@dataclass(frozen=True, kw_only=True)
class BlobSettings:
    max_file_bytes: int = BLOB_KEYS[0][1]
    account_max_bytes: int = BLOB_KEYS[1][1]
    account_max_blobs: int = BLOB_KEYS[2][1]
    retention_days: int = BLOB_KEYS[3][1]

    @property
    def max_blob_bytes(self) -> int:
        """The largest blob (ciphertext) the node takes."""
        return sealed_size(self.max_file_bytes)

    @property
    def retention_ms(self) -> int:
        return self.retention_days * _DAY_MS


def blob_settings(section: dict, whole: Callable[[dict, str, str, tuple[int, int], int], int]) -> BlobSettings:
    """The [blobs] section, each key checked by ``whole(table, section, key, bounds, default)``
    (node/config.py's check, which names the file in its error)."""
    return BlobSettings(**{key: whole(section, "blobs", key, bounds, default) for key, default, bounds in BLOB_KEYS})


def blobs_toml(settings: BlobSettings) -> str:
    values = asdict(settings)
    lines = [f"{key} = {values[key]}" for key, _default, _bounds in BLOB_KEYS]
    if settings == BlobSettings():
        return "\n# [blobs]  (attachments; the defaults, see docs/operations.md)\n" + "".join(f"# {line}\n" for line in lines)
    return "\n[blobs]\n" + "".join(f"{line}\n" for line in lines)
