"""The blob store: encrypted attachments on disk, one file per blob (not in SQLite).

Layout under ``<data dir>/blobs/``: ``<id>.meta`` (JSON: owner account, declared size and
SHA-256, created and expiry times; written to a temporary name, fsynced and renamed before
``BlobCreated`` is sent), ``<id>.part`` while it is uploaded (appended to; each chunk fsynced
before ``BlobStored`` says it is there, so what the node acknowledged survives a crash), and
``<id>.blob`` once complete (renamed from the part after its SHA-256 matched the declared one,
the directory fsynced). After a restart the size of a part is what the node holds: the device
asks (``BlobStatus``) and goes on from there; bytes a crash left unacknowledged at its end are
either right (a process crash keeps the page cache) or caught by the digest at completion.

The node never holds a decryptable byte: a blob is ciphertext (core/crypto/stream.py) whose key
travels only inside the end-to-end-encrypted message. Anyone registered on this node who knows
a blob's id (16 random bytes, a capability) may download it; only its owner account writes it.

Quotas per account (bytes declared at creation, and count), the size limit and the retention
come from node.toml ``[blobs]`` (node/blob_settings.py); ``purge(now)`` deletes what is past its
expiry, uploaded or not: its retention, or the closer time its owner set with ``expire`` (a
disappearing message's expiry; a delete for everyone deletes it at once). The disk reserve of ``[storage]`` is kept free too: checked at creation and before each chunk is written. File I/O runs in
worker threads; one lock per blob orders its writes.
"""

from __future__ import annotations

import errno
import heapq
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from sonet.core.blob_api import BLOB_CHUNK_BYTES, BLOB_ID_LEN
from sonet.core.crypto.stream import Sha256Stream

from .blob_settings import BlobSettings
from .client_checks import RequestError

__all__ = ["BlobStore", "BlobInfo", "BLOBS_DIR", "fsync_dir"]

BLOBS_DIR = "blobs"
_READ = 1024 * 1024


@dataclass(kw_only=True)
class BlobInfo:
    id: bytes
    account: str
    size: int
    sha256: bytes
    created_at: int
    expires: int
    #: bytes durably held (== size once complete)
    stored: int = 0
    complete: bool = False


