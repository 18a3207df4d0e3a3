"""``sonet-node backup --data DIR DEST`` and ``sonet-node restore --data DIR SRC [--database URL]
[--force]`` (node/backup.py does the work), for SQLite and PostgreSQL nodes alike. Progress
goes to stderr only when it is a terminal, so a piped or scheduled backup prints nothing but
its result."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from sonet.cli_output import emit

# each command imports what it needs when it runs: building `sonet-node`'s parser imports none

__all__ = ["add_backup_commands"]

Command = Callable[[str, Callable[[argparse.Namespace], None], str], argparse.ArgumentParser]


def _progress(args: argparse.Namespace) -> Callable[[str], None]:
    if args.json or not sys.stderr.isatty():
        return lambda text: None

    def show(text: str) -> None:
        sys.stderr.write(f"\r\x1b[K{text}")
        sys.stderr.flush()

    return show


def _end_progress(args: argparse.Namespace) -> None:
    if not args.json and sys.stderr.isatty():
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()


def _files_summary(manifest_files: tuple) -> tuple[int, int]:
    return len(manifest_files), sum(f.bytes for f in manifest_files)


def cmd_backup(args: argparse.Namespace) -> None:
    from .backup import take_backup
    from .config import NodeConfig
    from .data_dir import check_database, require_directory
    from .identity import load_node_key

    data = Path(args.data).expanduser()
    dest = Path(args.dest).expanduser()
    require_directory(data)
    config = NodeConfig.load(data)
    key = load_node_key(data)
    if config.storage_database is None:  # a PostgreSQL node has no node.db
        check_database(data)
    try:
        manifest = take_backup(data, dest, config=config, fingerprint=key.public.fingerprint, progress=_progress(args))
    finally:
        _end_progress(args)
    count, size = _files_summary(manifest.files)
    if args.json:
        emit({
            "backup": str(dest), "node": manifest.node, "fingerprint": manifest.fingerprint, "store": manifest.store,
            "schema_version": manifest.schema_version, "files": count, "bytes": size, "created_at": manifest.created_at,
        })  # fmt: skip
    else:
        print(f"backed up node {manifest.node} into {dest}: {count} files, {size} bytes (schema version {manifest.schema_version})")


def cmd_restore(args: argparse.Namespace) -> None:
    from .backup import BackupError, restore_backup
    from .store.database_url import check_database_url, is_postgres_url, redact_url

    data = Path(args.data).expanduser()
    src = Path(args.src).expanduser()
    database = None
    if args.database is not None:
        if not is_postgres_url(args.database):
            raise BackupError(f"--database takes a postgresql:// URL, not {redact_url(args.database)!r}")
        try:
            database = check_database_url(args.database)
        except ValueError as exc:  # one line, without the password
            raise BackupError(f"--database: {exc}") from None
    try:
        manifest = restore_backup(src, data, force=args.force, progress=_progress(args), database=database)
    finally:
        _end_progress(args)
    count, size = _files_summary(manifest.files)
    if args.json:
        emit({
            "data": str(data), "node": manifest.node, "fingerprint": manifest.fingerprint, "store": manifest.store,
            "schema_version": manifest.schema_version, "files": count, "bytes": size, "backup_created_at": manifest.created_at,
        })  # fmt: skip
    else:
        print(f"restored node {manifest.node} (backup of {manifest.created_at}) into {data}: {count} files, {size} bytes")
        print(f"fingerprint: {manifest.fingerprint}")
        print(f"start it with: sonet-node run --data {data}")


def add_backup_commands(command: Command) -> None:
    """Register ``backup`` and ``restore`` with node/cli.py's ``command`` helper."""
    p = command("backup", cmd_backup, "copy the node (database, key, config, attachments, audit log) into a new directory; works while it runs")
    p.add_argument("dest", metavar="DEST", help="the backup directory to create (must not exist)")
    p = command("restore", cmd_restore, "restore a backup into a new or empty data directory, after checking every file's digest")
    p.add_argument("src", metavar="SRC", help="a directory written by `sonet-node backup`")
    p.add_argument(
        "--database", metavar="URL",
        help="PostgreSQL backup: the postgresql:// database to load it into (default: the one its node.toml names)",
    )  # fmt: skip
    p.add_argument(
        "--force", action="store_true",
        help="replace the node in a non-empty DIR, or what a non-empty --database holds (no node may be running on them)",
    )  # fmt: skip
