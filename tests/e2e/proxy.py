"""A TCP proxy for fault injection between two real nodes.

``TcpProxy(target_port)`` listens on a free loopback port and forwards every connection to
``127.0.0.1:target_port``. Per direction a reader thread splits the stream into units — the
HTTP upgrade head, then whole WebSocket frames (RFC 6455 §5.2) — and a writer thread sends
them on, so a fault can act on exactly one secure-channel record. "up" is towards the target,
"down" back to the dialing side.

- ``drop()`` resets every open connection (RST: both sides see the link die mid-stream);
- ``stall()`` keeps the connections open but stops moving bytes until ``resume()``;
- ``refuse(True)`` closes new connections at once;
- ``delay(fixed_s, jitter_s)`` holds every unit ``fixed_s + uniform(0, jitter_s)`` (order
  kept; ``delay(0, 0)`` ends it);
- ``duplicate_next()``: the next data frame sent up is written twice (a replayed record);
- ``blackhole(True)``: new connections are accepted, then neither answered nor closed (until
  ``drop()``), like a middlebox that black-holes the route after the TCP handshake;
- ``cut_next(direction, mid_frame=...)``: the next frame in that direction is the last thing
  the proxy passes on that connection; with ``mid_frame`` only its first half goes, followed
  by a FIN (``shutdown(SHUT_WR)``), otherwise everything from then on is swallowed;
- ``replay()`` opens a new connection to the target, sends it what the dialing side sent
  first on the latest connection that got that far (the upgrade, the two handshake messages
  and the first record) and returns the WebSocket Close frame the target ended it with.

``stats`` counts what happened (``connections``, ``drops``, ``stalls``, ``delayed`` units,
``doubled`` frames, ``cuts``, ``replays``, ``blackholed``); ``target_closes`` lists every
Close frame the target sent (``Close(code, reason, tampered)``, tampered: on a connection the
proxy duplicated into or replayed). Random choices come from ``rng`` (seed it to reproduce a
run). A connection whose target is down (restarting) waits up to ``_TARGET_RETRY_S`` for it.
"""

from __future__ import annotations

import itertools
import queue
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from types import TracebackType
from typing import NamedTuple

__all__ = ["Close", "TcpProxy"]

UP, DOWN = "up", "down"
_OPCODE_CLOSE = 0x8
_DATA_OPCODES = (0x0, 0x1, 0x2)
#: the dialing side's handshake messages (Hello1, Auth3; core/handshake.py)
_HANDSHAKE_FRAMES_UP = 2
#: how long a new connection waits for a target that is down (restarting) before it is closed
_TARGET_RETRY_S = 5.0
#: hang guard for the target's answer to a replayed stream
_REPLAY_GUARD_S = 15.0


class Close(NamedTuple):
    code: int | None
    reason: str
    tampered: bool


class _Units:
    """Splits one direction of a WebSocket connection into the HTTP head and whole frames.
    Anything after a head that is not an upgrade (an HTTP error and its body) passes as is."""

    def __init__(self) -> None:
        self._buf = bytearray()
        #: whether units after the head are WebSocket frames (None until the head is complete)
        self.framed: bool | None = None

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        """The units completed by ``data``: (bytes, whether it is a WebSocket frame)."""
        self._buf += data
        units: list[tuple[bytes, bool]] = []
        while True:
            framed = bool(self.framed)  # the head itself is not a frame
            unit = self._next()
            if unit is None:
                return units
            units.append((unit, framed))

    def rest(self) -> bytes:
        """What is buffered but not a complete unit (sent on as is when the stream ends)."""
        rest, self._buf = bytes(self._buf), bytearray()
        return rest

    def _next(self) -> bytes | None:
        buf = self._buf
        if self.framed is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return None
            self.framed = buf.startswith((b"GET ", b"HTTP/1.1 101"))
            return self._take(end + 4)
        if not self.framed:
            return self._take(len(buf)) if buf else None
        size = _frame_size(buf)
        return self._take(size) if size is not None and len(buf) >= size else None

    def _take(self, n: int) -> bytes:
        unit = bytes(self._buf[:n])
        del self._buf[:n]
        return unit


def _frame_size(buf: bytes | bytearray) -> int | None:
    """Total size of the WebSocket frame at the start of ``buf``; None while its header is
    incomplete."""
    if len(buf) < 2:
        return None
    length, header = buf[1] & 0x7F, 2
    if length == 126:
        if len(buf) < 4:
            return None
        length, header = struct.unpack_from(">H", buf, 2)[0], 4
    elif length == 127:
        if len(buf) < 10:
            return None
        length, header = struct.unpack_from(">Q", buf, 2)[0], 10
    return header + (4 if buf[1] & 0x80 else 0) + length


