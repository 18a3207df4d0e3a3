"""The secure-WebSocket transport between core and its users (client, federation, node): open a
socket and run the handshake under one deadline (``dial``), the responder's handshake
(``respond``), one connection's frames in and out (``SecureSocket``, whose ``fail`` sends an
error frame and closes), requests multiplexed over it (``Mux``), and the listening side
(``serve``), all on our WebSocket (``websocket``: wsproto driven from the tasks that use it, no
reader task). Imports core only (and trio, wsproto)."""

if __name__ != "sonet.transport":  # one name per module (sonet/__init__.py)
    raise ImportError(f"this package is sonet.transport; import it as that, not as {__name__}")

import sys
from types import ModuleType
from typing import TYPE_CHECKING

from sonet.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .dial import DialError, describe_close, dial
    from .handshake import POLICY_VIOLATION, PROTOCOL_ERROR, Admit, admit_everyone, respond, run_initiator
    from .mux import LinkLost, Mux, OnPush
    from .server import Listening, serve
    from .socket import CLOSE_GRACE_S, SecureSocket

#: each name's submodule, imported when the name is first asked for: a module that needs one
#: small piece (``events``, read by the node's settings in every ``sonet-node`` command) must not
#: load the dialling side and wsproto with it
_SUBMODULE = {
    **dict.fromkeys(("DialError", "describe_close", "dial"), "dial"),
    **dict.fromkeys(("POLICY_VIOLATION", "PROTOCOL_ERROR", "Admit", "admit_everyone", "respond", "run_initiator"), "handshake"),
    **dict.fromkeys(("LinkLost", "Mux", "OnPush"), "mux"),
    **dict.fromkeys(("Listening", "serve"), "server"),
    **dict.fromkeys(("CLOSE_GRACE_S", "SecureSocket"), "socket"),
}


# (``from sonet.transport import events``, not an exported name, imports the submodule)
__getattr__ = lazy_exports(__name__, _SUBMODULE)


class _Package(ModuleType):
    """Importing a submodule binds it on the package: ``dial`` (the module) would then hide
    ``dial`` (the function) that ``from sonet.transport import dial`` asks for. The exported
    name wins, as it did when this package imported its names eagerly."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _SUBMODULE and isinstance(value, ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
