"""The accounts half of the SQLite backend: invites, accounts and their devices, and the signed
device list with its version check (``StaleDeviceList`` on a stale ``expected_version``). Every
change to an account's identity key or device list appends its key-directory leaf
(``sqlite_keydir.py``) in the same transaction.

A device is created together with its first prekeys (``sqlite_prekeys.py``), in one transaction:
a crash leaves either the device with its keys or nothing. Creating it again with the same
device key (a retry after a lost answer) returns the stored row and writes nothing.

Plain functions of a connection, like the rest of the backend: ``SqliteStore`` (``sqlite.py``) runs
each on its worker thread, inside the transaction it opens where the function writes.
"""

from __future__ import annotations

from typing import Any

from sonet.core import limits

from sonet.core.keydir import encode_entry, leaf_hash

from .base import (
    AccountExists,
    AccountRow,
    AccountSummary,
    InviteRow,
    DeviceKeySet,
    DeviceRow,
    InviteInvalid,
    RemovedDeviceRow,
    StaleDeviceList,
    StoreError,
)
from .dialect import Connection, INTEGRITY_ERRORS
from .sqlite_keydir import _append_leaf
from .sqlite_mailbox import _drop_device_mail
from .sqlite_prekeys import _publish_prekeys

__all__: list[str] = []  # private to the SQLite backend; SqliteStore is the public face

_DEVICE_COLUMNS = "account, device_id, fingerprint, record, created_at"


def _device_row(row: tuple[Any, ...]) -> DeviceRow:
    account, device_id, fingerprint, record, created_at = row
    return DeviceRow(
        account=account,
        device_id=device_id,
        fingerprint=fingerprint,
        record=bytes(record),
        created_at=created_at,
    )


def _add_invite(conn: Connection, token_hash: bytes, now: int, expires_at: int) -> None:
    try:
        conn.execute(
            "INSERT INTO invites (token_hash, created_at, expires_at) VALUES (?, ?, ?)",
            (token_hash, now, expires_at),
        )
    except INTEGRITY_ERRORS as exc:
        raise StoreError("an invite with this hash already exists") from exc


def _invite_usable(conn: Connection, token_hash: bytes, account: str, now: int) -> bool:
    row = conn.execute(
        "SELECT used_by, expires_at FROM invites WHERE token_hash = ?", (token_hash,)
    ).fetchone()
    if row is None:
        return False
    used_by, expires_at = row
    return used_by == account if used_by is not None else expires_at > now


def _register_account(
    conn: Connection,
    account: str,
    fingerprint: str,
    record: bytes,
    account_identity: bytes,
    device_list: bytes,
    invite_hash: bytes | None,
    now: int,
    keys: DeviceKeySet | None = None,
) -> DeviceRow:
    existing = _device_by_fingerprint(conn, fingerprint)
    if existing is not None and existing.account == account:
        # The same device registering the same account again: its answer was lost. Only the
        # holder of the device key gets here (the node checked the record against it), so
        # this tells nobody else anything.
        return _registered_before(conn, existing, account_identity, invite_hash)
    # The invite is checked first, so that without a valid invite nobody can probe which
    # accounts exist.
    if invite_hash is not None:
        consumed = conn.execute(
            "UPDATE invites SET used_at = ?, used_by = ?"
            " WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
            (now, account, invite_hash, now),
        ).rowcount
        if consumed != 1:
            raise InviteInvalid("the invite is unknown, already used or expired")
    elif conn.execute("SELECT 1 FROM removed_accounts WHERE account = ?", (account,)).fetchone():
        # An offboarded address: only the operator's invite gives it out again.
        raise InviteInvalid("this address was removed; only an invite registers it again")
    if conn.execute("SELECT 1 FROM accounts WHERE account = ?", (account,)).fetchone():
        raise AccountExists(f"account {account!r} already exists")
    conn.execute("DELETE FROM removed_accounts WHERE account = ?", (account,))
    if conn.execute("SELECT 1 FROM devices WHERE fingerprint = ?", (fingerprint,)).fetchone():
        raise AccountExists("a device with this identity key is already registered")
    conn.execute(
        "INSERT INTO accounts (account, created_at, account_identity, device_list, device_list_version,"
        " last_device_id) VALUES (?, ?, ?, ?, 1, 1)",
        (account, now, account_identity, device_list),
    )
    conn.execute(
        f"INSERT INTO devices ({_DEVICE_COLUMNS}) VALUES (?, 1, ?, ?, ?)",
        (account, fingerprint, record, now),
    )
    _store_keys(conn, account, 1, keys)
    _append_leaf(conn, account, now)
    return DeviceRow(
        account=account, device_id=1, fingerprint=fingerprint, record=bytes(record), created_at=now
    )


