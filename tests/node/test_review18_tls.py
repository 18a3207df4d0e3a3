"""Review of native TLS (transport/tls.py, transport/server.py): a ws:// client of a TLS
listener and a wss:// client of a plain one each hear at once, in one line, what is wrong,
instead of waiting out the handshake deadline for "did not complete the handshake in time"."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from sonet.core.client_api import CLIENT_FRAMES
from sonet.transport import DialError
from sonet.transport.dial import dial
from sonet.transport.server import serve
from sonet.transport.tls import opens_tls, server_context
from tests.e2e.test_tls import _ca, _server_cert
from tests.federation.net import new_key


async def _never(request: object, conn: object) -> None:
    raise AssertionError("no connection should reach the handler")


async def _dial_error(url: str) -> DialError:
    with pytest.raises(DialError) as caught:
        async with dial(url, "/client", identity=new_key(), expected_peer=None, frames=CLIENT_FRAMES):
            pass
    return caught.value


async def _listen(nursery: trio.Nursery, tls: object) -> int:
    listening = await nursery.start(
        lambda task_status: serve(_never, "127.0.0.1", 0, plain_http_answer="plain", tls=tls, task_status=task_status)  # type: ignore[arg-type]
    )
    return int(listening.port)


async def test_a_plain_client_of_a_tls_listener_is_told_to_use_wss(tmp_path: Path) -> None:
    ca_key, ca_cert = _ca(tmp_path / "ca", "private-ca")
    _server_cert(tmp_path, ca_key, ca_cert)
    tls = server_context(tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem")
    async with trio.open_nursery() as nursery:
        port = await _listen(nursery, tls)
        error = await _dial_error(f"ws://127.0.0.1:{port}")
        nursery.cancel_scope.cancel()
    assert "refused the connection (400: this node listens with TLS: dial it at wss://" in str(error)


async def test_a_tls_client_of_a_plain_listener_is_ended_at_once() -> None:
    async with trio.open_nursery() as nursery:
        port = await _listen(nursery, None)
        error = await _dial_error(f"wss://127.0.0.1:{port}")
        nursery.cancel_scope.cancel()
    assert "TLS failed" in str(error) and "is it a wss:// (TLS) listener?" in str(error)


def test_what_opens_tls() -> None:
    assert opens_tls(b"\x16\x03") and opens_tls(b"\x16")
    assert not opens_tls(b"GE") and not opens_tls(b"") and not opens_tls(b"\x16\x01")
