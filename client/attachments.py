"""Encrypted attachments (issue 17 item 1): ``Device.send_file`` / ``group_send_file`` and
``Device.download`` (client/sdk.py) are these.

Sending: the file is encrypted on the device with a fresh random key (core/crypto/stream.py,
AES-256-GCM segments in the STREAM construction) and its ciphertext uploaded to the home node's
blob store (node/blobs.py) in 1 MiB chunks, each acknowledged once the node fsynced it; then a
``file`` message (core/content.py, core/attachment.py) carries the blob's place, the key and the
digests to the recipient's devices (1:1, with a sync copy for this account's other devices; in a
group as an application message). The node holds only ciphertext; the key travels only in the
end-to-end-encrypted message.

Resuming: a cut connection is reconnected (``RETRIES`` times) and the upload goes on from what
the node says it holds (``BlobStatus``). A command that stops mid-upload leaves its state on the
device (``upload/<path>``, vault-sealed: the key, digests and blob id, checked against the
file's size and modification time), so sending the same file again resumes the same upload.
Encryption is deterministic for one key, so the bytes sent again are the same ones.

Downloading: the ciphertext goes to ``.<blob id>.sonet-download`` in the output folder (kept
when cut: the next ``download`` goes on from its size), is checked against the message's
ciphertext SHA-256, then decrypted to a temporary file whose plaintext SHA-256 must match too;
only then does it get its name (never overwriting a file: ``name (1).ext``...). Nothing
readable is left when a check fails (code ``file_corrupt``).

A file on another node is downloaded through the home node all the same: it fetches each
chunk from that node over the federation link (through relays too) and passes it on
(node/client_blobs.py); the checks here are the same.

While the conversation's timer is on, the blob's expiry on the node is the message's; a delete
for everyone of the message deletes it (client/blob_expiry.py).

A voice note is a file message whose ``file`` map carries its length (``voice_ms``: ``sonet send
--file PATH --voice SECONDS``); recv and history say so. An image's message carries a small
thumbnail the device made (client/thumbnails.py: upright, metadata stripped; none when the
file is not an image it can read within its caps, and the file goes all the same); ``sonet
download --thumbnail`` saves it (``save_thumbnail``), checked to be the JPEG it claims.

When the recipient's keys cannot be fetched now (their node is down...), the file message waits
on the device like a text (client/pending.py: the same caps and order; its blob is on the home
node already) and goes by itself with the next command that connects.
"""

from __future__ import annotations

import mimetypes
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from sonet.core import canonical, limits
from sonet.core.address import parse_address
from sonet.core.attachment import MAX_VOICE_MS, FileRef, file_name_problem, media_type_of
from sonet.core.blob_api import BLOB_CHUNK_BYTES, MAX_BLOB_BYTES, BlobChunk, BlobCreate, BlobCreated, BlobGet, BlobPut, BlobStatus, BlobStored
from sonet.core.content import Content
from sonet.core.crypto import CryptoMode
from sonet.core.crypto.stream import FILE_KEY_LEN, Sha256Stream, StreamOpener, StreamSealer, sealed_size
from sonet.core.errors import DecryptError, LocalProtocolError, ProtocolError, RemoteProtocolError

from .blob_expiry import expire_blob
from .connection import ConnectError, Connection, NodeError
from .crypto_modes import check_requested
from .file_fields import file_ref_of
from .pending import PendingFull, not_behind_waiting, waits
from .replies import expect_reply
from .state_history import content_fields
from .thumbnails import make_thumbnail, thumbnail_problem
from .timer import timed

if TYPE_CHECKING:
    from .sdk import Device

__all__ = ["Attachments", "FileSendResult", "Progress", "Say", "RETRIES"]

#: (bytes done, bytes in all) as a transfer goes
Progress = Callable[[int, int], None]
#: one line on what a transfer is doing while no bytes move (the home node is away: it waits)
Say = Callable[[str], None]
#: how many times a cut connection is dialled again within one upload or download: pauses of
#: 0.2 s doubling to 3 s, about 27 s in all, so a node that restarts (a busy machine takes a
#: while) is waited for; after that the command fails and running it again resumes
RETRIES = 12


def _pause_s(attempt: int) -> float:
    return min(0.2 * 2**attempt, 3.0)


