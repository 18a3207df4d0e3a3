"""node.toml ``[tls]``: the certificate and key the node listens with (``wss://``;
transport/tls.py). Absent: plain ``ws://`` (behind a TLS proxy, or on a private network).
Relative paths are relative to the data directory; the files are read when the node starts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TLS_KEYS", "TlsSettings", "tls_settings", "tls_toml"]

TLS_KEYS = ("cert", "key")


@dataclass(frozen=True)
class TlsSettings:
    #: PEM certificate chain, the server's certificate first
    cert: str
    #: PEM private key of that certificate
    key: str

    def paths(self, data_dir: Path) -> tuple[Path, Path]:
        return data_dir / self.cert, data_dir / self.key


def tls_settings(section: dict, source: str, error: type[Exception]) -> TlsSettings | None:
    """The [tls] section checked (both keys or none), raising ``error`` with one line."""
    if not section:
        return None
    values = []
    for key in TLS_KEYS:
        value = section.get(key)
        if value is None:
            raise error(f"{source}: [tls] needs both cert and key (PEM files); {key} is missing")
        if not isinstance(value, str) or not value.strip():
            raise error(f"{source}: tls.{key} = {value!r} must be a quoted, non-empty file path")
        values.append(value)
    return TlsSettings(*values)


def tls_toml(settings: TlsSettings | None) -> str:
    if settings is None:
        return (
            "\n# [tls]  (off: plain ws://; see docs/operations.md)\n"
            '# cert = "tls/fullchain.pem"   # relative to this directory, or absolute\n'
            '# key = "tls/privkey.pem"\n'
        )
    # JSON string escapes are TOML basic-string escapes: any path survives
    return f"\n[tls]\ncert = {json.dumps(settings.cert)}\nkey = {json.dumps(settings.key)}\n"