def _opcode(frame: bytes) -> int:
    return frame[0] & 0x0F


def _close_of(frame: bytes) -> tuple[int | None, str]:
    """(code, reason) of one complete Close frame."""
    length = frame[1] & 0x7F
    header = 2 + {126: 2, 127: 8}.get(length, 0)
    payload = frame[header:]
    if frame[1] & 0x80:  # masked (sent by a client)
        mask, payload = payload[:4], payload[4:]
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if len(payload) < 2:
        return None, ""
    return struct.unpack_from(">H", payload)[0], payload[2:].decode(errors="replace")


def _units_from(s: socket.socket) -> Iterator[tuple[bytes, bool]]:
    """The units ``s`` receives until it is closed or reset."""
    units = _Units()
    try:
        while data := s.recv(65536):
            yield from units.feed(data)
    except ConnectionResetError:
        pass


def _send_quietly(s: socket.socket, data: bytes) -> None:
    """Send unless the target already closed (its Close frame is what counts then)."""
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


class _Connection:
    def __init__(self, number: int, *sockets: socket.socket) -> None:
        self.number = number
        self.sockets = sockets  # (client, upstream), or (client,) while black-holed
        #: what replay() sends: the upgrade, the handshake and the first record sent up
        self.recorded: list[bytes] = []
        self.frames_up = 0
        self.tampered = False
        self.cut = {UP: False, DOWN: False}