def _registered_before(
    conn: Connection, existing: DeviceRow, account_identity: bytes, invite_hash: bytes | None
) -> DeviceRow:
    """``existing`` if it is what the same Register created (first device, same account key,
    the same invite); a Register that differs is refused as before."""
    if invite_hash is not None:
        used_by = conn.execute("SELECT used_by FROM invites WHERE token_hash = ?", (invite_hash,)).fetchone()
        if used_by is None or used_by[0] != existing.account:
            raise InviteInvalid("the invite is unknown, already used or expired")
    stored = _account(conn, existing.account)
    if existing.device_id != 1 or stored is None or stored.account_identity != bytes(account_identity):
        raise AccountExists("a device with this identity key is already registered")
    return existing


def _store_keys(conn: Connection, account: str, device_id: int, keys: DeviceKeySet | None) -> None:
    """The new device's first prekeys, in the transaction that creates it."""
    if keys is None:
        return
    _publish_prekeys(
        conn,
        account,
        device_id,
        keys.signed_prekey,
        keys.pq_last_resort,
        list(keys.one_time),
        list(keys.pq_one_time),
        limits.MAX_ONE_TIME_PREKEYS,
    )


def _devices(conn: Connection, account: str) -> list[DeviceRow]:
    rows = conn.execute(
        f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE account = ? ORDER BY device_id", (account,)
    )
    return [_device_row(row) for row in rows]


def _device_by_fingerprint(conn: Connection, fingerprint: str) -> DeviceRow | None:
    row = conn.execute(
        f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE fingerprint = ?", (fingerprint,)
    ).fetchone()
    return None if row is None else _device_row(row)


def _removed_device(conn: Connection, fingerprint: str) -> RemovedDeviceRow | None:
    row = conn.execute(
        "SELECT account, device_id, removed_at FROM removed_devices WHERE fingerprint = ?", (fingerprint,)
    ).fetchone()
    return None if row is None else RemovedDeviceRow(account=row[0], device_id=row[1], removed_at=row[2])


def _account(conn: Connection, account: str) -> AccountRow | None:
    row = conn.execute(
        "SELECT account, account_identity, device_list, device_list_version, created_at"
        " FROM accounts WHERE account = ?",
        (account,),
    ).fetchone()
    if row is None:
        return None
    name, identity, device_list, version, created_at = row
    return AccountRow(
        account=name,
        account_identity=bytes(identity),
        device_list=bytes(device_list),
        device_list_version=version,
        created_at=created_at,
    )


def _check_list_version(conn: Connection, account: str, expected_version: int) -> int:
    """The account's last device id, after checking its list is still at ``expected_version``."""
    row = conn.execute(
        "SELECT device_list_version, last_device_id FROM accounts WHERE account = ?", (account,)
    ).fetchone()
    if row is None:
        raise StoreError(f"no account {account!r}")
    version, last_device_id = row
    if version != expected_version:
        raise StaleDeviceList(
            f"the device list of {account!r} is at version {version}, not {expected_version}"
        )
    return last_device_id


