"""Backups of a node's data directory, taken while the node runs, and their restore.

A backup is a directory (``sonet-node backup --data DIR DEST``) holding ``manifest.json``
(node/backup_manifest.py) and copies of: the database (through its backend, chosen by the
store's kind: node/backup_sqlite.py for SQLite, node/backup_postgres.py's pg_dump for
PostgreSQL), ``node.key``, ``node.toml``, the audit log if
there is one (log and signed head copied together under the log's lock, so they match), and the complete blobs with every blob record (``blobs/<id>.meta``; a partial upload's
bytes are left out: its upload starts again from its first chunk).

The database is copied first: a message in the copy was sent after its attachment's upload
completed, so the blob copied afterwards is there too. A backup is written under a hidden name
beside DEST and renamed to DEST once complete, so a DEST that exists is a whole backup.

Restore verifies everything before it changes anything: the manifest, the set of files, each
file's size and SHA-256 (while copying it into a staging directory beside the target), the
database's own check and schema version, which must not be newer than this software's (a
refused downgrade), and that the key and configuration load and are the manifest's node. A
PostgreSQL backup is then loaded into its target database (``--database URL`` or the backup's
node.toml's), and the restored node.toml points at it; a backup's node.toml never holds the
database password.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import sonet

from .data_dir import DB_FILE, RUNTIME_FILE
from .backup_manifest import MANIFEST_FILE, FileEntry, Manifest, ManifestError, digest_file
from .backup_postgres import PostgresBackup, PostgresBackupError
from .backup_sqlite import SqliteBackup, SqliteBackupError
from .blobs import BLOBS_DIR, fsync_dir
from .config import CONFIG_FILE, ConfigError, NodeConfig
from .identity import KEY_FILE, NodeKeyError, load_node_key
from .store.database_url import strip_password
from .store.migrations import LATEST_VERSION

__all__ = ["BackupError", "take_backup", "restore_backup", "store_kind", "DATABASE_BACKENDS", "AUDIT_FILES"]

#: the audit log's files (node/audit.py)
AUDIT_FILES = ("audit.head", "audit.log")
_LOCK_FILE = "node.lock"
_READ = 1024 * 1024
#: the paths a backup may hold besides the database's (anything else is refused at restore)
_COMMON = re.compile(
    r"(?:node\.toml|node\.key|audit\.head|audit\.log|" + BLOBS_DIR + r"/[0-9a-f]{32}\.(?:meta|blob))"
)

Progress = Callable[[str], None]


class BackupError(Exception):
    """A backup or restore that cannot be done; the message is one line naming the fix."""


class DatabaseBackup(Protocol):
    """How one database backend is backed up and checked (the PostgreSQL backend adds its own:
    a dump file in the backup, loaded into its database at restore)."""

    kind: str
    #: the backup's paths that belong to the database
    files: tuple[str, ...]

    def dump(self, data: Path, dest: Path) -> int:
        """Write the database's files into ``dest``; return the schema version copied."""
        ...

    def check(self, db: Path) -> int:
        """Check a copy of the database; return its schema version."""
        ...


DATABASE_BACKENDS: dict[str, DatabaseBackup] = {"sqlite": SqliteBackup(), "postgresql": PostgresBackup()}
#: a backend's own errors, each one line (turned into BackupError)
_BACKEND_ERRORS = (SqliteBackupError, PostgresBackupError)


def store_kind(config: NodeConfig) -> str:
    """Which backend holds this node's database (the key of DATABASE_BACKENDS)."""
    return "sqlite" if config.storage_database is None else "postgresql"


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _copy(src: Path, dst: Path, *, mode: int = 0o600) -> FileEntry:
    """Copy ``src`` to a new file ``dst`` (fsynced); return its entry (path: the name)."""
    h = hashlib.sha256()
    size = 0
    with open(src, "rb") as fin:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fout:
            while chunk := fin.read(_READ):
                h.update(chunk)
                size += len(chunk)
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())
    return FileEntry(dst.name, size, h.hexdigest())


def _entry(root: Path, path: Path) -> FileEntry:
    found = digest_file(path)
    return FileEntry(path.relative_to(root).as_posix(), found.bytes, found.sha256)


