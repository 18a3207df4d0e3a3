"""TLS around the WebSocket (``wss://``), in addition to Sonet's own authenticated channel.

The node listens with TLS when node.toml has ``[tls] cert`` and ``key`` (``server_context``).
Whoever dials a ``wss://`` URL -- a device, or a node dialling a peer -- checks the server's
certificate and host name against the system's trusted CAs, or against the CA file named by the
environment variable ``SONET_TLS_CA`` (a private CA: one convention for ``sonet`` and
``sonet-node`` alike). TLS adds nothing to who is trusted: the channel's handshake still pins the
node's (or peer's) identity key, end to end, whatever terminates TLS.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from pathlib import Path

__all__ = ["CA_ENV", "PLAIN_ON_TLS_ANSWER", "TlsError", "server_context", "client_context", "describe_failure", "opens_tls"]

#: a PEM file of the CA(s) to trust for wss:// instead of the system's
CA_ENV = "SONET_TLS_CA"
#: the body of the 400 a TLS listener answers a plain ws:// (HTTP) client with
PLAIN_ON_TLS_ANSWER = "this node listens with TLS: dial it at wss:// (not ws://)\n"
#: the first byte of a TLS record that carries a handshake message (as a ClientHello does)
_HANDSHAKE_RECORD = 0x16


def opens_tls(first: bytes) -> bool:
    """Whether a connection's first bytes may open a TLS handshake (a handshake record; its
    version's major byte 3 when there is a second byte). HTTP starts with a method's letter."""
    return bool(first) and first[0] == _HANDSHAKE_RECORD and (len(first) == 1 or first[1] == 3)


class TlsError(Exception):
    """A certificate, key or CA file that cannot be used (one line naming the file)."""


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The listener's TLS context: ``cert`` (PEM, the chain with the server's certificate
    first) and its private ``key`` (PEM); TLS 1.2 at least."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
    except FileNotFoundError as exc:
        raise TlsError(f"cannot read {exc.filename or cert}: no such file") from None
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            raise TlsError(f"{cert} and {key} are not a PEM certificate and its private key ({exc.reason or exc})") from None
        raise TlsError(f"cannot read {exc.filename or cert}: {exc.strerror or exc}") from None
    # the node speaks nothing but WebSocket over HTTP/1.1
    context.set_alpn_protocols(["http/1.1"])
    return context


def client_context(on_failure: Callable[[ssl.SSLError], None] | None = None) -> ssl.SSLContext:
    """The context a ``wss://`` dial verifies the server with: ``$SONET_TLS_CA`` if set, else
    the system's CAs; the host name must match the certificate. ``on_failure`` hears of a
    failed TLS handshake as it happens (the dial then says why, not just that the connection
    was lost)."""
    ca = os.environ.get(CA_ENV) or None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    except FileNotFoundError:
        raise TlsError(f"{CA_ENV}={ca}: no such file") from None
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            raise TlsError(f"{CA_ENV}={ca} is not a PEM file of CA certificates ({exc.reason or exc})") from None
        raise TlsError(f"cannot read {CA_ENV}={ca}: {exc.strerror or exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    if on_failure is not None:
        context.sslobject_class = _watched(on_failure)
    return context


def _watched(on_failure: Callable[[ssl.SSLError], None]) -> type[ssl.SSLObject]:
    class Watched(ssl.SSLObject):
        def do_handshake(self) -> None:
            try:
                super().do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise  # not a failure: the handshake goes on when bytes come
            except ssl.SSLError as exc:
                on_failure(exc)
                raise

    return Watched


def describe_failure(exc: ssl.SSLError) -> str:
    """A failed TLS handshake for humans, with the fix for an unknown CA."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"its TLS certificate is not trusted ({exc.verify_message}); for a private CA set "
            f"{CA_ENV}=FILE (a PEM file of the CA's certificate)"
        )
    return f"TLS failed ({exc.reason or exc}); is it a wss:// (TLS) listener?"
