"""The secure-WebSocket transport between core and its users (client, federation, node): open a
socket and run the handshake under one deadline (``dial``), the responder's handshake
(``respond``), one connection's frames in and out (``SecureSocket``, whose ``fail`` sends an
error frame and closes), requests multiplexed over it (``Mux``), and the listening side
(``serve``). Imports core only (and trio, trio-websocket)."""

if __name__ != "sonet.transport":  # one name per module (sonet/__init__.py)
    raise ImportError(f"this package is sonet.transport; import it as that, not as {__name__}")

from .dial import DialError, describe_close, dial
from .handshake import POLICY_VIOLATION, PROTOCOL_ERROR, Admit, admit_everyone, respond, run_initiator
from .mux import LinkLost, Mux, OnPush
from .server import Listening, serve
from .socket import CLOSE_GRACE_S, SecureSocket

__all__ = [
    "dial",
    "DialError",
    "describe_close",
    "run_initiator",
    "respond",
    "Admit",
    "admit_everyone",
    "POLICY_VIOLATION",
    "PROTOCOL_ERROR",
    "SecureSocket",
    "CLOSE_GRACE_S",
    "Mux",
    "LinkLost",
    "OnPush",
    "serve",
    "Listening",
]