def _replace_device_list(
    conn: Connection, account: str, device_list: bytes, version: int, last_device_id: int
) -> None:
    conn.execute(
        "UPDATE accounts SET device_list = ?, device_list_version = ?, last_device_id = ?"
        " WHERE account = ?",
        (device_list, version, last_device_id, account),
    )


def _add_device(
    conn: Connection,
    account: str,
    fingerprint: str,
    record: bytes,
    device_list: bytes,
    expected_version: int,
    now: int,
    keys: DeviceKeySet | None = None,
) -> DeviceRow:
    existing = _device_by_fingerprint(conn, fingerprint)
    if existing is not None:
        if existing.account == account:
            return existing  # the same link again: its answer was lost
        raise AccountExists("a device with this identity key is already registered")
    last_device_id = _check_list_version(conn, account, expected_version)
    # The counter, not max(device_id): the id of a removed device is never given out again.
    device_id = last_device_id + 1
    conn.execute(
        f"INSERT INTO devices ({_DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
        (account, device_id, fingerprint, record, now),
    )
    _store_keys(conn, account, device_id, keys)
    _replace_device_list(conn, account, device_list, expected_version + 1, device_id)
    _append_leaf(conn, account, now)
    return DeviceRow(
        account=account, device_id=device_id, fingerprint=fingerprint, record=bytes(record), created_at=now
    )


def _remove_device(
    conn: Connection, account: str, device_id: int, device_list: bytes, expected_version: int, now: int
) -> bool:
    last_device_id = _check_list_version(conn, account, expected_version)
    found = conn.execute(
        "SELECT fingerprint FROM devices WHERE account = ? AND device_id = ?", (account, device_id)
    ).fetchone()
    if found is None:
        return False  # nothing written: the list stays as it was
    # Its mailbox and dedup records first, a chunk at a time; its prekeys and KeyPackages go
    # with it (ON DELETE CASCADE).
    _drop_device_mail(conn, account, device_id)
    conn.execute("DELETE FROM devices WHERE account = ? AND device_id = ?", (account, device_id))
    conn.execute(
        "INSERT INTO removed_devices (fingerprint, account, device_id, removed_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (fingerprint) DO UPDATE SET account = excluded.account, device_id = excluded.device_id,"
        " removed_at = excluded.removed_at",
        (found[0], account, device_id, now),
    )
    _replace_device_list(conn, account, device_list, expected_version + 1, last_device_id)
    _append_leaf(conn, account, now)
    return True


# Operator administration (node/admin.py) ------------------------------------------------------

_SUMMARY = (
    "SELECT a.account, a.created_at, a.disabled_at,"
    " (SELECT count(*) FROM devices d WHERE d.account = a.account),"
    " (SELECT count(*) FROM mailbox m WHERE m.account = a.account),"
    " (SELECT coalesce(sum(size), 0) FROM mailbox m WHERE m.account = a.account)"
    " FROM accounts a"
)


def _summary(row: tuple[Any, ...]) -> AccountSummary:
    account, created_at, disabled_at, devices, envelopes, envelope_bytes = row
    return AccountSummary(
        account=account,
        created_at=created_at,
        disabled_at=disabled_at,
        devices=devices,
        envelopes=envelopes,
        envelope_bytes=envelope_bytes,
    )


def _account_summaries(conn: Connection) -> list[AccountSummary]:
    return [_summary(row) for row in conn.execute(_SUMMARY + " ORDER BY a.account")]


def _account_summary(conn: Connection, account: str) -> AccountSummary | None:
    row = conn.execute(_SUMMARY + " WHERE a.account = ?", (account,)).fetchone()
    return None if row is None else _summary(row)


def _mailbox_usage(conn: Connection, account: str) -> dict[int, tuple[int, int]]:
    rows = conn.execute(
        "SELECT device_id, count(*), coalesce(sum(size), 0) FROM mailbox WHERE account = ? GROUP BY device_id",
        (account,),
    )
    return {device_id: (count, size) for device_id, count, size in rows}


