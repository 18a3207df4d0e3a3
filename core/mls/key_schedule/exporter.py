"""MLS-Exporter of RFC 9420 §8.5: secrets for applications, bound to the epoch.

    MLS-Exporter(Label, Context, Length) =
        ExpandWithLabel(DeriveSecret(exporter_secret, Label), "exported", Hash(Context), Length)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import LocalProtocolError

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = ["mls_exporter", "MAX_EXPORT_LENGTH"]

#: ExpandWithLabel's length is a uint16, and HKDF-Expand gives at most 255 hash blocks
MAX_EXPORT_LENGTH = 0xFFFF


def mls_exporter(cs: CipherSuite, exporter_secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """``length`` bytes exported under ``label`` and ``context`` from the epoch's exporter_secret."""
    if not 0 <= length <= min(MAX_EXPORT_LENGTH, 255 * cs.nh):
        raise LocalProtocolError(f"MLS: an exported secret of {length} bytes is beyond what the suite's KDF gives")
    return cs.expand_with_label(cs.derive_secret(exporter_secret, label), b"exported", cs.hash(context), length)
