"""The exceptions of our WebSocket (transport/websocket.py) and the close they carry: the
classes trio-websocket names so, with its constructors and attributes, defined here so that
no node or device process imports trio-websocket (its import, with the importlib.metadata
version lookup it makes, was ~30 ms of each `sonet-node run` and each connecting `sonet`
command). Tests that drive a node through trio-websocket's own client see its classes, not
these."""

from __future__ import annotations

from wsproto.frame_protocol import CloseReason as _CloseCode

__all__ = ["CloseReason", "ConnectionClosed", "ConnectionRejected", "HandshakeError"]


class HandshakeError(Exception):
    """The connection could not be opened (not a WebSocket answer, a bad URL)."""


class ConnectionRejected(HandshakeError):
    """The server answered the upgrade with an HTTP response instead of accepting it."""

    def __init__(self, status_code: int, headers: tuple[tuple[bytes, bytes], ...], body: bytes | None) -> None:
        super().__init__(status_code, headers, body)
        self.status_code = status_code
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}<status_code={self.status_code}>"


class CloseReason:
    """Why a WebSocket closed: its close code (``name``: the code's RFC 6455 name or range)
    and the reason text, if any."""

    __slots__ = ("_code", "_name", "_reason")

    def __init__(self, code: int, reason: str | None) -> None:
        self._code = code
        try:
            self._name = _CloseCode(code).name
        except ValueError:
            if 1000 <= code <= 2999:
                self._name = "RFC_RESERVED"
            elif 3000 <= code <= 3999:
                self._name = "IANA_RESERVED"
            elif 4000 <= code <= 4999:
                self._name = "PRIVATE_RESERVED"
            else:
                self._name = "INVALID_CODE"
        self._reason = reason

    @property
    def code(self) -> int:
        return self._code

    @property
    def name(self) -> str:
        return self._name

    @property
    def reason(self) -> str | None:
        return self._reason

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}<code={self.code}, name={self.name}, reason={self.reason}>"


class ConnectionClosed(Exception):
    """The WebSocket is closed or closing: ``reason`` says how (None if it never opened)."""

    def __init__(self, reason: CloseReason | None) -> None:
        super().__init__(reason)
        self.reason = reason

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}<{self.reason}>"