def _account_disabled(conn: Connection, account: str) -> bool:
    row = conn.execute("SELECT disabled_at FROM accounts WHERE account = ?", (account,)).fetchone()
    return row is not None and row[0] is not None


def _bump_admin_version(conn: Connection) -> None:
    conn.execute("UPDATE admin_version SET version = version + 1 WHERE id = 1")


def _set_account_disabled(conn: Connection, account: str, disabled: bool, now: int) -> bool:
    if disabled:
        changed = conn.execute(
            "UPDATE accounts SET disabled_at = coalesce(disabled_at, ?) WHERE account = ?", (now, account)
        ).rowcount
    else:
        changed = conn.execute("UPDATE accounts SET disabled_at = NULL WHERE account = ?", (account,)).rowcount
    if changed:
        _bump_admin_version(conn)
    return changed == 1


def _remove_account(conn: Connection, account: str, now: int) -> list[str] | None:
    if conn.execute("SELECT 1 FROM accounts WHERE account = ?", (account,)).fetchone() is None:
        return None
    devices = _devices(conn, account)
    for device in devices:
        _drop_device_mail(conn, account, device.device_id)  # in chunks, not in the cascade below
        conn.execute(
            "INSERT INTO removed_devices (fingerprint, account, device_id, removed_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (fingerprint) DO UPDATE SET account = excluded.account, device_id = excluded.device_id,"
            " removed_at = excluded.removed_at",
            (device.fingerprint, account, device.device_id, now),
        )
    # Devices go with the account, and their prekeys, KeyPackages and group memberships with
    # them (ON DELETE CASCADE); their mailboxes and dedup records went above.
    conn.execute("DELETE FROM accounts WHERE account = ?", (account,))
    conn.execute(
        "INSERT INTO removed_accounts (account, removed_at) VALUES (?, ?)"
        " ON CONFLICT (account) DO UPDATE SET removed_at = excluded.removed_at",
        (account, now),
    )
    _append_tombstone(conn, account, now)
    _bump_admin_version(conn)
    return [device.fingerprint for device in devices]


def _append_tombstone(conn: Connection, account: str, now: int) -> None:
    """The account's last leaf: no identity key and no device list from then on, chained to
    its previous leaf like every change (a new registration of the address chains to this)."""
    (prev,) = conn.execute(
        "SELECT coalesce(max(leaf_index), -1) FROM directory_leaves WHERE account = ?", (account,)
    ).fetchone()
    (index,) = conn.execute("SELECT coalesce(max(leaf_index) + 1, 0) FROM directory_leaves").fetchone()
    leaf = encode_entry(account=account, identity=b"", device_list=b"", prev=prev, at=now)
    conn.execute(
        "INSERT INTO directory_leaves (leaf_index, account, leaf, leaf_hash) VALUES (?, ?, ?, ?)",
        (index, account, leaf, leaf_hash(leaf)),
    )


def _account_removed(conn: Connection, account: str) -> int | None:
    row = conn.execute("SELECT removed_at FROM removed_accounts WHERE account = ?", (account,)).fetchone()
    return None if row is None else row[0]


def _admin_version(conn: Connection) -> int:
    row = conn.execute("SELECT version FROM admin_version WHERE id = 1").fetchone()
    return 0 if row is None else row[0]


def _invites(conn: Connection) -> list[InviteRow]:
    rows = conn.execute(
        "SELECT token_hash, created_at, expires_at, used_at, used_by FROM invites ORDER BY created_at, token_hash"
    )
    return [
        InviteRow(token_hash=bytes(h), created_at=c, expires_at=e, used_at=ua, used_by=ub) for h, c, e, ua, ub in rows
    ]


def _revoke_invite(conn: Connection, token_hash: bytes) -> bool:
    return conn.execute("DELETE FROM invites WHERE token_hash = ? AND used_at IS NULL", (token_hash,)).rowcount == 1