def _waiting_line(node: str, exc: ConnectError) -> str:
    """Said once when a run of pauses begins: the transfer is not stuck, the node is away."""
    return f"waiting for {node} ({exc}): dialling it again for up to {sum(map(_pause_s, range(RETRIES))):.0f} s"
#: the longest a download waits for the node's "try again in N s" before asking again
MAX_RATE_WAIT_S = 30.0


def _retry_after_s(message: str) -> float:
    """The wait a ``rate_limited`` refusal names ("try again in 1.5 s"), 1 s if it names none."""
    found = re.search(r"try again in ([0-9]+(?:\.[0-9]+)?) s", message)
    return min(float(found.group(1)), MAX_RATE_WAIT_S) if found else 1.0


#: BlobPuts on their way at once: the link carries the next chunks while the node writes one
PUTS_IN_FLIGHT = 4
#: BlobGets on their way at once (a blob of another node: its node reads while this one passes on)
GETS_IN_FLIGHT = 4
_READ = 1024 * 1024
_PART = ".sonet-download"


@dataclass(frozen=True, kw_only=True)
class FileSendResult:
    id: bytes
    #: a contact's address, or a group's id (32 hex digits)
    conversation: str
    is_group: bool
    #: as a text's: 1:1 "accepted" or "sent"; a group's "ordered", "queued" or "pending"
    state: str
    name: str
    size: int
    sha256: bytes
    devices: int = 0
    accepted_by: str = ""
    code: str = ""
    message: str = ""
    #: a voice note's length (ms); None: another file
    voice_ms: int | None = None


def _noop(done: int, total: int) -> None:
    pass


def _silent(line: str) -> None:
    pass


