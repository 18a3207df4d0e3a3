"""The manifest of a node backup (``manifest.json`` in the backup directory): what was backed up,
by which version, at which schema version, and the SHA-256 of every file.

The digests catch a damaged or truncated copy (a flipped byte, a file lost on the way). They do
not stop someone who can edit the whole backup: it holds the node's private key anyway, so it
must be kept where only the operator can write it (docs/operations.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["MANIFEST_FILE", "FORMAT", "FORMAT_VERSION", "FileEntry", "Manifest", "ManifestError", "digest_file"]

MANIFEST_FILE = "manifest.json"
FORMAT = "sonet-node-backup"
FORMAT_VERSION = 1
#: a manifest larger than this is not one of ours (a million blobs is ~150 MB of JSON)
MAX_MANIFEST_BYTES = 512 * 1024 * 1024
_READ = 1024 * 1024
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class ManifestError(Exception):
    """A manifest that is missing, malformed or of a newer format (one line)."""


@dataclass(frozen=True)
class FileEntry:
    #: relative POSIX path inside the backup
    path: str
    bytes: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "bytes": self.bytes, "sha256": self.sha256}


@dataclass(frozen=True, kw_only=True)
class Manifest:
    sonet_version: str
    #: which database backend wrote the database files (node/backup_sqlite.py: "sqlite")
    store: str
    schema_version: int
    node: str
    fingerprint: str
    created_at: str
    files: tuple[FileEntry, ...]

    def to_json(self) -> str:
        body = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "sonet_version": self.sonet_version,
            "store": self.store,
            "schema_version": self.schema_version,
            "node": self.node,
            "fingerprint": self.fingerprint,
            "created_at": self.created_at,
            "files": [f.to_json() for f in self.files],
        }
        return json.dumps(body, indent=1, sort_keys=True) + "\n"

    @classmethod
    def load(cls, src: Path) -> "Manifest":
        path = src / MANIFEST_FILE
        try:
            if path.is_symlink() or not path.is_file():
                raise ManifestError(f"{src} is not a node backup: it has no {MANIFEST_FILE}")
            if path.stat().st_size > MAX_MANIFEST_BYTES:
                raise ManifestError(f"{path} is too large to be a backup manifest")
            raw = json.loads(path.read_bytes().decode("utf-8"))
        except OSError as exc:
            raise ManifestError(f"cannot read {path}: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise ManifestError(f"{path} is not a backup manifest (not JSON: {exc})") from None
        except RecursionError:  # JSON nested deeper than Python's stack: no manifest of ours is
            raise ManifestError(f"{path} is not a backup manifest (JSON nested too deeply)") from None
        return cls.from_dict(raw, where=str(path))

    @classmethod
    def from_dict(cls, raw: Any, *, where: str) -> "Manifest":
        def bad(why: str) -> ManifestError:
            return ManifestError(f"{where} is not a valid backup manifest: {why}")

        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise bad(f'"format" is not {FORMAT!r}')
        version = raw.get("format_version")
        if type(version) is not int:
            raise bad('"format_version" is not a whole number')
        if version > FORMAT_VERSION:
            raise ManifestError(
                f"{where}: backup format {version} is newer than this software reads ({FORMAT_VERSION}): "
                f"restore it with the sonet version that made it ({raw.get('sonet_version')!s:.40}) or newer"
            )
        texts = {}
        for key in ("sonet_version", "store", "node", "fingerprint", "created_at"):
            value = raw.get(key)
            if not isinstance(value, str) or not 0 < len(value) <= 200:
                raise bad(f"{key!r} is missing or not a short string")
            texts[key] = value
        schema = raw.get("schema_version")
        if type(schema) is not int or schema < 0:
            raise bad('"schema_version" is not a whole number')
        files_raw = raw.get("files")
        if not isinstance(files_raw, list):
            raise bad('"files" is not a list')
        files: list[FileEntry] = []
        seen: set[str] = set()
        for item in files_raw:
            if not isinstance(item, dict) or set(item) != {"path", "bytes", "sha256"}:
                raise bad("a file entry is not {path, bytes, sha256}")
            path, size, sha = item["path"], item["bytes"], item["sha256"]
            if not isinstance(path, str) or not isinstance(sha, str) or not _SHA256_HEX.fullmatch(sha):
                raise bad(f"the entry {str(path)[:80]!r} has no valid path or sha256")
            if type(size) is not int or size < 0:
                raise bad(f"the entry {path[:80]!r} has no valid size")
            if path in seen:
                raise bad(f"{path[:80]!r} is listed twice")
            seen.add(path)
            files.append(FileEntry(path, size, sha))
        return cls(schema_version=schema, files=tuple(files), **texts)


def digest_file(path: Path) -> FileEntry:
    """The size and SHA-256 of ``path`` (the entry's path is its name; callers set their own)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_READ):
            h.update(chunk)
            size += len(chunk)
    return FileEntry(path.name, size, h.hexdigest())
