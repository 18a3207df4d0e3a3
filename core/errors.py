"""One error family for every protocol object.

``LocalProtocolError``: we were asked to do something the protocol forbids (a bug or misuse
on our side). ``RemoteProtocolError``: the peer sent something invalid. ``DecryptError`` is
deliberately opaque: it never says which check failed, so it cannot serve as an oracle.
"""

from __future__ import annotations

__all__ = [
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "DecryptError",
    "VerifyError",
    "sole_exception",
]


class ProtocolError(Exception):
    """Base of every error raised by ``core``. Messages never contain secret material."""

    #: short machine-readable code, sent in error frames
    code: str = "protocol_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class LocalProtocolError(ProtocolError):
    code = "local_error"


class RemoteProtocolError(ProtocolError):
    code = "bad_input"


class DecryptError(RemoteProtocolError):
    """Authenticated decryption failed. Carries no detail on purpose."""

    code = "decrypt_failed"

    def __init__(self, message: str = "decryption failed") -> None:
        super().__init__(message)


class VerifyError(RemoteProtocolError):
    """A signature, certificate or identity check failed."""

    code = "verify_failed"


def sole_exception(exc: BaseException) -> BaseException:
    """The one real error inside nested single-member exception groups (as structured
    concurrency produces them), or ``exc`` itself when there is more than one."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