class Attachments:
    def __init__(self, device: Device) -> None:
        self._device = device
        self._state = device.state

    # Sending -----------------------------------------------------------------------------

    async def send_file(
        self, recipient: str, path: Path, *, text: str = "", progress: Progress | None = None, voice_ms: int | None = None,
        say: Say | None = None, mode: CryptoMode | None = None,
    ) -> FileSendResult:
        to = parse_address(recipient)
        _check_caption(text)
        _check_voice(voice_ms)
        device, state = self._device, self._state
        if mode is not None:  # before the upload: a mode refused costs no transfer
            check_requested(state, state.profile().mode, mode)
        ref = replace(await self._upload(path, progress or _noop, say or _silent), voice_ms=voice_ms)
        profile = state.profile()
        content = Content.make_file(id=device._rng(limits.CONTENT_ID_LEN), sent_at=device._clock(), file=ref, text=text)
        content = timed(state, str(to), content)  # the conversation's timer, if on
        fields = content_fields(content)
        devices, home, waiting = 0, "", None
        async with device._connect(profile) as conn:  # which first sends what waits
            home = conn.welcome.node
            if content.expires is not None:  # the blob goes with the message (client/blob_expiry.py)
                await expire_blob(conn, ref, content.expires)
            # behind what waits to them (client/pending.py): in the order written
            waiting = state.pending_reason(str(to))
            if waiting is not None and mode is not None:  # it would go out in the default mode
                raise not_behind_waiting(str(to), mode.value, waiting)
            if waiting is None:
                try:
                    devices, _own = await device._send_content_now(conn, profile, to, content, mode=mode)
                except (NodeError, ProtocolError) as exc:
                    if not waits(exc) or mode is not None:  # what waits goes out in the default mode, as texts do
                        raise
                    waiting = (exc.code, str(exc))
        with state.transaction():
            if waiting is not None:  # the blob is on the node: the message waits, as a text would
                code, message = waiting
                try:
                    state.add_pending(content.id, str(to), text, created=content.sent_at, code=code, message=message, kind=content.type,
                                      fields=fields)  # fmt: skip
                except PendingFull as exc:
                    raise LocalProtocolError(f"not sent: {message}; nor kept to send later: {exc}", code="pending_full") from None
                sent_state = "pending"
            else:
                sent_state = "accepted" if to.node == home else "sent"
                state.record_sent(content.id, str(to), content.sent_at, devices, state=sent_state, kind=content.type, fields=fields)
            self._forget_upload(path)
        code, message = waiting or ("", "")
        return FileSendResult(
            id=content.id, conversation=str(to), is_group=False, state=sent_state, name=ref.name, size=ref.size, sha256=ref.sha256,
            devices=devices, accepted_by=home, code=code, message=message, voice_ms=ref.voice_ms,
        )  # fmt: skip

    async def group_send_file(
        self, group: str, path: Path, *, text: str = "", progress: Progress | None = None, voice_ms: int | None = None,
        say: Say | None = None,
    ) -> FileSendResult:
        _check_caption(text)
        _check_voice(voice_ms)
        groups = self._device._groups()
        groups.find(group)  # an unknown group is refused before anything is uploaded
        ref = replace(await self._upload(path, progress or _noop, say or _silent), voice_ms=voice_ms)
        content = Content.make_file(id=self._device._rng(limits.CONTENT_ID_LEN), sent_at=self._device._clock(), file=ref, text=text)
        result = await groups.send_content(group, content)
        self._forget_upload(path)
        expires = self._state.message_expiry(content.id)  # a group's timer (noted as it was sent)
        if expires is not None:  # the blob goes with the message (client/blob_expiry.py); best effort once it went
            try:
                async with self._device._connect(self._state.profile()) as conn:
                    await expire_blob(conn, ref, expires)
            except (ConnectError, NodeError, ProtocolError):
                pass  # the blob stays until its retention on the node; the message itself still goes at its time
        return FileSendResult(
            id=content.id, conversation=result.group, is_group=True, state=result.state, name=ref.name, size=ref.size, sha256=ref.sha256,
            code=result.code, message=result.message, voice_ms=ref.voice_ms,
        )  # fmt: skip

    async def _upload(self, path: Path, progress: Progress, say: Say) -> FileRef:
        """Encrypt and upload ``path`` (resuming an upload of it that stopped); its FileRef."""
        path = path.expanduser().resolve()
        name = path.name
        problem = file_name_problem(name)
        if problem is not None:
            raise LocalProtocolError(f"cannot send {path}: {problem}", code="bad_input")
        try:
            st = path.stat()
        except OSError as exc:
            raise LocalProtocolError(f"cannot read {path}: {exc.strerror or exc}", code="bad_input") from None
        if not path.is_file():
            raise LocalProtocolError(f"{path} is not a file", code="bad_input")
        if sealed_size(st.st_size) > MAX_BLOB_BYTES:
            raise LocalProtocolError(f"{path} is too large to send", code="blob_too_large")
        media_type = media_type_of(mimetypes.guess_type(name)[0] or "")
        upload = self._resumable(path, st)
        if upload is None:
            key = self._device._rng(FILE_KEY_LEN)
            plain, sealed = await trio.to_thread.run_sync(_digests, path, key)
            upload = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "key": key, "sha256": plain, "sealed_sha256": sealed, "blob": b"", "node": ""}
            self._save_upload(path, upload)
        total = sealed_size(upload["size"])
        profile = self._state.profile()
        away = False  # said so since the last connection
        for attempt in range(RETRIES + 1):
            try:
                async with self._device._connect(profile) as conn:
                    away = False
                    node = conn.welcome.node
                    stored = await self._where_to_start(conn, path, upload, node, total)
                    await self._send_chunks(conn, path, upload, stored, total, progress)
                    break
            except ConnectError as exc:
                if attempt == RETRIES:
                    raise
                if not away:
                    say(_waiting_line(parse_address(profile.address).node, exc))
                    away = True
                await trio.sleep(_pause_s(attempt))  # the link was cut: dial again, go on
            except NodeError as exc:
                # A chunk of the connection that was cut reached the node after this one asked how
                # much it holds, so the node holds more than we were told: ask again, go on from there.
                if exc.code != "blob_offset" or attempt == RETRIES:
                    raise
        thumbnail = await trio.to_thread.run_sync(make_thumbnail, path)  # None: not an image it reads (the file goes all the same)
        return FileRef(
            node=upload["node"], blob=upload["blob"], key=upload["key"], sha256=upload["sha256"], sealed_sha256=upload["sealed_sha256"],
            size=upload["size"], media_type=media_type, name=name, thumbnail=thumbnail,
        )  # fmt: skip

    async def _where_to_start(self, conn: Connection, path: Path, upload: dict, node: str, total: int) -> int:
        """How much of the blob the node holds (a new blob when it holds none of it)."""
        if upload["blob"] and upload["node"] == node:
            try:
                reply = expect_reply(await conn.request(lambda n: BlobStatus(request=n, blob=upload["blob"])), BlobStored)
                if reply.size == total:
                    return reply.stored
                # not the blob this upload made: a new one below
            except NodeError as exc:
                if exc.code != "blob_unknown":  # expired or dropped: upload it anew
                    raise
        created = await conn.request(lambda n: BlobCreate(request=n, size=total, sha256=upload["sealed_sha256"]))
        upload.update(blob=expect_reply(created, BlobCreated).blob, node=node)
        self._save_upload(path, upload)
        return 0

    async def _send_chunks(self, conn: Connection, path: Path, upload: dict, stored: int, total: int, progress: Progress) -> None:
        """Encrypt and send the blob from ``stored`` on, ``PUTS_IN_FLIGHT`` chunks on their way at
        once (the node takes them in order, each fsynced before its answer), each sent only
        after the one before it went out (its frame was built), so they arrive in order."""
        progress(stored, total)
        if stored >= total:
            return
        blob = upload["blob"]
        chunks = _sealed_chunks(path, upload["key"], skip=stored)
        window = trio.Semaphore(PUTS_IN_FLIGHT)
        held = {"stored": stored, "complete": False}  # what the node's answers say it holds

        async def put(offset: int, data: bytes, after: trio.Event, built: trio.Event) -> None:
            try:
                await after.wait()

                def frame(n: int) -> BlobPut:
                    built.set()  # being sent now: the next chunk may follow
                    return BlobPut(request=n, blob=blob, offset=offset, data=data)

                reply = expect_reply(await conn.request(frame), BlobStored)
                if reply.stored != offset + len(data):
                    raise RemoteProtocolError("the node acknowledged another length than it was sent", code="invalid")
                held["stored"] = max(held["stored"], reply.stored)
                held["complete"] = held["complete"] or reply.complete
                progress(held["stored"], total)
            finally:
                window.release()

        try:
            async with trio.open_nursery() as nursery:
                offset, previous = stored, trio.Event()
                previous.set()
                while offset < total:
                    data = await trio.to_thread.run_sync(next, chunks, b"")
                    if not data:
                        raise LocalProtocolError(f"{path} changed while it was being sent", code="bad_input")
                    await window.acquire()
                    built = trio.Event()
                    nursery.start_soon(put, offset, data, previous, built)
                    offset, previous = offset + len(data), built
        except BaseExceptionGroup as group:  # the first failure, as a sequential upload would raise it
            raise _first_failure(group) from None
        finally:
            chunks.close()
        if not held["complete"]:
            raise RemoteProtocolError("the node did not complete the blob after its last chunk", code="invalid")

    # The upload kept on the device ----------------------------------------------------------------

    def _key(self, path: Path) -> str:
        return f"upload/{path}"

    def _resumable(self, path: Path, st: os.stat_result) -> dict | None:
        raw = self._state.get(self._key(path))
        if raw is None:
            return None
        upload = canonical.loads(raw)
        if (upload.get("size"), upload.get("mtime_ns")) != (st.st_size, st.st_mtime_ns):
            self._forget_upload(path)  # the file changed: start over
            return None
        return dict(upload)

    def _save_upload(self, path: Path, upload: dict) -> None:
        self._state.put(self._key(path), canonical.dumps(upload))

    def _forget_upload(self, path: Path) -> None:
        self._state.delete(self._key(path.expanduser().resolve()))

    # Downloading -------------------------------------------------------------------------------------

    async def download(self, msg_id: bytes, out_dir: Path, *, progress: Progress | None = None, say: Say | None = None) -> Path:
        progress, say = progress or _noop, say or _silent
        ref = self.file_of(msg_id)
        profile = self._state.profile()
        out_dir = out_dir.expanduser()
        if not out_dir.is_dir():
            raise LocalProtocolError(f"{out_dir} is not a folder", code="bad_input")
        part = out_dir / f".{ref.blob.hex()}{_PART}"
        total = ref.sealed_size
        attempt, held, away = 0, -1, False
        while True:
            try:
                async with self._device._connect(profile) as conn:
                    away = False
                    await self._fetch(conn, ref, part, total, progress)
                    break
            except ConnectError as exc:
                if attempt == RETRIES:
                    raise
                if not away:
                    say(_waiting_line(parse_address(profile.address).node, exc))
                    away = True
                await trio.sleep(_pause_s(attempt))
                attempt += 1
            except NodeError as exc:
                # over the device's byte budget for files (a long run of downloads): the node says
                # when there is room again; what came is in the part file, and the rest follows.
                # A wait after which more came is not a retry: only one that brought nothing is.
                if exc.code != "rate_limited":
                    raise
                now_held = part.stat().st_size if part.exists() else 0
                if now_held <= held:
                    if attempt == RETRIES:
                        raise
                    attempt += 1
                held = now_held
                await trio.sleep(_retry_after_s(str(exc)))
        return await trio.to_thread.run_sync(_open_and_save, ref, part, out_dir)

    async def save_thumbnail(self, msg_id: bytes, out_dir: Path) -> Path:
        """Save the thumbnail of file message ``msg_id`` as ``NAME.thumbnail.jpg`` in ``out_dir``
        (never overwriting); nothing is fetched. Refused (``not_a_file``) when it has none, and
        (``file_corrupt``, nothing saved) when it is not the JPEG of the size its message says."""
        ref = self.file_of(msg_id)
        out_dir = out_dir.expanduser()
        if not out_dir.is_dir():
            raise LocalProtocolError(f"{out_dir} is not a folder", code="bad_input")
        thumbnail = ref.thumbnail
        if thumbnail is None:
            raise LocalProtocolError(f"message {msg_id.hex()} has no thumbnail (only images sent from a device that could read them do)", code="not_a_file")
        problem = await trio.to_thread.run_sync(thumbnail_problem, thumbnail)
        if problem is not None:
            raise LocalProtocolError(f"{problem}: nothing was saved", code="file_corrupt")

        def write() -> Path:
            tmp = out_dir / f".{ref.blob.hex()}.sonet-thumbnail"
            try:
                with open(tmp, "wb") as f:
                    f.write(thumbnail.data)
                    f.flush()
                    os.fsync(f.fileno())
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            stem = ref.name.rpartition(".")[0] if "." in ref.name.lstrip(".") else ref.name
            if len(stem.encode()) > 200:  # room for " (n).thumbnail.jpg" within a file system's 255
                stem = "file"
            return _free_name(out_dir, f"{stem}.thumbnail.jpg", tmp)

        return await trio.to_thread.run_sync(write)

    def file_of(self, msg_id: bytes) -> FileRef:
        me = self._state.profile().address
        found = self._state.find_messages(msg_id, me)
        if not found:
            raise LocalProtocolError(f"no message {msg_id.hex()} on this device (`sonet history` lists the ids)", code="unknown_message")
        kept = next((k for k in found if k.type == "file"), None)
        if kept is None:
            raise LocalProtocolError(f"message {msg_id.hex()} is a {found[0].type}, not a file", code="not_a_file")
        fields = self._state.message_text(kept)
        if "file" not in fields:
            raise LocalProtocolError(f"message {msg_id.hex()} was deleted: its file is gone from this device", code="not_a_file")
        return file_ref_of(fields)

    async def _fetch(self, conn: Connection, ref: FileRef, part: Path, total: int, progress: Progress) -> None:
        """Append the blob's ciphertext to ``part`` from its size on: ``GETS_IN_FLIGHT`` chunks
        asked at once, written in order (a cut leaves a part that is a prefix of the blob)."""
        have = part.stat().st_size if part.exists() else 0
        if have > total:  # not this blob's: start over
            part.unlink()
            have = 0
        progress(have, total)
        offsets = range(have, total, BLOB_CHUNK_BYTES)
        chunks: dict[int, bytes] = {}
        arrived = {offset: trio.Event() for offset in offsets}
        window = trio.Semaphore(GETS_IN_FLIGHT)

        async def get(offset: int) -> None:
            reply = expect_reply(await conn.request(lambda n: BlobGet(request=n, node=ref.node, blob=ref.blob, offset=offset)), BlobChunk)
            if (reply.blob, reply.offset, reply.total, len(reply.data)) != (ref.blob, offset, total, min(BLOB_CHUNK_BYTES, total - offset)):
                raise RemoteProtocolError("the node sent another part of the blob than asked", code="invalid")
            chunks[offset] = reply.data
            arrived[offset].set()

        async def ask(nursery: trio.Nursery) -> None:
            for offset in offsets:
                await window.acquire()
                nursery.start_soon(get, offset)

        try:
            with open(part, "ab") as f:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(ask, nursery)
                    for offset in offsets:
                        await arrived[offset].wait()
                        data = chunks.pop(offset)
                        await trio.to_thread.run_sync(f.write, data)
                        window.release()
                        have += len(data)
                        progress(have, total)
                f.flush()
                os.fsync(f.fileno())
        except BaseExceptionGroup as group:  # the first failure, as a sequential download would raise it
            raise _first_failure(group) from None


