"""Post-handshake framing: every WebSocket message is one AEAD record (ARCHITECTURE §4).

The nonce is the per-direction IV XOR a 64-bit record counter that both sides keep, so the
counter never travels: a replayed, reordered, dropped or modified record fails to decrypt and
breaks the channel for good. Records carry exactly one wire frame each.
"""

from __future__ import annotations

from typing import Any

from . import limits
from .crypto import Aead
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .handshake import NEED_DATA, SessionKeys
from .wire import Frame, FrameSet, decode_frame, encode_frame

__all__ = ["Channel", "NEED_DATA"]

_AAD = b"sonet-record-v1"


def _nonce(iv: bytes, counter: int) -> bytes:
    return (int.from_bytes(iv, "big") ^ counter).to_bytes(12, "big")


class Channel:
    """h11-style: :meth:`send` turns a frame into a record; :meth:`receive_data` takes a record;
    :meth:`next_event` yields the decoded frames. ``frames`` is the set of the channel's
    endpoint: a frame of another endpoint does not decode (a device channel cannot even decode
    a federation ``Push``)."""

    __slots__ = ("_send", "_recv", "_send_iv", "_recv_iv", "_send_n", "_recv_n", "_events", "_broken", "_last_word", "binding", "frames")

    def __init__(self, keys: SessionKeys, frames: FrameSet) -> None:
        self.frames = frames
        self._send = Aead(keys.send_key)
        self._recv = Aead(keys.recv_key)
        self._send_iv = keys.send_iv
        self._recv_iv = keys.recv_iv
        self._send_n = 0
        self._recv_n = 0
        self._events: list[Frame] = []
        self._broken = False
        #: set when the peer broke the channel: one last record may still tell it why
        self._last_word = False
        self.binding = keys.binding

    def send(self, frame: Frame) -> bytes:
        return self.seal(encode_frame(frame))

    def seal(self, plaintext: bytes) -> bytes:
        """Seal already-encoded frame bytes (lets callers encode once and fan out)."""
        self._check_usable()
        if self._send_n >= limits.MAX_CHANNEL_RECORDS:
            self._broken = True
            raise LocalProtocolError("channel record limit reached; reconnect")
        record = self._send.seal(_nonce(self._send_iv, self._send_n), plaintext, _AAD)
        self._send_n += 1
        return record

    def receive_data(self, record: bytes) -> None:
        self._check_usable()
        try:
            if type(record) is not bytes:
                raise RemoteProtocolError("records must be binary messages")
            if len(record) > limits.MAX_RECORD_BYTES:
                raise RemoteProtocolError("record exceeds the size limit")
            plaintext = self._recv.open(_nonce(self._recv_iv, self._recv_n), record, _AAD)
            self._recv_n += 1
            self._events.append(decode_frame(plaintext, self.frames))
        except ProtocolError:
            self._broken = True
            self._last_word = True
            raise

    def send_last(self, frame: Frame) -> bytes:
        """After a record from the peer failed (to decrypt or decode), seal one final frame,
        typically an error frame saying why the link closes. Only the receiving direction
        failed, so the sending keys and counter are intact; allowed once, and the channel
        stays broken for everything else."""
        if not self._last_word or self._send_n >= limits.MAX_CHANNEL_RECORDS:
            raise LocalProtocolError("channel is broken after an error; open a new one")
        self._last_word = False
        record = self._send.seal(_nonce(self._send_iv, self._send_n), encode_frame(frame), _AAD)
        self._send_n += 1
        return record

    def next_event(self) -> Any:
        return self._events.pop(0) if self._events else NEED_DATA

    def _check_usable(self) -> None:
        if self._broken:
            raise LocalProtocolError("channel is broken after an error; open a new one")
