"""A running node's operations listener (node.toml [ops] listen): /health, /ready, /metrics
parsed by Prometheus's own parser, counters that move with what the node does, and /ready
failing while the database is unreachable and recovering after."""

from __future__ import annotations

import os

import trio

from sonet.core.client_api import Ack, Ping
from sonet.node.app import DB_FILE

from ..conftest import HANG_S, RunningNode, StartNode, collect_until_drained
from ..kit import opaque_envelope, wall_ms
from ..test_client_api import _send
from .http_kit import exchange, get
from .metrics_kit import sample, scrape


async def _ops_node(start_node: StartNode) -> tuple[RunningNode, int]:
    running = await start_node(ops_listen="127.0.0.1:0")
    port = running.node.ops_port
    assert port is not None and port != 0
    return running, port


async def test_health_ready_and_unknown_paths(start_node: StartNode) -> None:
    with trio.fail_after(HANG_S):
        _running, port = await _ops_node(start_node)
        assert await get(port, "/health") == (200, "ok\n")
        assert await get(port, "/ready") == (200, "ready\n")
        status, text = await get(port, "/nope")
        assert status == 404 and "/metrics" in text
        assert (await exchange(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"))[0] == 405


async def test_no_listener_without_ops(running: RunningNode) -> None:
    assert running.node.ops_port is None


async def test_counters_move_with_sends_acks_and_expiry(start_node: StartNode) -> None:
    with trio.fail_after(HANG_S):
        running, port = await _ops_node(start_node)
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        before = await scrape(port)
        envs = [opaque_envelope(bob.first) for _ in range(3)]
        short = opaque_envelope(bob.first, expires=wall_ms() + 1500)
        async with running.raw(alice.first) as conn:
            assert (await _send(conn, *envs)).stored == 3
            assert (await _send(conn, short)).stored == 1
        async with running.raw(bob.first) as conn:
            items = await collect_until_drained(conn)
            assert len(items) == 4
            await conn.send(Ack(ids=tuple(e.id for e in envs)))
            await conn.request(lambda n: Ping(request=n))  # the ack is done
            during = await scrape(port)
        # the node purges the short one at its expiry
        while sample(after := await scrape(port), "sonet_envelopes_expired_total", where="mailbox") < 1:
            await trio.sleep(0.1)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved("sonet_envelopes_in_total", source="device") == 4
    assert moved("sonet_envelopes_out_total", destination="device") == 3
    assert moved("sonet_envelopes_expired_total", where="mailbox") == 1
    assert moved("sonet_handshakes_total", endpoint="device") == 2
    assert sample(during, "sonet_connections_open", kind="device") == 1
    assert sample(after, "sonet_connections_open", kind="device") == 0
    assert sample(after, "sonet_key_directory_size") >= 2  # alice's and bob's leaves
    assert moved("sonet_store_operation_seconds_count", operation="enqueue") == 2
    assert sample(after, "sonet_store_operation_seconds_bucket", operation="enqueue", le="+Inf") >= 2


async def test_ready_fails_while_the_database_is_gone_and_recovers(start_node: StartNode) -> None:
    with trio.fail_after(HANG_S):
        running, port = await _ops_node(start_node)
        db = running.data_dir / DB_FILE
        assert (await get(port, "/ready"))[0] == 200
        os.rename(db, db.with_suffix(".moved"))
        try:
            status, text = await get(port, "/ready")
            assert status == 503
            assert text == f"not ready: database unreachable: {DB_FILE}: No such file or directory\n"
            assert await get(port, "/health") == (200, "ok\n")  # the process still runs
        finally:
            os.rename(db.with_suffix(".moved"), db)
        assert await get(port, "/ready") == (200, "ready\n")


async def test_a_failed_handshake_is_counted_by_its_code(start_node: StartNode) -> None:
    from trio_websocket import ConnectionClosed, open_websocket_url

    with trio.fail_after(HANG_S):
        running, port = await _ops_node(start_node)
        async with open_websocket_url(f"{running.url}/client") as ws:
            await ws.send_message(b"\x00 not a handshake message")
            try:
                await ws.get_message()
            except ConnectionClosed:
                pass
        while not (failed := {labels: v for (name, labels), v in (await scrape(port)).items() if name == "sonet_handshake_failures_total"}):
            await trio.sleep(0.02)
    assert failed == {(("reason", "bad_input"),): 1.0}


async def test_scrapes_past_the_rate_of_an_address_are_429(start_node: StartNode) -> None:
    from sonet.node.ops.service import METRICS_RATE

    with trio.fail_after(HANG_S):
        _running, port = await _ops_node(start_node)
        statuses: list[int] = []

        async def scrape_once() -> None:
            statuses.append((await get(port, "/metrics"))[0])

        # in batches of fewer than the connections one address may hold at once (8), faster than
        # the rate refills
        while 429 not in statuses:
            async with trio.open_nursery() as nursery:
                for _ in range(7):
                    nursery.start_soon(scrape_once)
        assert statuses.count(200) >= METRICS_RATE.burst
        assert await get(port, "/health") == (200, "ok\n")
