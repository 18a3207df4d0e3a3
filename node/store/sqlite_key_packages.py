"""The KeyPackage half of the SQLite backend: MLS KeyPackages devices publish so that others can
add them to groups (docs/groups.md). Per device: one-time KeyPackages, each handed out at most
once (oldest first), and one last-resort KeyPackage, replaced on publish and handed out whenever
no one-time one is left. Organised like ``sqlite_prekeys.py``, whose rules these follow.

Plain functions of a connection, like the rest of the backend: ``SqliteStore`` (``sqlite.py``) runs
each on its worker thread, inside the transaction it opens where the function writes.
"""

from __future__ import annotations

from .dialect import Connection
from .base import StoreError
from .sqlite_mailbox import _device_exists

__all__: list[str] = []  # private to the SQLite backend; SqliteStore is the public face


def _too_many_key_packages(message: str) -> StoreError:
    return StoreError(message, code="too_many_key_packages")


def _publish_key_packages(
    conn: Connection,
    account: str,
    device_id: int,
    one_time: list[tuple[bytes, bytes]],
    last_resort: tuple[bytes, bytes] | None,
    max_one_time: int,
) -> int:
    if not _device_exists(conn, account, device_id):
        raise StoreError(f"no device {device_id} of {account!r}")
    if last_resort is not None:
        ref, blob = last_resort
        conn.execute(
            "INSERT INTO key_packages (account, device_id, ref, blob, one_time) VALUES (?, ?, ?, ?, 0)"
            " ON CONFLICT (account, device_id) WHERE one_time = 0"
            " DO UPDATE SET ref = excluded.ref, blob = excluded.blob",
            (account, device_id, ref, blob),
        )
    fresh: dict[bytes, bytes] = {}
    for ref, blob in one_time:
        if ref in fresh:
            continue  # the same KeyPackage twice in one batch: stored once
        known = conn.execute(
            "SELECT 1 FROM key_packages WHERE account = ? AND device_id = ? AND ref = ? AND one_time = 1",
            (account, device_id, ref),
        ).fetchone()
        if known is None:  # stored, or handed out already: ignored either way
            fresh[ref] = blob
    stored = _key_package_count(conn, account, device_id)
    if stored + len(fresh) > max_one_time:
        # Raising rolls back the whole transaction, the last-resort KeyPackage included.
        raise _too_many_key_packages(
            f"{stored} + {len(fresh)} one-time KeyPackages exceed the limit of {max_one_time} per device"
        )
    conn.executemany(
        "INSERT INTO key_packages (account, device_id, ref, blob, one_time) VALUES (?, ?, ?, ?, 1)",
        [(account, device_id, ref, blob) for ref, blob in fresh.items()],
    )
    return stored + len(fresh)


def _take_one(conn: Connection, account: str, device_id: int, with_one_time: bool) -> bytes | None:
    if with_one_time:
        row = conn.execute(
            "SELECT seq, blob FROM key_packages WHERE account = ? AND device_id = ?"
            " AND one_time = 1 AND taken = 0 ORDER BY seq LIMIT 1",
            (account, device_id),
        ).fetchone()
        if row is not None:
            seq, blob = row
            conn.execute("UPDATE key_packages SET taken = 1, blob = ? WHERE seq = ?", (b"", seq))
            return bytes(blob)
    row = conn.execute(
        "SELECT blob FROM key_packages WHERE account = ? AND device_id = ? AND one_time = 0",
        (account, device_id),
    ).fetchone()
    return None if row is None else bytes(row[0])  # the last-resort one is never taken


def _take_key_packages(conn: Connection, account: str, with_one_time: bool) -> list[tuple[int, bytes]]:
    devices = [d for (d,) in conn.execute("SELECT device_id FROM devices WHERE account = ? ORDER BY device_id", (account,))]
    taken = []
    for device_id in devices:
        blob = _take_one(conn, account, device_id, with_one_time)
        if blob is not None:  # a device that published none is left out
            taken.append((device_id, blob))
    return taken


def _key_package_count(conn: Connection, account: str, device_id: int) -> int:
    (count,) = conn.execute(
        "SELECT count(*) FROM key_packages WHERE account = ? AND device_id = ? AND one_time = 1 AND taken = 0",
        (account, device_id),
    ).fetchone()
    return int(count)
