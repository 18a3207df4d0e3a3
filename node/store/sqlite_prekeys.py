"""The prekey half of the SQLite backend: signed and last-resort prekeys (one per device and
kind, replaced on publish) and one-time prekeys (each handed out at most once).

Plain functions of a connection, like the rest of the backend: ``SqliteStore`` (``sqlite.py``) runs
each on its worker thread, inside the transaction it opens where the function writes.
"""

from __future__ import annotations

from .dialect import Connection
from .base import PrekeySet, StoreError
from .sqlite_mailbox import _device_exists

__all__: list[str] = []  # private to the SQLite backend; SqliteStore is the public face

# Prekey kinds as stored: X25519 one-time / signed prekeys, ML-KEM-768 one-time / last resort.
_X25519 = "x25519"
_MLKEM = "mlkem768"


def _too_many_prekeys(message: str) -> StoreError:
    exc = StoreError(message)
    exc.code = "too_many_prekeys"
    return exc


def _publish_prekeys(
    conn: Connection,
    account: str,
    device_id: int,
    signed_prekey: bytes | None,
    pq_last_resort: bytes | None,
    one_time: list[tuple[int, bytes]],
    pq_one_time: list[tuple[int, bytes]],
    max_one_time: int,
) -> tuple[int, int]:
    if not _device_exists(conn, account, device_id):
        raise StoreError(f"no device {device_id} of {account!r}")
    for kind, blob in ((_X25519, signed_prekey), (_MLKEM, pq_last_resort)):
        if blob is not None:
            conn.execute(
                "INSERT INTO prekeys (account, device_id, kind, key_id, blob, one_time)"
                " VALUES (?, ?, ?, 0, ?, 0)"
                " ON CONFLICT (account, device_id, kind) WHERE one_time = 0 DO UPDATE SET blob = excluded.blob",
                (account, device_id, kind, blob),
            )
    for kind, keys in ((_X25519, one_time), (_MLKEM, pq_one_time)):
        fresh: dict[int, bytes] = {}
        for key_id, blob in keys:
            if key_id in fresh:
                continue  # the first of several keys with one id wins
            known = conn.execute(
                "SELECT 1 FROM prekeys WHERE account = ? AND device_id = ? AND kind = ?"
                " AND key_id = ? AND one_time = 1",
                (account, device_id, kind, key_id),
            ).fetchone()
            if known is None:  # stored, or handed out already: ignored either way
                fresh[key_id] = blob
        (stored,) = conn.execute(
            "SELECT count(*) FROM prekeys WHERE account = ? AND device_id = ? AND kind = ?"
            " AND one_time = 1 AND taken = 0",
            (account, device_id, kind),
        ).fetchone()
        if stored + len(fresh) > max_one_time:
            # Raising rolls back the whole transaction, the other kind's keys included.
            raise _too_many_prekeys(
                f"{stored} + {len(fresh)} one-time {kind} prekeys exceed the limit of {max_one_time}"
            )
        conn.executemany(
            "INSERT INTO prekeys (account, device_id, kind, key_id, blob, one_time) VALUES (?, ?, ?, ?, ?, 1)",
            [(account, device_id, kind, key_id, blob) for key_id, blob in fresh.items()],
        )
    return _prekey_counts(conn, account, device_id)


def _pop_one_time(conn: Connection, account: str, device_id: int, kind: str) -> bytes | None:
    row = conn.execute(
        "SELECT seq, blob FROM prekeys WHERE account = ? AND device_id = ? AND kind = ?"
        " AND one_time = 1 AND taken = 0 ORDER BY seq LIMIT 1",
        (account, device_id, kind),
    ).fetchone()
    if row is None:
        return None
    seq, blob = row
    conn.execute("UPDATE prekeys SET taken = 1, blob = ? WHERE seq = ?", (b"", seq))
    return bytes(blob)


def _current(conn: Connection, account: str, device_id: int, kind: str) -> bytes | None:
    row = conn.execute(
        "SELECT blob FROM prekeys WHERE account = ? AND device_id = ? AND kind = ? AND one_time = 0",
        (account, device_id, kind),
    ).fetchone()
    return None if row is None else bytes(row[0])


def _take_bundle(conn: Connection, account: str, device_id: int, with_one_time: bool = True) -> PrekeySet:
    one_time = _pop_one_time(conn, account, device_id, _X25519) if with_one_time else None
    pq = _pop_one_time(conn, account, device_id, _MLKEM) if with_one_time else None
    if pq is None:
        pq = _current(conn, account, device_id, _MLKEM)  # the last-resort key is never popped
    return PrekeySet(
        signed_prekey=_current(conn, account, device_id, _X25519), pq_prekey=pq, one_time=one_time
    )


def _prekey_counts(conn: Connection, account: str, device_id: int) -> tuple[int, int]:
    counts = dict(
        conn.execute(
            "SELECT kind, count(*) FROM prekeys WHERE account = ? AND device_id = ?"
            " AND one_time = 1 AND taken = 0 GROUP BY kind",
            (account, device_id),
        ).fetchall()
    )
    return counts.get(_X25519, 0), counts.get(_MLKEM, 0)
