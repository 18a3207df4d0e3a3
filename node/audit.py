"""The node's tamper-evident audit log on disk: ``audit.log`` (hash-chained JSON Lines, format in
node/audit_chain.py) and ``audit.head`` (the newest (seq, hash) signed with the node key).

Several processes may write one data directory (the running node, ``sonet-node invite`` or
``peer add`` beside it), so every batch is appended under an exclusive advisory lock on
audit.log: read the last entry, append the batch in one O_APPEND write, fsync, then replace
audit.head (written aside, fsynced, renamed) before the lock goes. Nothing here is a secret
store: callers put names, fingerprints, hash prefixes and counts in fields, never a token, a
message, a device key or a sealed sender's identity.

``record(data_dir_or_log, kind, **fields)`` is the one call for an operator action.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sonet.cli_output import iso_ms
from sonet.core.crypto import SigningKey, VerifyKey

from .audit_chain import (
    GENESIS,
    MAX_ENTRY_BYTES,
    Broken,
    Entry,
    Verified,
    entry_line,
    head_bytes,
    make_entry,
    parse_entry,
    sign_head,
    unverified_head_seq,
    verify_log,
)
from .identity import load_node_key

__all__ = ["LOG_FILE", "HEAD_FILE", "AuditLog", "AuditError", "record", "iter_entries", "read_entries", "verify"]

LOG_FILE = "audit.log"
HEAD_FILE = "audit.head"
_CHUNK = 1 << 20
#: a signed head is a few KiB (a hybrid signature in hex)
_MAX_HEAD_BYTES = 64 * 1024


class AuditError(Exception):
    """The audit log cannot be written or read; one line naming the file and why."""


def _now_iso() -> str:
    return iso_ms(time.time_ns() // 1_000_000) or ""


class AuditLog:
    """The audit log of one data directory, written with the node key."""

    def __init__(self, data_dir: Path, key: SigningKey) -> None:
        self.data_dir = Path(data_dir)
        self.key = key
        self.path = self.data_dir / LOG_FILE
        self.head_path = self.data_dir / HEAD_FILE

    def append(self, records: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        """Append ``(kind, fields)`` records as one batch and sign the new head; the seq of the
        last one (blocking file I/O: the node calls it in a thread)."""
        batch = list(records)
        if not batch:
            return 0
        try:
            with _locked(self.path) as fd:
                seq, prev, torn = _last_entry(fd, self.path)
                at = _now_iso()
                out = bytearray()
                if torn is not None:
                    dropped = self._drop_torn_tail(fd, torn, seq) if torn < os.fstat(fd).st_size else None
                    if dropped is None:
                        out += b"\n"  # a whole entry, or a cut a signed head may cover: kept, the batch starts on a new line
                    else:
                        batch.insert(0, ("audit_torn_tail", dropped))
                for kind, fields in batch:
                    seq += 1
                    entry = make_entry(seq, at, kind, fields, prev)
                    out += entry_line(entry)
                    prev = entry.hash
                _write_all(fd, bytes(out))
                os.fsync(fd)
                self._write_head(seq, prev, at)
        except OSError as exc:
            raise AuditError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        return seq

    def _drop_torn_tail(self, fd: int, start: int, last_seq: int) -> dict[str, Any] | None:
        """A write cut by a crash left a partial line from ``start`` to the end of the file. No
        signed head covers it (the head is written only after a whole batch is on disk), so it
        is cut off, and the fields of an ``audit_torn_tail`` entry saying how many bytes with
        which SHA-256 are returned: the chain verifies again and the crash is on record. None
        (the line is kept) when audit.head names a seq beyond ``last_seq``: then the cut is in
        what the node signed, and verify must keep naming it."""
        head = _read(self.head_path)
        head_seq = 0 if head is None else unverified_head_seq(head)
        if head_seq is None or head_seq > last_seq:
            return None
        size = os.fstat(fd).st_size
        torn = os.pread(fd, size - start, start)
        os.ftruncate(fd, start)
        return {"bytes": len(torn), "sha256": hashlib.sha256(torn).hexdigest()}

    def _write_head(self, seq: int, hash_: str, at: str) -> None:
        data = head_bytes(sign_head(self.key, seq, hash_, at))
        aside = self.head_path.with_name(HEAD_FILE + ".new")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(aside, self.head_path)
        dir_fd = os.open(self.data_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextmanager
def _locked(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # releases the lock


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _last_entry(fd: int, path: Path) -> tuple[int, str, int | None]:
    """(seq, hash) of the last entry in the file (0 and GENESIS for an empty one) and, when the
    file ends in a torn line (a crash mid-write), the offset where that line starts (the end of
    the file when only the newline of a whole entry is missing)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0, GENESIS, None
    start = max(0, size - 2 * MAX_ENTRY_BYTES)
    tail = os.pread(fd, size - start, start)
    if start == 0 and b"\n" not in tail and parse_entry(tail) is None:
        return 0, GENESIS, 0  # the first write was cut: nothing but a torn line
    torn: int | None = None
    if not tail.endswith(b"\n"):
        torn = start + tail.rfind(b"\n") + 1
        if parse_entry(tail[torn - start :]) is not None:
            torn = size  # a whole entry without its newline: nothing to cut
    lines = tail.split(b"\n")
    if start > 0:
        lines = lines[1:]  # the first may be the end of a longer line
    for line in reversed(lines):
        entry = parse_entry(line) if line else None
        if entry is not None:
            return entry.seq, entry.hash, torn
    raise AuditError(f"{path} ends in damaged entries: run `sonet-node audit verify` and restore it from a backup")