class TcpProxy:
    def __init__(self, target_port: int, *, rng: random.Random | None = None) -> None:
        self.target_port = target_port
        self.rng = rng or random.Random()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[_Connection] = set()
        self._flowing = threading.Event()
        self._flowing.set()
        self._refusing = False
        self._blackholing = False
        self._closed = False
        self._delay = (0.0, 0.0)
        self._pending: Counter[str] = Counter()  # duplicate_next / cut_next not applied yet
        #: the latest connection that sent records after its handshake (what replay() sends)
        self._replayable: _Connection | None = None
        self.stats: Counter[str] = Counter()
        self.target_closes: list[Close] = []
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        return self.stats["connections"]

    @property
    def open_connections(self) -> int:
        """Connections open through it now (what ``drop`` would cut)."""
        with self._lock:
            return len(self._open)

    @property
    def pending(self) -> int:
        """Duplicates and cuts asked for that no frame has passed for yet."""
        with self._lock:
            return sum(self._pending.values())

    # Faults ---------------------------------------------------------------------------

    def drop(self) -> None:
        """Reset every open connection (RST, so no orderly close is seen)."""
        with self._lock:
            dropped, self._open = self._open, set()
            self.stats["drops"] += len(dropped)
        for conn in dropped:
            for s in conn.sockets:
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    # SHUT_RD sends nothing but wakes the thread blocked in recv(); until that
                    # returns, close() would not release the socket (and send the RST)
                    s.shutdown(socket.SHUT_RD)
                    s.close()
                except OSError:
                    pass

    def stall(self) -> None:
        with self._lock:
            self.stats["stalls"] += 1
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def refuse(self, on: bool) -> None:
        self._refusing = on

    def blackhole(self, on: bool) -> None:
        """New connections are accepted and then never answered nor closed (until ``drop``)."""
        self._blackholing = on

    def delay(self, fixed_s: float, jitter_s: float) -> None:
        self._delay = (fixed_s, jitter_s)

    def duplicate_next(self) -> None:
        with self._lock:
            self._pending["duplicate"] += 1

    def cut_next(self, direction: str, *, mid_frame: bool) -> None:
        assert direction in (UP, DOWN), direction
        with self._lock:
            self._pending[f"cut {direction} {'fin' if mid_frame else 'swallow'}"] += 1

    def replay(self) -> Close:
        """Replay the latest recorded start of a connection on a new one, as the dialing side
        would: the upgrade; after the answer Hello1; after the answer Auth3 and the first
        record. Return the Close frame the target ended it with."""
        with self._lock:
            assert self._replayable is not None, "no connection got past its handshake yet"
            head, hello1, *rest = self._replayable.recorded
            self.stats["replays"] += 1
        with socket.create_connection(("127.0.0.1", self.target_port), timeout=_REPLAY_GUARD_S) as s:
            answers = _units_from(s)
            _send_quietly(s, head)
            next(answers, None)  # 101 Switching Protocols
            _send_quietly(s, hello1)
            hello2 = next(answers, None)  # (or already a Close)
            _send_quietly(s, b"".join(rest))
            # the target waits for our Close before it closes the socket: stop at its Close
            frames = (unit for unit, is_frame in itertools.chain([hello2] if hello2 else [], answers) if is_frame)
            frame = next((f for f in frames if _opcode(f) == _OPCODE_CLOSE), None)
        close = Close(*_close_of(frame), tampered=True) if frame else Close(None, "ended without a Close frame", tampered=True)
        with self._lock:
            self.target_closes.append(close)
        return close

    def close(self) -> None:
        self._closed = True
        self._flowing.set()
        self._listener.close()
        self.drop()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()

    # Forwarding -------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._refusing:
                client.close()
                continue
            if self._blackholing:
                with self._lock:
                    self.stats["blackholed"] += 1
                    self._open.add(_Connection(0, client))
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        """Connect ``client`` to the target and start forwarding. While the target is down (a
        restart) keep trying for a while, as a proxy with connect retries does (closing the
        accepted connection at once would cost the dialing node its whole connect timeout:
        trio-websocket waits it out when a connection closes before the upgrade is answered)."""
        deadline = time.monotonic() + _TARGET_RETRY_S
        while True:
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
                break
            except OSError:
                if self._closed or time.monotonic() > deadline:
                    client.close()
                    return
                time.sleep(0.05)
        with self._lock:
            self.stats["connections"] += 1
            conn = _Connection(self.stats["connections"], client, upstream)
            self._open.add(conn)
        for direction, src, dst in ((UP, client, upstream), (DOWN, upstream, client)):
            units: queue.Queue[tuple[float, bytes, bool] | None] = queue.Queue(maxsize=1024)
            threading.Thread(target=self._read, args=(conn, direction, src, units), daemon=True).start()
            threading.Thread(target=self._write, args=(conn, direction, dst, units), daemon=True).start()

    def _read(self, conn: _Connection, direction: str, src: socket.socket, out: queue.Queue) -> None:
        """Split ``src`` into units and queue each with the time it may be sent on."""
        splitter = _Units()
        try:
            while data := src.recv(65536):
                for unit, is_frame in splitter.feed(data):
                    if is_frame and direction == DOWN and _opcode(unit) == _OPCODE_CLOSE:
                        with self._lock:
                            self.target_closes.append(Close(*_close_of(unit), tampered=conn.tampered))
                    if direction == UP and conn.frames_up <= _HANDSHAKE_FRAMES_UP:
                        self._record(conn, unit, is_frame)
                    out.put((self._release_time(), unit, is_frame))
        except OSError:
            pass
        finally:
            if rest := splitter.rest():
                out.put((self._release_time(), rest, False))
            out.put(None)

    def _record(self, conn: _Connection, unit: bytes, is_frame: bool) -> None:
        conn.recorded.append(unit)
        if is_frame and _opcode(unit) in _DATA_OPCODES:
            conn.frames_up += 1
            if conn.frames_up > _HANDSHAKE_FRAMES_UP:  # the handshake and a first record
                with self._lock:
                    self._replayable = conn

    def _release_time(self) -> float:
        fixed, jitter = self._delay
        if not fixed and not jitter:
            return 0.0
        with self._lock:
            self.stats["delayed"] += 1
            return time.monotonic() + fixed + self.rng.uniform(0.0, jitter)

    def _write(self, conn: _Connection, direction: str, dst: socket.socket, units: queue.Queue) -> None:
        try:
            while (item := units.get()) is not None:
                release_at, unit, is_frame = item
                if (wait := release_at - time.monotonic()) > 0:
                    time.sleep(wait)
                self._flowing.wait()
                if conn.cut[direction]:
                    continue  # this direction of the connection was cut: swallow
                cut = is_frame and (self._take_pending(conn, f"cut {direction} fin") or self._take_pending(conn, f"cut {direction} swallow"))
                if cut == f"cut {direction} fin":
                    dst.sendall(unit[: max(1, len(unit) // 2)])
                    dst.shutdown(socket.SHUT_WR)
                if cut:
                    conn.cut[direction] = True
                    continue
                dst.sendall(unit)
                if direction == UP and is_frame and _opcode(unit) in _DATA_OPCODES and self._take_pending(conn, "duplicate"):
                    dst.sendall(unit)
        except OSError:
            pass
        finally:
            self._close_connection(conn)

    def _take_pending(self, conn: _Connection, fault: str) -> str | None:
        with self._lock:
            if not self._pending[fault]:
                return None
            self._pending[fault] -= 1
            self.stats["doubled" if fault == "duplicate" else "cuts"] += 1
            if fault == "duplicate":
                conn.tampered = True
            return fault

    def _close_connection(self, conn: _Connection) -> None:
        with self._lock:
            self._open.discard(conn)
        for s in conn.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