# Backup -------------------------------------------------------------------------------------


def take_backup(data: Path, dest: Path, *, config: NodeConfig, fingerprint: str, progress: Progress) -> Manifest:
    """Back ``data`` up into the new directory ``dest`` (see the module docstring)."""
    if dest.exists() or dest.is_symlink():
        raise BackupError(f"{dest} already exists: a backup never overwrites anything; give a new path")
    parent = dest.parent
    if not parent.is_dir():
        raise BackupError(f"{parent} is not a directory: create it first, or give DEST in an existing directory")
    if parent.resolve().is_relative_to(data.resolve()):
        raise BackupError(f"{dest} is inside the data directory {data}: a backup there is lost with it; put it elsewhere")
    backend = DATABASE_BACKENDS[store_kind(config)]
    partial = parent / f".{dest.name}.partial-{os.getpid()}"
    try:
        partial.mkdir(mode=0o700)
    except OSError as exc:
        raise BackupError(f"cannot create {partial}: {exc.strerror or exc}") from None
    try:
        progress("copying the database")
        schema = backend.dump(data, partial)
        entries = [_entry(partial, partial / name) for name in backend.files]
        entries.append(_copy(data / KEY_FILE, partial / KEY_FILE))
        entries.append(_copy_config(data, partial, config))
        entries += _copy_audit(data, partial)
        entries += _copy_blobs(data / BLOBS_DIR, partial, progress)
        manifest = Manifest(
            sonet_version=sonet.__version__,
            store=backend.kind,
            schema_version=schema,
            node=config.name,
            fingerprint=fingerprint,
            created_at=_now_iso(),
            files=tuple(sorted(entries, key=lambda e: e.path)),
        )
        fd = os.open(partial / MANIFEST_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(manifest.to_json())
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(partial)
        if dest.exists() or dest.is_symlink():
            raise BackupError(f"{dest} appeared while the backup was taken: nothing was written there; give a new path")
        os.rename(partial, dest)
        fsync_dir(parent)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, _BACKEND_ERRORS):
            raise BackupError(str(exc)) from None
        if isinstance(exc, OSError):
            where = f" ({exc.filename})" if exc.filename else ""
            raise BackupError(f"the backup failed: {exc.strerror or exc}{where}; nothing was left at {dest}") from None
        raise
    return manifest


def _copy_config(data: Path, dest: Path, config: NodeConfig) -> FileEntry:
    """node.toml as it is, or, when it names a PostgreSQL database with a password, written
    anew without the password (a backup travels; the password stays with the operator)."""
    url = config.storage_database
    if url is None or strip_password(url) == url:
        return _copy(data / CONFIG_FILE, dest / CONFIG_FILE)
    _write_config(dest, replace(config, storage_database=strip_password(url)))
    return _entry(dest, dest / CONFIG_FILE)