def record(data_dir_or_log: Path | str | AuditLog, kind: str, **fields: Any) -> int:
    """Append one operator action (``kind``, e.g. "invite_created", with its fields) to the
    audit log of a data directory (its node.key signs the head) or of an open AuditLog; its seq.
    Fields are names, fingerprints, hash prefixes and counts: never a secret."""
    log = data_dir_or_log if isinstance(data_dir_or_log, AuditLog) else AuditLog(Path(data_dir_or_log), load_node_key(Path(data_dir_or_log)))
    try:
        return log.append([(kind, fields)])
    except AuditError as exc:
        # the callers record an action after it is done: say so, or the operator would think
        # it failed and do it again
        raise AuditError(f"the change was made, but its audit entry ({kind}) was not written: {exc}") from None


def _read(path: Path) -> bytes | None:
    """audit.head's bytes, at most _MAX_HEAD_BYTES and one more (a larger file is no head the
    node wrote, and is not read whole)."""
    try:
        with open(path, "rb") as f:
            return f.read(_MAX_HEAD_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc.strerror or exc}") from None


#: what a line longer than any entry is handed on as (no entry parses from it)
_OVERLONG = b"(a line longer than any audit entry)\n"


def _lines(path: Path) -> Iterator[bytes]:
    """The lines of ``path`` with their newlines (none when it does not exist), streamed; a
    line longer than any entry can be is not read into memory (an edited log may hold one of
    any size) but handed on as ``_OVERLONG``, which verify names as edited."""
    try:
        with open(path, "rb") as f:
            while line := f.readline(MAX_ENTRY_BYTES + 1):
                if len(line) <= MAX_ENTRY_BYTES:
                    yield line
                    continue
                while not line.endswith(b"\n") and (line := f.readline(_CHUNK)):
                    pass  # the rest of it
                yield _OVERLONG
    except FileNotFoundError:
        return
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc.strerror or exc}") from None


def iter_entries(data_dir: Path) -> Iterator[Entry]:
    """The entries of the log that parse, oldest first, streamed (show does not judge; verify does)."""
    for line in _lines(data_dir / LOG_FILE):
        entry = parse_entry(line.rstrip(b"\n"))
        if entry is not None:
            yield entry


def read_entries(data_dir: Path) -> list[Entry]:
    return list(iter_entries(data_dir))


def verify(data_dir: Path, key: VerifyKey) -> Verified:
    """Check the whole log and its signed head; Broken names the first bad entry."""
    return verify_log(lambda: _lines(data_dir / LOG_FILE), _read(data_dir / HEAD_FILE), key)


__all__ += ["Broken", "Verified"]
