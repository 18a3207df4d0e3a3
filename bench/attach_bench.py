"""Attachments across two real nodes (issue 17 item 8): a file encrypted, uploaded to alpha,
downloaded by a device of beta (beta fetches it from alpha over the federation link) and
decrypted, each way in MiB/s, against ceilings measured in the same run.

What is measured (``measure(quick)``): two real nodes ``alpha`` and ``beta`` (``sonet-node
init --registration open`` + ``run`` from this venv, peered with ``sonet-node peer add``, as in
bench/relay_bench.py; ``[blobs] max_file_bytes`` as shipped, 100 MiB), and two client devices
(client/sdk.py ``Device``, hybrid): ``alice@alpha`` and ``bob@beta``. A file of random bytes,
100 MiB (quick: 20 MiB):

- ``attach_upload_mib_per_s``: ``Device.send_file`` as ``sonet send --file`` runs it, from the
  call to its return: the digests pass over the file, encryption, the upload in 1 MiB chunks
  (each fsynced by alpha before it answers; 4 in flight), and the file message to bob.
- ``attach_download_mib_per_s``: ``Device.download`` on bob's device once the message arrived:
  beta fetches each chunk from alpha over the federation link and passes it on (4 in flight),
  the device checks the ciphertext digest, decrypts, checks the file digest and saves it.

Ceilings (same run, same machine): ``attach_aead_seal_mib_per_s`` / ``..._open_...``: the
STREAM AEAD alone on the same bytes in memory (core/crypto/stream.py), and
``attach_transport_mib_per_s``: the same number of ciphertext bytes in 1 MiB WebSocket messages
through one bare connection (no secure channel, no frames) to a sink process that answers once
it has them all. ``attach_upload_mib_per_s_ceiling`` and ``attach_download_mib_per_s_ceiling``
are the lower of the transport ceiling and the AEAD direction that bounds them (seal for the
upload, open for the download).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from sonet.client.sdk import Device
from sonet.client.state import DeviceState
from sonet.core import limits
from sonet.core.crypto import CryptoMode
from sonet.core.crypto.stream import StreamOpener, StreamSealer, sealed_size
from sonet.core.invite import make_invite
from sonet.transport.websocket import open_websocket

from .conn_bench import _LISTENING, BIN, _kill, _spawn
from .relay_bench import _init, _peer

__all__ = ["measure"]

MIB = 1024 * 1024
GUARD_S = 300.0

_SINK = """
import functools, trio
from sonet.transport.ws_errors import ConnectionClosed
from sonet.core import limits
from sonet.transport.server import serve
from sonet.transport.socket import set_message_cap
async def handler(request, conn):
    ws = await request.accept()
    conn.authenticated()
    set_message_cap(ws, limits.MAX_RECORD_BYTES)
    want = int(await ws.get_message())
    got = 0
    while got < want:
        got += len(await ws.get_message())
    await ws.send_message("done")
async def main():
    async with trio.open_nursery() as nursery:
        server = await nursery.start(functools.partial(serve, handler, "127.0.0.1", 0, plain_http_answer="bench"))
        print(f"listening on ws://127.0.0.1:{server.port}", flush=True)
trio.run(main)
"""


def _aead(data: bytes) -> tuple[float, float]:
    key = os.urandom(32)
    start = time.perf_counter()
    sealer = StreamSealer(key)
    sealed = [sealer.update(data[i : i + MIB]) for i in range(0, len(data), MIB)]
    sealed.append(sealer.finish())
    seal_s = time.perf_counter() - start
    start = time.perf_counter()
    opener = StreamOpener(key)
    for piece in sealed:
        opener.update(piece)
    opener.finish()
    return seal_s, time.perf_counter() - start


async def _transport(url: str, size: int) -> float:
    chunk = os.urandom(MIB)
    async with open_websocket(url) as ws:
        start = time.perf_counter()
        await ws.send_message(str(size))
        for offset in range(0, size, MIB):
            await ws.send_message(chunk[: min(MIB, size - offset)])
        assert await ws.get_message() == "done"
        return time.perf_counter() - start


async def _files(urls: dict[str, str], fps: dict[str, str], tmp: Path, path: Path) -> tuple[float, float]:
    devices: dict[str, Device] = {}
    try:
        for user, node in (("alice", "alpha"), ("bob", "beta")):
            devices[user] = Device(DeviceState(tmp / "devices" / user))
            # an open node: the invite's secret is not checked, its fingerprint pins the node
            await devices[user].register(f"{user}@{node}", urls[node], make_invite(fps[node], os.urandom(20)), mode=CryptoMode.HYBRID)
        alice, bob = devices["alice"], devices["bob"]
        with trio.fail_after(GUARD_S):
            start = time.perf_counter()
            sent = await alice.send_file("bob@beta", path)
            upload_s = time.perf_counter() - start
            while not any(m.id == sent.id for m in (await bob.receive(wait=5)).messages):
                pass
            out = tmp / "downloads"
            out.mkdir()
            start = time.perf_counter()
            saved = Path(await bob.download(sent.id, out))
            download_s = time.perf_counter() - start
        if saved.stat().st_size != path.stat().st_size:
            raise RuntimeError("the downloaded file has another size")
        return upload_s, download_s
    finally:
        for device in devices.values():
            device.state.close()


def measure(quick: bool) -> dict[str, float | int]:
    size = (20 if quick else 100) * MIB
    out: dict[str, float | int] = {"attach_file_bytes": size}
    with tempfile.TemporaryDirectory(prefix="sonet-bench-attach-") as tmp_dir:
        tmp = Path(tmp_dir)
        data = os.urandom(size)
        path = tmp / "file.bin"
        path.write_bytes(data)
        seal_s, open_s = _aead(data)
        del data
        fps = {name: _init(tmp / name, name) for name in ("alpha", "beta")}
        procs: list[subprocess.Popen[str]] = []
        try:
            urls = {}
            for name in ("alpha", "beta"):
                proc, urls[name] = _spawn([str(BIN / "sonet-node"), "run", "--data", str(tmp / name)], tmp / f"{name}.stderr", _LISTENING)
                procs.append(proc)
            _peer(tmp / "alpha", "beta", urls["beta"], fps["beta"])
            _peer(tmp / "beta", "alpha", urls["alpha"], fps["alpha"])
            upload_s, download_s = trio.run(_files, urls, fps, tmp, path)
        finally:
            for proc in procs:
                _kill(proc)
        try:
            sink, sink_url = _spawn([sys.executable, "-c", _SINK], tmp / "sink.stderr", re.compile(r"listening on (ws://\S+)"))
            procs = [sink]
            transport_s = trio.run(_transport, sink_url, sealed_size(size))
        finally:
            for proc in procs:
                _kill(proc)
    mib = size / MIB
    out["attach_upload_mib_per_s"] = mib / upload_s
    out["attach_download_mib_per_s"] = mib / download_s
    out["attach_aead_seal_mib_per_s"] = mib / seal_s
    out["attach_aead_open_mib_per_s"] = mib / open_s
    out["attach_transport_mib_per_s"] = mib / transport_s
    out["attach_upload_mib_per_s_ceiling"] = min(out["attach_transport_mib_per_s"], out["attach_aead_seal_mib_per_s"])
    out["attach_download_mib_per_s_ceiling"] = min(out["attach_transport_mib_per_s"], out["attach_aead_open_mib_per_s"])
    return out


if __name__ == "__main__":
    print(json.dumps(measure("--full" not in sys.argv), indent=2))