class BlobStore:
    def __init__(self, root: Path, settings: BlobSettings, *, rng: Callable[[int], bytes], reserve_bytes: int = 0) -> None:
        self.root = root
        self.settings = settings
        self._rng = rng
        self._reserve = reserve_bytes
        self._blobs: dict[bytes, BlobInfo] = {}
        # kept with _blobs (_add, _forget), so that a create, an expire and the purge loop touch
        # no other blob: scanning every blob per request took ~9 ms at 100,000 blobs
        #: (bytes declared, blobs) per account
        self._usage: dict[str, tuple[int, int]] = {}
        #: (expires, id) of every blob, and the stale entries an expire() or a drop left behind
        #: (skipped; the heap is rebuilt when they outnumber the blobs)
        self._expiries: list[tuple[int, bytes]] = []
        self._locks: dict[bytes, trio.Lock] = {}
        self._expiry_changed = trio.Event()

    @classmethod
    async def open(cls, data_dir: Path, settings: BlobSettings, *, rng: Callable[[int], bytes], reserve_bytes: int = 0) -> "BlobStore":
        store = cls(data_dir / BLOBS_DIR, settings, rng=rng, reserve_bytes=reserve_bytes)
        await trio.to_thread.run_sync(store._load)
        return store

    # Reading the directory at start ---------------------------------------------------------

    def _load(self) -> None:
        self.root.mkdir(mode=0o700, exist_ok=True)
        for meta in self.root.glob("*.meta"):
            try:
                info = _read_meta(meta)
            except (OSError, ValueError, KeyError, TypeError):
                meta.unlink(missing_ok=True)  # a damaged record: its blob cannot be served
                continue
            done, part = self._path(info.id, ".blob"), self._path(info.id, ".part")
            if done.exists():
                info.stored, info.complete = info.size, True
            elif part.exists():
                info.stored = min(part.stat().st_size, info.size)
            self._add(info)
        known = {info.id.hex() for info in self._blobs.values()}
        for leftover in self.root.iterdir():  # a part or blob whose record is gone, temp files
            if leftover.suffix in (".part", ".blob", ".tmp") and (leftover.suffix == ".tmp" or leftover.stem not in known):
                leftover.unlink(missing_ok=True)

    def _path(self, blob: bytes, suffix: str) -> Path:
        return self.root / f"{blob.hex()}{suffix}"

    # Accounting -------------------------------------------------------------------------------

    def usage(self, account: str) -> tuple[int, int]:
        """(bytes declared, blobs) the account holds."""
        return self._usage.get(account, (0, 0))

    def _add(self, info: BlobInfo) -> None:
        self._blobs[info.id] = info
        used, count = self.usage(info.account)
        self._usage[info.account] = (used + info.size, count + 1)
        heapq.heappush(self._expiries, (info.expires, info.id))

    def _forget(self, blob: bytes) -> None:
        info = self._blobs.pop(blob, None)
        if info is None:
            return
        used, count = self.usage(info.account)
        if count > 1:
            self._usage[info.account] = (used - info.size, count - 1)
        else:
            del self._usage[info.account]
        self._compact_expiries()  # its heap entry is stale now

    def _compact_expiries(self) -> None:
        """Rebuild the expiry heap once its stale entries (of gone blobs, of earlier expiries)
        outnumber the blobs: created and deleted at once, they would stay until their retention."""
        if len(self._expiries) > 2 * len(self._blobs) + 64:
            self._expiries = [(b.expires, b.id) for b in self._blobs.values()]
            heapq.heapify(self._expiries)

    def get(self, blob: bytes) -> BlobInfo | None:
        return self._blobs.get(blob)

    # Upload -------------------------------------------------------------------------------------

    async def create(self, account: str, size: int, sha256: bytes, *, now: int) -> BlobInfo:
        s = self.settings
        if size > s.max_blob_bytes:
            raise RequestError("blob_too_large", f"a blob is at most {s.max_blob_bytes} bytes here ({s.max_file_bytes} bytes of file)")
        used, count = self.usage(account)
        if count + 1 > s.account_max_blobs or used + size > s.account_max_bytes:
            raise RequestError(
                "blob_quota",
                f"this account holds {count} blobs of {used} bytes; the node keeps at most {s.account_max_blobs} blobs and "
                f"{s.account_max_bytes} bytes per account (they expire {s.retention_days} days after upload)",
            )  # fmt: skip
        blob = self._rng(BLOB_ID_LEN)
        while blob in self._blobs:
            blob = self._rng(BLOB_ID_LEN)
        info = BlobInfo(id=blob, account=account, size=size, sha256=sha256, created_at=now, expires=now + s.retention_ms)
        self._add(info)  # counted from now on: a concurrent create sees it in the quota
        try:
            if not await trio.to_thread.run_sync(self._has_room, size):
                raise RequestError("disk_full", "the node's disk is too full for this blob; try again later")
            await self._io(self._write_meta, info)
        except BaseException:
            self._forget(blob)
            await trio.to_thread.run_sync(self._remove_files, blob)
            raise
        return info

    def _write_meta(self, info: BlobInfo) -> None:
        self._write_record(info)
        with open(self._path(info.id, ".part"), "wb") as f:
            os.fsync(f.fileno())
        fsync_dir(self.root)

    def _write_record(self, info: BlobInfo) -> None:
        record = {
            "account": info.account, "size": info.size, "sha256": info.sha256.hex(), "created_at": info.created_at, "expires": info.expires,
        }  # fmt: skip
        path, tmp = self._path(info.id, ".meta"), self._path(info.id, ".tmp")
        with open(tmp, "wb") as f:
            f.write(json.dumps(record).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def owned(self, account: str, blob: bytes) -> BlobInfo:
        """The blob ``account`` writes, or blob_unknown (another's is as good as unknown)."""
        info = self._blobs.get(blob)
        if info is None or info.account != account:
            raise RequestError("blob_unknown", f"no blob {blob.hex()} of this account here (expired, or never created)")
        return info

    async def put(self, account: str, blob: bytes, offset: int, data: bytes) -> BlobInfo:
        """Append ``data`` at ``offset`` (what the node holds); durable when this returns. The
        chunk that completes the blob checks its digest: a mismatch drops the blob."""
        async with self._lock(blob):
            info = self.owned(account, blob)
            if info.complete:
                if offset + len(data) <= info.size:
                    return info  # sent again after a lost answer: it is all here
                raise RequestError("blob_offset", f"blob {blob.hex()} is complete ({info.size} bytes)")
            if offset != info.stored:
                raise RequestError("blob_offset", f"the node holds {info.stored} bytes of blob {blob.hex()}; send from there")
            if offset + len(data) > info.size:
                raise RequestError("blob_offset", f"blob {blob.hex()} is {info.size} bytes; this chunk goes past its end")
            await self._io(self._append, info, offset, data)
            info.stored = offset + len(data)
            if info.stored == info.size:
                await self._complete(info)
            return info

    def _has_room(self, nbytes: int) -> bool:
        """Whether ``nbytes`` more leave the disk reserve free (a statvfs: in a worker thread)."""
        return shutil.disk_usage(self.root).free - nbytes >= self._reserve

    def _append(self, info: BlobInfo, offset: int, data: bytes) -> None:
        # each chunk, not only the create: other uploads and the database use the disk meanwhile,
        # and the reserve is what keeps acks, deletes and expiry working (disk_full; resumable)
        if not self._has_room(len(data)):
            raise OSError(errno.ENOSPC, "the disk reserve is reached")
        fd = os.open(self._path(info.id, ".part"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            try:
                os.pwrite(fd, data, offset)
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, offset)  # nothing half-written stays counted
                raise
        finally:
            os.close(fd)

    async def _complete(self, info: BlobInfo) -> None:
        part = self._path(info.id, ".part")
        digest = await trio.to_thread.run_sync(_sha256_of, part)
        if digest != info.sha256:
            await self._io(self._remove_files, info.id)
            self._forget(info.id)
            raise RequestError("blob_corrupt", f"blob {info.id.hex()} does not match its declared SHA-256: dropped, upload it again")
        await self._io(self._finish, info.id)
        info.complete = True

    def _finish(self, blob: bytes) -> None:
        os.replace(self._path(blob, ".part"), self._path(blob, ".blob"))
        fsync_dir(self.root)

    # Download ------------------------------------------------------------------------------------

    async def read(self, blob: bytes, offset: int) -> tuple[BlobInfo, bytes]:
        info = self._blobs.get(blob)
        if info is None:
            raise RequestError("blob_unknown", f"no blob {blob.hex()} here (expired, or never created)")
        if not info.complete:
            raise RequestError("blob_incomplete", f"blob {blob.hex()} is still being uploaded ({info.stored} of {info.size} bytes)")
        if offset >= info.size:
            raise RequestError("bad_input", f"blob {blob.hex()} is {info.size} bytes: nothing at offset {offset}")
        path = self._path(blob, ".blob")
        length = min(BLOB_CHUNK_BYTES, info.size - offset)
        try:
            data = await trio.to_thread.run_sync(_pread, path, offset, length)
        except FileNotFoundError:  # purged meanwhile
            raise RequestError("blob_unknown", f"no blob {blob.hex()} here (expired)") from None
        if len(data) != length:
            raise RequestError("store_error", f"blob {blob.hex()} is shorter on disk than recorded")
        return info, data

    # Expiry and retention ----------------------------------------------------------------------------

    async def expire(self, account: str, blob: bytes, expires: int, *, now: int) -> int:
        """Bring the expiry of ``account``'s blob closer to ``expires`` (a disappearing message's
        time; past: delete it now, as a delete for everyone asks). When it goes now (0: gone)."""
        async with self._lock(blob):
            info = self.owned(account, blob)
            if expires >= info.expires:
                return info.expires  # never later than it was
            if expires <= now:
                await self._drop(info)
                return 0
            info.expires = expires
            heapq.heappush(self._expiries, (expires, blob))
            self._compact_expiries()
            await self._io(self._write_record, info)  # a restart keeps the earlier time
        self._expiry_changed.set()
        return expires

    def next_expiry(self) -> int | None:
        """The earliest time a blob goes (ms), or None when there are none."""
        heap = self._expiries
        while heap and not self._current(*heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _current(self, expires: int, blob: bytes) -> bool:
        """Whether a heap entry is the blob's expiry now (not one it had, nor a gone blob's)."""
        info = self._blobs.get(blob)
        return info is not None and info.expires == expires

    async def expiry_changed(self) -> None:
        """Return once an expiry was brought closer (the purge loop then looks again)."""
        await self._expiry_changed.wait()
        self._expiry_changed = trio.Event()

    async def purge(self, now: int) -> int:
        """Delete every blob whose time came (its retention, or a closer expiry); how many."""
        expired = []
        while self._expiries and self._expiries[0][0] <= now:
            expires, blob = heapq.heappop(self._expiries)
            if self._current(expires, blob):
                expired.append(self._blobs[blob])
        for done, info in enumerate(expired):
            try:
                async with self._lock(info.id):
                    await self._drop(info)
            except BaseException:  # this one (if still here) and the rest are due at the next round
                for rest in expired[done:]:
                    heapq.heappush(self._expiries, (rest.expires, rest.id))
                raise
        return len(expired)

    async def _drop(self, info: BlobInfo) -> None:
        """Forget the blob and delete its files (its lock held)."""
        self._forget(info.id)
        self._locks.pop(info.id, None)  # a later request makes a new one; the blob is unknown then
        await self._io(self._remove_files, info.id)

    def _remove_files(self, blob: bytes) -> None:
        for suffix in (".meta", ".part", ".blob"):
            self._path(blob, suffix).unlink(missing_ok=True)

    # Helpers ----------------------------------------------------------------------------------------

    def _lock(self, blob: bytes) -> trio.Lock:
        return self._locks.setdefault(blob, trio.Lock())

    async def _io(self, fn: Callable[..., None], *args: object) -> None:
        try:
            await trio.to_thread.run_sync(fn, *args)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise RequestError("disk_full", "the node's disk is full; try again later") from None
            raise RequestError("store_error", f"the node could not store the blob: {exc.strerror or exc}") from None


def _read_meta(path: Path) -> BlobInfo:
    record = json.loads(path.read_text())
    blob = bytes.fromhex(path.stem)
    if len(blob) != BLOB_ID_LEN:
        raise ValueError("not a blob record")
    return BlobInfo(
        id=blob, account=str(record["account"]), size=int(record["size"]), sha256=bytes.fromhex(record["sha256"]),
        created_at=int(record["created_at"]), expires=int(record["expires"]),
    )  # fmt: skip


def _sha256_of(path: Path) -> bytes:
    h = Sha256Stream()
    with open(path, "rb") as f:
        while chunk := f.read(_READ):
            h.update(chunk)
    return h.digest()


def _pread(path: Path, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a file created, renamed or removed in it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