def _first_failure(group: BaseExceptionGroup) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _check_voice(voice_ms: int | None) -> None:
    """A voice note's length is 1 ms..MAX_VOICE_MS (refused before anything is uploaded)."""
    if voice_ms is not None and (type(voice_ms) is not int or not 0 < voice_ms <= MAX_VOICE_MS):
        raise LocalProtocolError(f"a voice note lasts more than 0 and at most {MAX_VOICE_MS // 1000} seconds", code="bad_input")


def _check_caption(text: str) -> None:
    if len(text.encode()) > limits.MAX_TEXT_LEN:
        raise LocalProtocolError(f"the caption is longer than {limits.MAX_TEXT_LEN} bytes (UTF-8)", code="bad_input")


def _digests(path: Path, key: bytes) -> tuple[bytes, bytes]:
    """(SHA-256 of the file, SHA-256 of its ciphertext under ``key``)."""
    plain, sealed, sealer = Sha256Stream(), Sha256Stream(), StreamSealer(key)
    with open(path, "rb") as f:
        while data := f.read(_READ):
            plain.update(data)
            sealed.update(sealer.update(data))
    sealed.update(sealer.finish())
    return plain.digest(), sealed.digest()


def _sealed_chunks(path: Path, key: bytes, *, skip: int):  # noqa: ANN202 - a generator of bytes
    """The ciphertext of ``path`` from byte ``skip`` on, in BLOB_CHUNK_BYTES pieces."""
    sealer, buffer, position = StreamSealer(key), bytearray(), 0
    with open(path, "rb") as f:
        done = False
        while not done:
            data = f.read(_READ)
            sealed = sealer.update(data) if data else sealer.finish()
            done = not data
            if position + len(sealed) <= skip:
                position += len(sealed)
                continue
            buffer += sealed[max(0, skip - position) :]
            position += len(sealed)
            while len(buffer) >= BLOB_CHUNK_BYTES or (done and buffer):
                yield bytes(buffer[:BLOB_CHUNK_BYTES])
                del buffer[:BLOB_CHUNK_BYTES]


