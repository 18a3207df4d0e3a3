"""Review of round 9 (rev9): two of attack9's caps hold per device key only (node/client_limits.py
``LOCAL_BLOB_BYTES``, c42162f; ``DEVICE_REQUESTS``, a3047f7). An account links up to
``MAX_DEVICES_PER_ACCOUNT`` (16) devices of its own, each with its own bucket, so one account
gets sixteen times the rate the attack was measured at. The attack's own figures: one device's
8 connections downloading one chunk again and again got ~340 MiB/s and the node's whole core;
~6,000 Pings a second kept it at 85-90 % of a core. Attachment writes (381c191) and group
submissions have a per-account bucket beside the per-device one; these two had none. They have
now: ``ACCOUNT_REQUESTS`` and ``LOCAL_BLOB_BYTES_PER_ACCOUNT`` (two devices' worth)."""

from __future__ import annotations

from sonet.core import limits as wire_limits
from sonet.core.blob_api import BLOB_CHUNK_BYTES
from sonet.core.client_api import Ping
from sonet.core.errors import RemoteProtocolError
from sonet.node.client_checks import RequestError
from sonet.node.client_limits import ClientLimits

from .test_client_limits import Clock, Conn, Ctx

MIB = 1024 * 1024
DEVICES = wire_limits.MAX_DEVICES_PER_ACCOUNT
#: what took a whole core in attack9 (commit messages c42162f and a3047f7)
CORE_MIB_PER_S = 340
CORE_PINGS_PER_S = 6000


def _account(ctx: Ctx) -> list[Conn]:
    return [Conn(ctx, f"dev-mallory-{i}", account="mallory@alpha.example") for i in range(DEVICES)]


async def test_one_accounts_devices_together_cannot_download_faster_than_a_core_seals() -> None:
    clock = Clock()
    limits = ClientLimits()
    devices = _account(Ctx(clock))

    async def one_second() -> int:
        served = 0
        for device in devices:
            while True:
                try:
                    limits.admit_blob(device, local=True)  # type: ignore[arg-type]
                except RequestError:
                    break
                limits.settle_blob(device, BLOB_CHUNK_BYTES, local=True)  # type: ignore[arg-type]
                served += BLOB_CHUNK_BYTES
        clock.ms += 1000
        return served

    await one_second()  # the bursts
    sustained = await one_second()
    assert sustained < CORE_MIB_PER_S * MIB, f"one account served {sustained // MIB} MiB/s after its bursts"


async def test_one_accounts_devices_together_cannot_send_the_requests_that_took_a_core() -> None:
    clock = Clock()
    limits = ClientLimits()
    # eight connections each, as the attack used (each connection's own cap is not the bound)
    conns = [Conn(device.ctx, device.peer.fingerprint, account="mallory@alpha.example") for device in _account(Ctx(clock)) for _ in range(8)]

    async def one_second() -> int:
        passed = 0
        for step in range(10):
            for i, conn in enumerate(conns):
                for _ in range(10):
                    try:
                        await limits.check(conn, Ping(request=1))  # type: ignore[arg-type]
                    except RequestError:
                        break
                    except RemoteProtocolError:  # closed after 50 refusals in a row: it reconnects
                        conns[i] = Conn(conn.ctx, conn.peer.fingerprint, account="mallory@alpha.example")
                        break
                    passed += 1
            clock.ms += 100
        return passed

    for _ in range(10):  # the bursts spent
        await one_second()
    sustained = await one_second()
    assert sustained < CORE_PINGS_PER_S, f"one account passed {sustained} requests a second after its bursts"