def _write_config(dest: Path, config: NodeConfig) -> None:
    fd = os.open(dest / CONFIG_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(config.to_toml())
        f.flush()
        os.fsync(f.fileno())


def _copy_audit(data: Path, dest: Path) -> list[FileEntry]:
    """The audit log and its signed head as one consistent pair: copied under a shared lock of
    the log, which node/audit.py holds exclusively while it appends and signs the new head."""
    log = data / AUDIT_FILES[1]
    if not log.is_file():
        return []
    fd = os.open(log, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        return [_copy(data / name, dest / name) for name in AUDIT_FILES if (data / name).is_file()]
    finally:
        os.close(fd)  # releases the lock


def _copy_blobs(blobs: Path, dest: Path, progress: Progress) -> list[FileEntry]:
    """Every blob record, and the bytes of each complete blob. A blob deleted meanwhile (its
    expiry, a delete for everyone) is left out whole."""
    if not blobs.is_dir():
        return []
    (dest / BLOBS_DIR).mkdir(mode=0o700)
    records = sorted(blobs.glob("*.meta"))
    entries: list[FileEntry] = []
    for i, meta in enumerate(records, 1):
        if i % 50 == 0 or i == len(records):
            progress(f"copying attachments: {i}/{len(records)}")
        stem = meta.name[: -len(".meta")]
        if not re.fullmatch(r"[0-9a-f]{32}", stem):
            continue
        copied: list[FileEntry] = []
        try:
            copied.append(_copy(meta, dest / BLOBS_DIR / meta.name))
            done = blobs / f"{stem}.blob"
            if done.exists():
                copied.append(_copy(done, dest / BLOBS_DIR / done.name))
        except FileNotFoundError:  # deleted while we copied it: not in the backup
            for entry in copied:
                (dest / BLOBS_DIR / entry.path).unlink(missing_ok=True)
            continue
        entries += [FileEntry(f"{BLOBS_DIR}/{e.path}", e.bytes, e.sha256) for e in copied]
    return entries


# Restore ------------------------------------------------------------------------------------


def restore_backup(src: Path, data: Path, *, force: bool, progress: Progress, database: str | None = None) -> Manifest:
    """Restore the backup ``src`` into ``data`` (see the module docstring); ``database``: the
    PostgreSQL database a PostgreSQL backup is loaded into (default: its node.toml's)."""
    if not src.is_dir():
        raise BackupError(f"{src} is not a directory: give the directory `sonet-node backup` wrote")
    try:
        manifest = Manifest.load(src)
    except ManifestError as exc:
        raise BackupError(str(exc)) from None
    backend = DATABASE_BACKENDS.get(manifest.store)
    if backend is None:
        raise BackupError(
            f"{src} holds a {manifest.store[:40]!r} database; this software restores {', '.join(DATABASE_BACKENDS)}"
        )
    if manifest.schema_version > LATEST_VERSION:
        raise BackupError(
            f"{src} has database schema version {manifest.schema_version}, newer than this software knows "
            f"({LATEST_VERSION}): it was made by sonet {manifest.sonet_version}; restore it with that version "
            "or newer (a downgrade is refused)"
        )
    if database is not None and not isinstance(backend, PostgresBackup):
        raise BackupError(f"{src} is a backup of a {manifest.store} node: --database is for a PostgreSQL backup; leave it out")
    _check_file_set(src, manifest, backend)
    _check_target(data, force=force)
    staging = data.parent / f".{data.name}.restoring-{os.getpid()}"
    lock = None
    try:
        staging.mkdir(mode=0o700)
        _copy_verified(src, staging, manifest, progress)
        schema = backend.check(staging / backend.files[0])
        if schema != manifest.schema_version:
            raise BackupError(
                f"{src}: the database is at schema version {schema}, the manifest says {manifest.schema_version} (the backup is damaged)"
            )
        key = load_node_key(staging)
        config = NodeConfig.load(staging)
        if key.public.fingerprint != manifest.fingerprint or config.name != manifest.node:
            raise BackupError(f"{src}: node.key or node.toml is not the node the manifest names (the backup is damaged)")
        # before a database is loaded: a node running on DIR refuses the restore untouched
        lock = _lock_target(data)
        if isinstance(backend, PostgresBackup):
            _load_postgres(backend, src, staging, manifest, config, database, force=force, progress=progress)
        progress("putting the restored node in place")
        _install(staging, data, lock)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, (*_BACKEND_ERRORS, NodeKeyError, ConfigError)):
            raise BackupError(f"{src}: {exc}") from None
        if isinstance(exc, OSError):
            where = f" ({exc.filename})" if exc.filename else ""
            raise BackupError(f"the restore failed: {exc.strerror or exc}{where}") from None
        raise
    finally:
        if lock is not None:
            os.close(lock)
    return manifest


def _load_postgres(
    backend: PostgresBackup, src: Path, staging: Path, manifest: Manifest, config: NodeConfig,
    database: str | None, *, force: bool, progress: Progress,
) -> None:  # fmt: skip
    """Load the staged dump into the target database, then leave in ``staging`` a node.toml
    that points at it (with the password given, if any) and no dump."""
    url = database or config.storage_database
    if url is None:
        raise BackupError(f"{src}: its node.toml names no PostgreSQL database: give the target with --database URL")
    dump = staging / backend.files[0]
    schema = backend.load(dump, url, force=force, progress=progress)
    if schema != manifest.schema_version:
        raise BackupError(
            f"{src}: the loaded database is at schema version {schema}, the manifest says {manifest.schema_version} (the backup is damaged)"
        )
    dump.unlink()
    _write_config(staging, replace(config, storage_database=url))


def _check_file_set(src: Path, manifest: Manifest, backend: DatabaseBackup) -> None:
    listed = {f.path for f in manifest.files}
    for path in listed:
        if not (_COMMON.fullmatch(path) or path in backend.files):
            raise BackupError(f"{src}: the manifest lists {path[:80]!r}, which is not part of a node backup")
    for required in (CONFIG_FILE, KEY_FILE, *backend.files):
        if required not in listed:
            raise BackupError(f"{src}: the manifest does not list {required} (the backup is incomplete)")
    present = set()
    for found in src.rglob("*"):
        rel = found.relative_to(src).as_posix()
        if found.is_symlink() or not (found.is_file() or found.is_dir()):
            raise BackupError(f"{src}: {rel} is not a regular file; a backup holds only files")
        if found.is_file() and rel != MANIFEST_FILE:
            present.add(rel)
    if missing := sorted(listed - present):
        raise BackupError(f"{src}: {missing[0]} is missing" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "") + " (the backup is incomplete)")
    if extra := sorted(present - listed):
        raise BackupError(f"{src}: {extra[0]} is not in the manifest (the backup was changed after it was made)")