def _open_and_save(ref: FileRef, part: Path, out_dir: Path) -> Path:
    """Check the ciphertext, decrypt it, check the plaintext, and give it its name."""
    sealed_hash = Sha256Stream()
    with open(part, "rb") as f:
        while data := f.read(_READ):
            sealed_hash.update(data)
    if sealed_hash.digest() != ref.sealed_sha256:
        part.unlink(missing_ok=True)
        raise LocalProtocolError("the downloaded file does not match its message's digest: deleted, download it again", code="file_corrupt")
    tmp = out_dir / f".{ref.blob.hex()}.sonet-tmp"
    opener, plain = StreamOpener(ref.key), Sha256Stream()
    try:
        with open(part, "rb") as src, open(tmp, "wb") as dst:
            while data := src.read(_READ):
                out = opener.update(data)
                plain.update(out)
                dst.write(out)
            out = opener.finish()
            plain.update(out)
            dst.write(out)
            dst.flush()
            os.fsync(dst.fileno())
        if plain.digest() != ref.sha256 or plain.size != ref.size:
            raise DecryptError()
    except DecryptError:
        tmp.unlink(missing_ok=True)
        part.unlink(missing_ok=True)
        raise LocalProtocolError("the downloaded file does not decrypt or does not match its digest: nothing was saved", code="file_corrupt") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    final = _free_name(out_dir, ref.name, tmp)
    part.unlink(missing_ok=True)
    return final


def _free_name(out_dir: Path, name: str, tmp: Path) -> Path:
    """Link ``tmp`` to ``name`` in ``out_dir`` without overwriting anything: ``stem (n).ext``."""
    stem, dot, ext = name.rpartition(".") if "." in name.lstrip(".") else (name, "", "")
    for n in range(0, 10_000):
        candidate = out_dir / (name if n == 0 else f"{stem} ({n}){dot}{ext}")
        try:
            os.link(tmp, candidate)
        except FileExistsError:
            continue
        tmp.unlink()
        return candidate
    tmp.unlink()
    raise LocalProtocolError(f"no free name for {name} in {out_dir}", code="bad_input")
