"""The SQL of several node processes sharing one PostgreSQL database (node/cluster.py).

What only processes need among themselves, none of it part of the node's data (a backup
does not hold it, a restore starts without it):

- wake-ups: ``NOTIFY`` on the channels below, heard by every process's ``LISTEN`` connection.
  The payload names what changed (mailboxes, outbox destinations) as JSON, within PostgreSQL's
  8000-byte payload limit (larger sets go as several notifications).
- outbox leases: one row per destination naming the process that pushes its outbox
  (``holder``) until ``expires_at``, on the server's clock (processes on several machines
  never compare their own clocks). A holder renews its leases; a process takes over a lease
  only once it expired, in one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` statement, which
  PostgreSQL applies to each row atomically even under READ COMMITTED.
- ephemeral pushes (typing indicators) for devices that may be connected to another process:
  an envelope is larger than a payload may be, so it is a row of ``sonet_ephemerals`` whose id
  goes in the notification; rows are deleted ``EPHEMERAL_TTL_S`` after they were written
  (``sweep_ephemerals``), read or not: never a promise, best-effort like the push itself.

Every function takes a psycopg connection in autocommit mode: each statement is its own
transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg

__all__ = [
    "MAILBOX_CHANNEL",
    "OUTBOX_CHANNEL",
    "LINK_CHANNEL",
    "EPHEMERAL_CHANNEL",
    "EPHEMERAL_TTL_S",
    "put_ephemerals",
    "take_ephemerals",
    "sweep_ephemerals",
    "ensure_tables",
    "claim_leases",
    "release_leases",
    "notify",
    "payloads",
    "parse_payload",
]

#: new envelopes in these mailboxes: payload a JSON list of [account, device]
MAILBOX_CHANNEL = "sonet_mailbox"
#: new outbox items for these destinations: payload a JSON list of node names
OUTBOX_CHANNEL = "sonet_outbox"
#: device-link slots approved (node/linking.py): payload a JSON list of slot keys in hex
LINK_CHANNEL = "sonet_link"
#: live pushes for these mailboxes: payload a JSON list of [id, account, device]
EPHEMERAL_CHANNEL = "sonet_ephemeral"
#: how long a passed-on ephemeral push is kept for the other processes to read
EPHEMERAL_TTL_S = 10
#: PostgreSQL refuses a payload of 8000 bytes or more
MAX_PAYLOAD_BYTES = 7900
#: any number that names this lock among the database's advisory locks
_TABLES_LOCK = 0x736F6E6574_01

_LEASES = """CREATE TABLE IF NOT EXISTS sonet_outbox_leases (
    destination TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
)"""


_EPHEMERALS = """CREATE TABLE IF NOT EXISTS sonet_ephemerals (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    envelope    BYTEA NOT NULL,
    written_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
)"""


def ensure_tables(conn: psycopg.Connection[Any]) -> None:
    """The leases and ephemerals tables, created by the first process to start (CREATE TABLE
    IF NOT EXISTS is not safe against a concurrent one: under an advisory lock)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_TABLES_LOCK,))
        conn.execute(_LEASES)
        conn.execute(_EPHEMERALS)


def put_ephemerals(conn: psycopg.Connection[Any], envelopes: list[bytes]) -> list[int]:
    """Keep ``envelopes`` for the other processes a moment; their ids, in order."""
    ids = []
    for envelope in envelopes:
        row = conn.execute("INSERT INTO sonet_ephemerals (envelope) VALUES (%s) RETURNING id", (envelope,)).fetchone()
        ids.append(int(row[0]) if row else -1)
    return ids


def take_ephemerals(conn: psycopg.Connection[Any], ids: list[int]) -> dict[int, bytes]:
    """The envelopes of ``ids`` still kept (each is read by every process that wants it)."""
    rows = conn.execute("SELECT id, envelope FROM sonet_ephemerals WHERE id = ANY(%s)", (ids,)).fetchall()
    return {int(i): bytes(e) for i, e in rows}


def sweep_ephemerals(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "DELETE FROM sonet_ephemerals WHERE written_at < clock_timestamp() - make_interval(secs => %s)", (EPHEMERAL_TTL_S,)
    )


def claim_leases(conn: psycopg.Connection[Any], holder: str, ttl_s: float) -> set[str]:
    """Renew ``holder``'s leases and take every destination with queued items whose lease is
    free or expired; return the destinations ``holder`` holds now (until ``ttl_s`` from now,
    on the server's clock)."""
    rows = conn.execute(
        """INSERT INTO sonet_outbox_leases (destination, holder, expires_at)
           SELECT wanted.dest, %(holder)s, clock_timestamp() + make_interval(secs => %(ttl)s)
           FROM (SELECT DISTINCT dest FROM outbox
                 UNION SELECT destination FROM sonet_outbox_leases WHERE holder = %(holder)s) AS wanted(dest)
           ON CONFLICT (destination) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
           WHERE sonet_outbox_leases.holder = excluded.holder OR sonet_outbox_leases.expires_at < clock_timestamp()
           RETURNING destination""",
        {"holder": holder, "ttl": float(ttl_s)},
    ).fetchall()
    return {row[0] for row in rows}


def release_leases(conn: psycopg.Connection[Any], holder: str) -> None:
    """A process stopping gives its leases up: another one takes them at its next claim."""
    conn.execute("DELETE FROM sonet_outbox_leases WHERE holder = %s", (holder,))


def payloads(items: Iterable[Any]) -> Iterator[str]:
    """``items`` (JSON values) as JSON lists, each within the payload limit."""
    batch: list[str] = []
    size = 2
    for item in items:
        text = json.dumps(item, separators=(",", ":"))
        if batch and size + len(text.encode()) + 1 > MAX_PAYLOAD_BYTES:
            yield "[" + ",".join(batch) + "]"
            batch, size = [], 2
        batch.append(text)
        size += len(text.encode()) + 1
    if batch:
        yield "[" + ",".join(batch) + "]"


def notify(conn: psycopg.Connection[Any], channel: str, items: Iterable[Any]) -> None:
    for payload in payloads(items):
        conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


def parse_payload(text: str) -> list[Any]:
    """The list a notification carries; [] for anything else (any role that may connect to
    the database can NOTIFY: what it says only ever wakes something up)."""
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return value if isinstance(value, list) else []