def _copy_verified(src: Path, staging: Path, manifest: Manifest, progress: Progress) -> None:
    total = len(manifest.files)
    for i, expected in enumerate(manifest.files, 1):
        if i % 50 == 0 or i == total:
            progress(f"checking and copying: {i}/{total} files")
        target = staging / expected.path
        target.parent.mkdir(mode=0o700, exist_ok=True)
        got = _copy(src / expected.path, target)
        if (got.bytes, got.sha256) != (expected.bytes, expected.sha256):
            raise BackupError(
                f"{src / expected.path} does not match its SHA-256 in the manifest (the backup is damaged): "
                "nothing was restored; use another copy of the backup"
            )


#: what a node's data directory holds that a restore with --force replaces
_REPLACED = (CONFIG_FILE, KEY_FILE, DB_FILE, f"{DB_FILE}-wal", f"{DB_FILE}-shm", f"{DB_FILE}-journal", RUNTIME_FILE, *AUDIT_FILES)


def _check_target(data: Path, *, force: bool) -> None:
    if data.is_symlink() or (data.exists() and not data.is_dir()):
        raise BackupError(f"{data} is not a directory: give --data a new or empty directory")
    if not data.parent.is_dir():
        raise BackupError(f"{data.parent} does not exist: create it first")
    if data.exists() and any(data.iterdir()) and not force:
        shown = ", ".join(sorted(p.name for p in data.iterdir())[:5])
        raise BackupError(
            f"{data} is not empty (it holds {shown}): restore into a new or empty directory, "
            "or add --force to replace the node in it"
        )


def _lock_target(data: Path) -> int | None:
    """The held ``node.lock`` descriptor of a non-empty ``data`` (None when it is new or empty),
    which keeps a node from starting on it half-way; refused while a node runs on it."""
    if not data.exists() or not any(data.iterdir()):
        return None
    lock = os.open(data / _LOCK_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        raise BackupError(f"a sonet-node is running on {data}: stop it before restoring over it") from None
    return lock


def _install(staging: Path, data: Path, lock: int | None) -> None:
    """Move the staged node into ``data`` (held by ``lock`` unless it was new or empty)."""
    if lock is None:
        if data.exists():
            data.rmdir()
        os.rename(staging, data)
        fsync_dir(data.parent)
        return
    for name in _REPLACED:
        (data / name).unlink(missing_ok=True)
    shutil.rmtree(data / BLOBS_DIR, ignore_errors=True)
    for entry in staging.iterdir():
        os.replace(entry, data / entry.name)
    staging.rmdir()
    fsync_dir(data)
