"""Starting the operations listener of a running node (node.toml ``[ops] listen``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from ..config import parse_listen
from ..store.sqlite_budgets import disk_free_at
from .http import serve_http
from .metrics import LiveSources
from .service import RATES, Readiness, ops_handler

if TYPE_CHECKING:
    from ..app import Node
    from .metrics import NodeMetrics

__all__ = ["start_ops_listener"]


def _connections(node: Node) -> dict[str, int]:
    federation = node.federation
    outbound = 0
    if federation is not None:
        # direct peers whose link this node dialled is up (a relayed peer's is its relay's)
        outbound = sum(1 for p in federation.snapshot()["peers"] if p.get("link") == "connected" and not p.get("via"))
    return {"device": node.client_sessions, "peer_inbound": node.federation_status.links_open, "peer_outbound": outbound}


def _outbox_counts(node: Node) -> dict[str, int]:
    if node.federation is None:
        return {}
    return {p["name"]: p["queued"] for p in node.federation.snapshot()["peers"]}


async def start_ops_listener(nursery: trio.Nursery, node: Node, store: Any, listen: str, metrics: NodeMetrics) -> int:
    """Serve /metrics, /health and /ready on ``listen`` in ``nursery``; the bound port.
    ListenError when the address cannot be bound."""
    from ..app import DB_FILE, ListenError  # app imports this module

    database = node.data_dir / DB_FILE
    readiness = Readiness(
        store.latest_head,
        database=database if database.exists() else None,
        disk_free=disk_free_at(str(database)),
        reserve_bytes=node.config.storage_reserve_bytes,
        nursery=nursery,
    )
    metrics.live.nursery = nursery
    metrics.live.sources = LiveSources(
        connections=lambda: _connections(node),
        store=store,
        outbox_counts=lambda: _outbox_counts(node),
        clock_ms=node.clock_ms,
    )
    host, port = parse_listen(listen)
    try:
        bound: int = await nursery.start(serve_http(ops_handler(metrics, readiness), host, port, rates=RATES))
    except OSError as exc:
        raise ListenError(exc.errno, f"cannot listen on ops.listen {listen}: {exc.strerror or exc}") from exc
    return bound
