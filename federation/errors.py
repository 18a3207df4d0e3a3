"""The one error of the federation service's remote methods (see federation/service.py)."""

from __future__ import annotations

from sonet.core.errors import Refusal, registered

__all__ = ["FederationError"]


class FederationError(Refusal):
    """A remote lookup or route failed; ``code`` is machine-readable, the message one line.

    The code may come from another node (its ErrorFrame, its close reason): one this version
    does not register is reported as ``invalid``, naming the code the node gave.

    ``logged``: the link pool has logged it as a failure with that peer (federation/pool.py
    ``setback``: one line per backoff or change of error), so its callers need not again."""

    logged = False

    def __init__(self, code: str, message: str) -> None:
        if not registered(code):
            code, message = "invalid", f"{message} (unknown error code {code!r})"
        super().__init__(code, message)
