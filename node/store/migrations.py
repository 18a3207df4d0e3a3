"""Numbered schema migrations for the SQLite store, tracked in ``PRAGMA user_version``.

Migration N (1-based) is ``MIGRATIONS[N - 1]``. Never edit a released migration: append a new
one. The pending migrations run in one ``BEGIN IMMEDIATE`` transaction together with the version
bump, so a crash leaves the database at the version it had, never half-migrated, two processes
opening the same file at once apply each step exactly once, and a new database costs one commit
(one fsync) instead of one per migration.

An empty database gets the latest schema from one generated script instead (fresh_schema.py,
~5x cheaper): after appending a migration, run ``python -m sonet.node.store.fresh_schema_gen``
(tests/node/store/test_fresh_schema.py fails until then; new databases run the migrations
meanwhile).
"""

from __future__ import annotations

import logging
import sqlite3

from .base import StoreError
from .fresh_schema import FRESH_STATEMENTS, FRESH_VERSION

__all__ = ["MIGRATIONS", "LATEST_VERSION", "log_migrated", "migrate"]

log = logging.getLogger("sonet.node.store")

_V1 = (
    """CREATE TABLE accounts (
        account     TEXT PRIMARY KEY,
        created_at  INTEGER NOT NULL
    )""",
    """CREATE TABLE devices (
        account     TEXT NOT NULL REFERENCES accounts(account) ON DELETE CASCADE,
        device_id   INTEGER NOT NULL,
        fingerprint TEXT NOT NULL UNIQUE,
        record      BLOB NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (account, device_id)
    )""",
    # Only the hash of a token is stored: a copy of the database does not yield usable invites.
    """CREATE TABLE invites (
        token_hash  BLOB PRIMARY KEY,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        used_at     INTEGER,
        used_by     TEXT
    )""",
    # AUTOINCREMENT: a seq is never reused, even after the newest rows are deleted, so a
    # device's `after_seq` cursor can never skip a later envelope.
    """CREATE TABLE mailbox (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        account     TEXT NOT NULL,
        device_id   INTEGER NOT NULL,
        id          BLOB NOT NULL,
        expires     INTEGER NOT NULL,
        kind        INTEGER NOT NULL,
        body        BLOB NOT NULL,
        size        INTEGER NOT NULL,  -- len(body), so quota sums never touch the blobs
        stored_at   INTEGER NOT NULL,
        UNIQUE (account, device_id, id),
        FOREIGN KEY (account, device_id) REFERENCES devices(account, device_id) ON DELETE CASCADE
    )""",
    "CREATE INDEX mailbox_pending ON mailbox (account, device_id, seq)",
    "CREATE INDEX mailbox_quota ON mailbox (account, device_id, expires, size)",
    "CREATE INDEX mailbox_expiry ON mailbox (expires)",
    # Ids of acknowledged envelopes, kept until the envelope would have expired so that a
    # retransmission (at-least-once delivery between nodes) is not delivered twice.
    """CREATE TABLE acked_ids (
        account     TEXT NOT NULL,
        device_id   INTEGER NOT NULL,
        id          BLOB NOT NULL,
        expires     INTEGER NOT NULL,
        PRIMARY KEY (account, device_id, id),
        FOREIGN KEY (account, device_id) REFERENCES devices(account, device_id) ON DELETE CASCADE
    ) WITHOUT ROWID""",
    "CREATE INDEX acked_ids_expiry ON acked_ids (expires)",
    "CREATE INDEX invites_expiry ON invites (expires_at)",
)

# Version 2 (E2EE sessions): the account identity key and signed device list, a device id
# counter (ids are never reused, even after the newest device is removed), and prekeys.
_V2 = (
    # Accounts created under version 1 have no identity key yet: empty key, empty list and
    # version 0 until their owner sets one (the node refuses list changes on them meanwhile).
    "ALTER TABLE accounts ADD COLUMN account_identity BLOB NOT NULL DEFAULT x''",
    "ALTER TABLE accounts ADD COLUMN device_list BLOB NOT NULL DEFAULT x''",
    "ALTER TABLE accounts ADD COLUMN device_list_version INTEGER NOT NULL DEFAULT 0",
    # the highest device id ever given out in this account
    "ALTER TABLE accounts ADD COLUMN last_device_id INTEGER NOT NULL DEFAULT 0",
    """UPDATE accounts SET last_device_id =
        (SELECT coalesce(max(device_id), 0) FROM devices WHERE devices.account = accounts.account)""",
    # One table for every prekey of a device. one_time = 0: the current signed X25519 prekey
    # (kind 'x25519') or the ML-KEM last-resort key (kind 'mlkem768'), at most one of each.
    # one_time = 1: one-time keys, handed out oldest first (by seq). A handed-out one-time key
    # stays as a tombstone (taken = 1, blob emptied), so that the same key id is never accepted,
    # and so never handed out, again.
    """CREATE TABLE prekeys (
        seq         INTEGER PRIMARY KEY,
        account     TEXT NOT NULL,
        device_id   INTEGER NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('x25519', 'mlkem768')),
        key_id      INTEGER NOT NULL,
        blob        BLOB NOT NULL,
        one_time    INTEGER NOT NULL CHECK (one_time IN (0, 1)),
        taken       INTEGER NOT NULL DEFAULT 0 CHECK (taken IN (0, 1)),
        FOREIGN KEY (account, device_id) REFERENCES devices(account, device_id) ON DELETE CASCADE
    )""",
    "CREATE UNIQUE INDEX prekeys_current ON prekeys (account, device_id, kind) WHERE one_time = 0",
    "CREATE UNIQUE INDEX prekeys_one_time ON prekeys (account, device_id, kind, key_id) WHERE one_time = 1",
    "CREATE INDEX prekeys_available ON prekeys (account, device_id, kind, one_time, taken, seq)",
)

# Version 3 (federation): pinned peer nodes. `via` names another peer that relays for this one;
# the store checks it at add time (no foreign key, so the check gives a clear error).
_V3 = (
    """CREATE TABLE peers (
        name        TEXT PRIMARY KEY,
        url         TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        via         TEXT NULL,
        added_at    INTEGER NOT NULL
    )""",
    "CREATE INDEX peers_fingerprint ON peers (fingerprint)",
)

# Version 4 (federation delivery): one durable outbox for every destination node, the keys of
# items already handed on (so a retransmission from upstream is not queued twice), the delivery
# state of envelopes this node's devices sent to other nodes, and each peer's learned full key.
_V4 = (
    # AUTOINCREMENT: a seq is never reused, so an outbox_done for items that expired meanwhile
    # can never delete a newer item that took the same seq. The tracking columns (all NULL for
    # relayed items and reports) name the delivery row an expired item fails.
    """CREATE TABLE outbox (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        dest            TEXT NOT NULL,
        key             BLOB NOT NULL,
        expires         INTEGER NOT NULL,
        data            BLOB NOT NULL,
        queued_at       INTEGER NOT NULL,
        sender_account  TEXT NULL,
        sender_device   INTEGER NULL,
        id              BLOB NULL,
        account         TEXT NULL,
        device          INTEGER NULL,
        UNIQUE (dest, key)
    )""",
    "CREATE INDEX outbox_queue ON outbox (dest, seq)",
    "CREATE INDEX outbox_expiry ON outbox (expires)",
    """CREATE TABLE outbox_sent (
        dest        TEXT NOT NULL,
        key         BLOB NOT NULL,
        expires     INTEGER NOT NULL,
        PRIMARY KEY (dest, key)
    ) WITHOUT ROWID""",
    "CREATE INDEX outbox_sent_expiry ON outbox_sent (expires)",
    # No foreign key to the sender's device: rows go with their own expiry, and device ids are
    # never reused, so a removed device's rows cannot be seen by another device.
    """CREATE TABLE deliveries (
        sender_account  TEXT NOT NULL,
        sender_device   INTEGER NOT NULL,
        id              BLOB NOT NULL,
        account         TEXT NOT NULL,
        device          INTEGER NOT NULL,
        dest            TEXT NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('queued', 'accepted', 'failed')),
        code            TEXT NOT NULL,
        updated_at      INTEGER NOT NULL,
        expires         INTEGER NOT NULL,
        PRIMARY KEY (sender_account, sender_device, id, account, device)
    ) WITHOUT ROWID""",
    # reports name (id, account, device), not the sender
    "CREATE INDEX deliveries_envelope ON deliveries (id, account, device)",
    "CREATE INDEX deliveries_expiry ON deliveries (expires)",
    # NULL until learned; it lives in the peer's row, so removing or re-adding a peer forgets it
    "ALTER TABLE peers ADD COLUMN key BLOB NULL",
)

# Version 5 (key transparency): the append-only directory log of every change to an account's
# identity key or device list, this node's signed heads with their witnesses' cosignatures, the
# last head of each other node this node cosigned, and the split views it detected.
_V5 = (
    # leaf_index is 0-based and dense: each insert takes max + 1 inside its write transaction.
    # No foreign key to accounts: a leaf never goes away.
    """CREATE TABLE directory_leaves (
        leaf_index  INTEGER PRIMARY KEY,
        account     TEXT NOT NULL,
        leaf        BLOB NOT NULL,
        leaf_hash   BLOB NOT NULL
    )""",
    "CREATE INDEX directory_leaves_account ON directory_leaves (account, leaf_index)",
    """CREATE TABLE directory_heads (
        size        INTEGER PRIMARY KEY,
        root        BLOB NOT NULL,
        head        BLOB NOT NULL
    )""",
    """CREATE TABLE directory_cosignatures (
        size        INTEGER NOT NULL REFERENCES directory_heads(size),
        witness     TEXT NOT NULL,
        cosignature BLOB NOT NULL,
        PRIMARY KEY (size, witness)
    ) WITHOUT ROWID""",
    """CREATE TABLE witnessed (
        node        TEXT PRIMARY KEY,
        size        INTEGER NOT NULL,
        root        BLOB NOT NULL,
        head        BLOB NOT NULL,
        at          INTEGER NOT NULL
    )""",
    # One row per node: the first evidence is what matters, later ones add nothing.
    """CREATE TABLE splits (
        node        TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,
        first       BLOB NOT NULL,
        second      BLOB NOT NULL,
        source      TEXT NOT NULL,
        detected_at INTEGER NOT NULL
    )""",
)

_V6 = (
    # The key fingerprint of each removed device, so that device hears "removed" when it comes
    # back instead of "not registered". A fingerprint is the hash of a public key: nothing secret.
    """CREATE TABLE removed_devices (
        fingerprint TEXT PRIMARY KEY,
        account     TEXT NOT NULL,
        device_id   INTEGER NOT NULL,
        removed_at  INTEGER NOT NULL
    ) WITHOUT ROWID""",
)

# Version 7 (metadata): delivery rows no longer name the recipient account, only its node and
# device number (the sending device knows whom it wrote to; its node need not keep it). Rows are
# copied over; the per-envelope match is by (id, dest, device).
_V7 = (
    """CREATE TABLE deliveries_v7 (
        sender_account  TEXT NOT NULL,
        sender_device   INTEGER NOT NULL,
        id              BLOB NOT NULL,
        dest            TEXT NOT NULL,
        device          INTEGER NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('queued', 'accepted', 'failed')),
        code            TEXT NOT NULL,
        updated_at      INTEGER NOT NULL,
        expires         INTEGER NOT NULL,
        PRIMARY KEY (sender_account, sender_device, id, dest, device)
    ) WITHOUT ROWID""",
    """INSERT OR IGNORE INTO deliveries_v7
        SELECT sender_account, sender_device, id, dest, device, state, code, updated_at, expires FROM deliveries""",
    "DROP TABLE deliveries",
    "ALTER TABLE deliveries_v7 RENAME TO deliveries",
    "CREATE INDEX deliveries_envelope ON deliveries (id, dest, device)",
    "CREATE INDEX deliveries_expiry ON deliveries (expires)",
)

# Stored-bytes budgets (node/store/sqlite_budgets.py): mailbox rows name the local device that
# sent them (kept only until the envelope is acknowledged, expires or its mailbox goes; the
# envelopes peers push name none), outbox rows their size and, for relayed items, the origin
# node; ``storage_usage`` holds what each actor stores, kept by triggers in the same
# transactions as the rows. A delivery row keeps aside a report that came while its item was
# still in this node's outbox (nobody downstream had it from us): applied once the item is
# handed on, never before.

def _sender_triggers(table: str, *, charge: str, release: str) -> tuple[str, str]:
    """The triggers that keep what a sending device and account hold in ``table`` counted in
    storage_usage: charged when a row naming its sender is stored, released when it goes."""
    return (
        f"""CREATE TRIGGER {charge} AFTER INSERT ON {table} WHEN NEW.sender_account IS NOT NULL BEGIN
        INSERT INTO storage_usage VALUES ('device', NEW.sender_account || '/' || NEW.sender_device, 1, NEW.size)
            ON CONFLICT (scope, key) DO UPDATE SET count = count + 1, bytes = bytes + excluded.bytes;
        INSERT INTO storage_usage VALUES ('account', NEW.sender_account, 1, NEW.size)
            ON CONFLICT (scope, key) DO UPDATE SET count = count + 1, bytes = bytes + excluded.bytes;
    END""",
        f"""CREATE TRIGGER {release} AFTER DELETE ON {table} WHEN OLD.sender_account IS NOT NULL BEGIN
        UPDATE storage_usage SET count = count - 1, bytes = bytes - OLD.size
            WHERE scope = 'device' AND key = OLD.sender_account || '/' || OLD.sender_device;
        UPDATE storage_usage SET count = count - 1, bytes = bytes - OLD.size
            WHERE scope = 'account' AND key = OLD.sender_account;
    END""",
    )


_BUDGETS = (
    "ALTER TABLE mailbox ADD COLUMN sender_account TEXT NULL",
    "ALTER TABLE mailbox ADD COLUMN sender_device INTEGER NULL",
    "ALTER TABLE outbox ADD COLUMN size INTEGER NOT NULL DEFAULT 0",
    "UPDATE outbox SET size = length(data)",
    "ALTER TABLE outbox ADD COLUMN origin TEXT NULL",
    "CREATE INDEX outbox_tracked ON outbox (id, dest, device) WHERE id IS NOT NULL",
    "ALTER TABLE deliveries ADD COLUMN early_state TEXT NULL",
    "ALTER TABLE deliveries ADD COLUMN early_code TEXT NULL",
    "ALTER TABLE deliveries ADD COLUMN early_at INTEGER NULL",
    """CREATE TABLE storage_usage (
        scope   TEXT NOT NULL,
        key     TEXT NOT NULL,
        count   INTEGER NOT NULL,
        bytes   INTEGER NOT NULL,
        PRIMARY KEY (scope, key)
    ) WITHOUT ROWID""",
    *_sender_triggers("mailbox", charge="mailbox_charge", release="mailbox_release"),
    """CREATE TRIGGER outbox_charge AFTER INSERT ON outbox BEGIN
        INSERT INTO storage_usage VALUES ('outbox', NEW.dest, 1, NEW.size)
            ON CONFLICT (scope, key) DO UPDATE SET count = count + 1, bytes = bytes + excluded.bytes;
    END""",
    """CREATE TRIGGER outbox_release AFTER DELETE ON outbox BEGIN
        UPDATE storage_usage SET count = count - 1, bytes = bytes - OLD.size WHERE scope = 'outbox' AND key = OLD.dest;
    END""",
    *_sender_triggers("outbox", charge="outbox_charge_sender", release="outbox_release_sender"),
    """CREATE TRIGGER outbox_charge_origin AFTER INSERT ON outbox WHEN NEW.origin IS NOT NULL BEGIN
        INSERT INTO storage_usage VALUES ('origin', NEW.origin, 1, NEW.size)
            ON CONFLICT (scope, key) DO UPDATE SET count = count + 1, bytes = bytes + excluded.bytes;
    END""",
    """CREATE TRIGGER outbox_release_origin AFTER DELETE ON outbox WHEN OLD.origin IS NOT NULL BEGIN
        UPDATE storage_usage SET count = count - 1, bytes = bytes - OLD.size WHERE scope = 'origin' AND key = OLD.origin;
    END""",
    # What is queued already counts from the start (mailbox rows stored before name no sender).
    """INSERT INTO storage_usage SELECT 'outbox', dest, count(*), sum(size) FROM outbox GROUP BY dest""",
    """INSERT INTO storage_usage SELECT 'device', sender_account || '/' || sender_device, count(*), sum(size)
        FROM outbox WHERE sender_account IS NOT NULL GROUP BY sender_account, sender_device""",
    """INSERT INTO storage_usage SELECT 'account', sender_account, count(*), sum(size)
        FROM outbox WHERE sender_account IS NOT NULL GROUP BY sender_account""",
)

# MLS KeyPackages devices publish for others to add them to groups (docs/groups.md)
_KEY_PACKAGES: tuple[str, ...] = (
    # one_time = 0: the device's last-resort KeyPackage (at most one, replaced on publish, handed
    # out whenever no one-time one is left). one_time = 1: handed out once, oldest first (by
    # seq); a handed-out one stays as a tombstone (taken = 1, blob emptied) so that the same
    # KeyPackage (by its KeyPackageRef) is never accepted, and so never handed out, again.
    """CREATE TABLE key_packages (
        seq         INTEGER PRIMARY KEY,
        account     TEXT NOT NULL,
        device_id   INTEGER NOT NULL,
        ref         BLOB NOT NULL,
        blob        BLOB NOT NULL,
        one_time    INTEGER NOT NULL CHECK (one_time IN (0, 1)),
        taken       INTEGER NOT NULL DEFAULT 0 CHECK (taken IN (0, 1)),
        FOREIGN KEY (account, device_id) REFERENCES devices(account, device_id) ON DELETE CASCADE
    )""",
    "CREATE UNIQUE INDEX key_packages_last_resort ON key_packages (account, device_id) WHERE one_time = 0",
    "CREATE UNIQUE INDEX key_packages_one_time ON key_packages (account, device_id, ref) WHERE one_time = 1",
    "CREATE INDEX key_packages_available ON key_packages (account, device_id, one_time, taken, seq)",
)

# Groups: what a hub keeps of the groups it hosts, and every node of its member devices
# (node/store/sqlite_groups.py; docs/groups.md "What each node keeps"). Dedup rows carry the
# expiry of the items they deduplicate: a retransmission cannot come after its item expired.
_GROUPS: tuple[str, ...] = (
    # a group this node is (or was) the hub of: HubGroup.to_bytes(), its last sequence number,
    # and after a hand-over the node it went to (later submissions are forwarded there)
    """CREATE TABLE hosted_groups (
        grp         BLOB PRIMARY KEY,
        state       BLOB NOT NULL,
        seq         INTEGER NOT NULL,
        moved_to    TEXT NULL,
        created_at  INTEGER NOT NULL
    ) WITHOUT ROWID""",
    # the submissions a hub ordered or refused, so a retried push is taken once
    """CREATE TABLE hub_refs (
        grp         BLOB NOT NULL,
        ref         BLOB NOT NULL,
        outcome     TEXT NOT NULL,
        expires     INTEGER NOT NULL,
        PRIMARY KEY (grp, ref)
    ) WITHOUT ROWID""",
    "CREATE INDEX hub_refs_expiry ON hub_refs (expires)",
    # every node: the groups it has member devices in, with the highest sequence number whose
    # member list it applied
    """CREATE TABLE member_groups (
        grp         BLOB PRIMARY KEY,
        applied_seq INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE group_members (
        grp         BLOB NOT NULL,
        account     TEXT NOT NULL,
        device_id   INTEGER NOT NULL,
        PRIMARY KEY (grp, account, device_id),
        FOREIGN KEY (account, device_id) REFERENCES devices(account, device_id) ON DELETE CASCADE
    ) WITHOUT ROWID""",
    "CREATE INDEX group_members_device ON group_members (account, device_id)",
    # the ORDERED items this node took (by group and sequence number), so a retried push is
    # delivered once
    """CREATE TABLE group_seen (
        grp         BLOB NOT NULL,
        seq         INTEGER NOT NULL,
        expires     INTEGER NOT NULL,
        PRIMARY KEY (grp, seq)
    ) WITHOUT ROWID""",
    "CREATE INDEX group_seen_expiry ON group_seen (expires)",
    # the submissions of this node's devices: which device a VERDICT goes to
    """CREATE TABLE group_submissions (
        grp         BLOB NOT NULL,
        ref         BLOB NOT NULL,
        account     TEXT NOT NULL,
        device_id   INTEGER NOT NULL,
        expires     INTEGER NOT NULL,
        PRIMARY KEY (grp, ref),
        FOREIGN KEY (account, device_id) REFERENCES devices(account, device_id) ON DELETE CASCADE
    ) WITHOUT ROWID""",
    "CREATE INDEX group_submissions_expiry ON group_submissions (expires)",
)

_GROUP_BUDGETS: tuple[str, ...] = (
    # the hub this node takes the group's ORDERED items from (NULL: none yet; set by the first
    # commit that adds its devices, moved by a hand-over commit's copy), and the highest
    # sequence number taken from it (docs/groups.md "What each node keeps")
    "ALTER TABLE member_groups ADD COLUMN hub TEXT",
    "ALTER TABLE member_groups ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0",
    # member devices an ORDERED item (group, seq) still has to reach: their group allowance was
    # full when ``origin`` (its hub) pushed it, which pushes it again later
    """CREATE TABLE group_waiting (
        grp         BLOB NOT NULL,
        seq         INTEGER NOT NULL,
        account     TEXT NOT NULL,
        device_id   INTEGER NOT NULL,
        origin      TEXT NOT NULL,
        expires     INTEGER NOT NULL,
        PRIMARY KEY (grp, seq, account, device_id),
        FOREIGN KEY (account, device_id) REFERENCES devices(account, device_id) ON DELETE CASCADE
    ) WITHOUT ROWID""",
    "CREATE INDEX group_waiting_expiry ON group_waiting (expires)",
    # a mailbox's group items, counted against their own allowance
    "CREATE INDEX mailbox_group_usage ON mailbox (account, device_id, kind, expires, size)",
)

_GROUP_TREES: tuple[str, ...] = (
    # a hub's public ratchet trees of the epochs it issued Welcomes for (Welcomes go without
    # the tree; joiners fetch it: node/store/sqlite_group_trees.py), bounded per group
    """CREATE TABLE group_trees (
        grp         BLOB NOT NULL,
        epoch       INTEGER NOT NULL,
        tree        BLOB NOT NULL,
        size        INTEGER NOT NULL,
        expires     INTEGER NOT NULL,
        PRIMARY KEY (grp, epoch)
    )""",
    "CREATE INDEX group_trees_expiry ON group_trees (expires)",
)

_GROUP_BODIES: tuple[str, ...] = (
    # one stored body per group item per node, shared by the mailbox rows of its member
    # devices (node/store/sqlite_group_bodies.py): a Kind.GROUP row names its body in
    # ``body_ref`` and keeps ``body`` empty (``size`` stays the item's length: the device's
    # group allowance counts it). Found again by its digest; deleted with its last row.
    """CREATE TABLE group_bodies (
        id          INTEGER PRIMARY KEY,
        digest      BLOB NOT NULL UNIQUE,
        body        BLOB NOT NULL,
        size        INTEGER NOT NULL
    )""",
    "ALTER TABLE mailbox ADD COLUMN body_ref INTEGER NULL",
    "CREATE INDEX mailbox_body_ref ON mailbox (body_ref) WHERE body_ref IS NOT NULL",
    # every way a row goes (acknowledged, expired, its device removed) releases its body
    """CREATE TRIGGER group_body_release AFTER DELETE ON mailbox WHEN OLD.body_ref IS NOT NULL BEGIN
        DELETE FROM group_bodies WHERE id = OLD.body_ref
            AND NOT EXISTS (SELECT 1 FROM mailbox WHERE body_ref = OLD.body_ref);
    END""",
    # a fresh random tag per hub state written (node/hub_cache.py): a decoded state kept in
    # memory is current only while its tag is the stored one. A state written without a new
    # tag (a writer that keeps no cache) clears it, so no kept copy can match it. From here on
    # ``seq`` is the group's sequence number: an application message moves it without writing
    # the state again (whose own seq may be older).
    "ALTER TABLE hosted_groups ADD COLUMN state_tag BLOB NULL",
    """CREATE TRIGGER hosted_groups_untag AFTER UPDATE OF state ON hosted_groups
        WHEN NEW.state_tag IS OLD.state_tag AND NEW.state_tag IS NOT NULL BEGIN
        UPDATE hosted_groups SET state_tag = NULL WHERE grp = NEW.grp;
    END""",
)

_HANDOVERS: tuple[str, ...] = (
    # a hub hand-over arriving at the new hub in parts (node/store/sqlite_handover.py): each
    # part as its encoded HANDOVER item, per (group, the node that pushed it, the hand-over's
    # sequence number), until all ``parts`` are here and the group is adopted
    """CREATE TABLE handover_parts (
        grp         BLOB NOT NULL,
        origin      TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        part        INTEGER NOT NULL,
        parts       INTEGER NOT NULL,
        item        BLOB NOT NULL,
        expires     INTEGER NOT NULL,
        PRIMARY KEY (grp, origin, seq, part)
    )""",
    "CREATE INDEX handover_parts_expiry ON handover_parts (expires)",
    # submissions that came to the new hub before it adopted the group, in arrival order (id)
    """CREATE TABLE held_submits (
        id          INTEGER PRIMARY KEY,
        grp         BLOB NOT NULL,
        ref         BLOB NOT NULL,
        origin      TEXT NOT NULL,
        item        BLOB NOT NULL,
        expires     INTEGER NOT NULL,
        UNIQUE (grp, ref)
    )""",
    "CREATE INDEX held_submits_expiry ON held_submits (expires)",
)

# a member node named the next hub remembers which hub named it: only that one hands it over
_HANDOVER_FROM: tuple[str, ...] = ("ALTER TABLE member_groups ADD COLUMN handed_over_by TEXT",)

# a disappearing message's delivery-status row goes at its envelope's expiry (node/store/vanishing.py)
_VANISHING: tuple[str, ...] = (
    "ALTER TABLE deliveries ADD COLUMN vanishes INTEGER NULL",
    "CREATE INDEX deliveries_vanishing ON deliveries (vanishes) WHERE vanishes IS NOT NULL",
)

# operator administration (node/admin.py): a disabled account keeps everything but its devices
# are refused; a removed address is kept so that only an invite registers it again; the running
# node polls admin_version and re-checks its connections when it moved
_ADMIN: tuple[str, ...] = (
    "ALTER TABLE accounts ADD COLUMN disabled_at INTEGER NULL",
    """CREATE TABLE removed_accounts (
        account     TEXT PRIMARY KEY,
        removed_at  INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "CREATE TABLE admin_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)",
    "INSERT INTO admin_version (id, version) VALUES (1, 0)",
)

# The hub's timed items (docs/groups.md "Disappearing messages on nodes"): per hosted group the
# last sequence number given to an item that does not expire, and the latest expiry of the timed
# items since (core/groups/hub.py HubGroup.floor / gap_expires). Every item ordered before this
# version does not expire: its floor is the group's last sequence number.
_GROUP_EXPIRY = (
    "ALTER TABLE hosted_groups ADD COLUMN floor INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE hosted_groups ADD COLUMN gap_expires INTEGER NOT NULL DEFAULT 0",
    "UPDATE hosted_groups SET floor = seq",
)

# Device linking across the processes of one node (node/linking.py, sqlite_links.py): the
# provisioning slots, their expiry and their one-shot answer, where every process sees them.
# Short-lived (ten minutes at most): nothing here is a promise kept across a restore.
_LINK_SLOTS: tuple[str, ...] = (
    """CREATE TABLE link_slots (
        slot          BLOB PRIMARY KEY,
        ephemeral     BLOB NOT NULL,
        expires       INTEGER NOT NULL,
        owner         TEXT NOT NULL,
        source        TEXT NOT NULL,
        device        TEXT NOT NULL,
        approved_for  TEXT NULL,
        offer         BLOB NULL
    )""",
    "CREATE INDEX link_slots_expires ON link_slots (expires)",
    "CREATE INDEX link_slots_source ON link_slots (source, expires)",
)

# Less index work per relayed envelope (issue 14 item 1; docs/performance.md "Store work per
# envelope"). A delivery row is keyed by what reports and the sender's questions look it up by,
# (id, dest, device) first, so no second index repeats that key; the envelope id is random, so
# every index holding it costs a fresh page per row. A mailbox's quota is read from
# mailbox_group_usage (the same columns plus kind), so mailbox_quota only cost writes.
_LEANER_RELAY = (
    """CREATE TABLE deliveries_v20 (
        sender_account  TEXT NOT NULL,
        sender_device   INTEGER NOT NULL,
        id              BLOB NOT NULL,
        dest            TEXT NOT NULL,
        device          INTEGER NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('queued', 'accepted', 'failed')),
        code            TEXT NOT NULL,
        updated_at      INTEGER NOT NULL,
        expires         INTEGER NOT NULL,
        early_state     TEXT NULL,
        early_code      TEXT NULL,
        early_at        INTEGER NULL,
        vanishes        INTEGER NULL,
        PRIMARY KEY (id, dest, device, sender_account, sender_device)
    ) WITHOUT ROWID""",
    """INSERT INTO deliveries_v20
        SELECT sender_account, sender_device, id, dest, device, state, code, updated_at, expires,
               early_state, early_code, early_at, vanishes FROM deliveries""",
    "DROP TABLE deliveries",
    "ALTER TABLE deliveries_v20 RENAME TO deliveries",
    "CREATE INDEX deliveries_expiry ON deliveries (expires)",
    "CREATE INDEX deliveries_vanishing ON deliveries (vanishes) WHERE vanishes IS NOT NULL",
    "DROP INDEX mailbox_quota",
)

# Outbox rows are counted in storage_usage by the two functions that insert and delete them
# (sqlite_budgets.py UsageChanges: once per key and write), not by triggers per row and scope.
_OUTBOX_USAGE_IN_WRITES = (
    "DROP TRIGGER outbox_charge",
    "DROP TRIGGER outbox_release",
    "DROP TRIGGER outbox_charge_sender",
    "DROP TRIGGER outbox_release_sender",
    "DROP TRIGGER outbox_charge_origin",
    "DROP TRIGGER outbox_release_origin",
)

# Acknowledged ids without an index of their expiry (issue 14 item 1). An ordinary id's expiry is
# rounded up to a day (sqlite_mailbox.py ACKED_ID_GRANULARITY_MS: all of a day's acks share it),
# so the index on (expires) ordered each day's ids by the random id and every ack dirtied a page
# of it beside the one of the key. Only short-lived ids (expiry to the ms, never a whole day:
# vanishing.py) are still indexed by expiry, to go at their time; the day values in use are kept
# in ``acked_days``, and a day's ids are deleted by one pass over the table once that day is
# past. An index ordered by insertion instead would keep the order of acks, which the rounding
# is there to hide. 86,400,000: ACKED_ID_GRANULARITY_MS when this was written (frozen here; the
# queries of sqlite_mailbox.py name the same predicate, tests/node/store/test_acked_days.py).
_ACKED_DAYS = (
    "DROP INDEX acked_ids_expiry",
    "CREATE INDEX acked_ids_vanishing ON acked_ids (expires) WHERE expires % 86400000 != 0",
    "CREATE TABLE acked_days (expires INTEGER PRIMARY KEY)",
    "INSERT INTO acked_days (expires) SELECT DISTINCT expires FROM acked_ids WHERE expires % 86400000 = 0",
)

# A mailbox's quota read in O(1) (sqlite_mailbox.py ``_mailbox_usage``): its rows counted per
# kind, by the writes that store and delete them (``MailboxCounts``), not by a count of its rows
# at each write (up to the whole quota's worth of index entries). A device removed takes its
# counters with it, as its rows (ON DELETE CASCADE). Filled from the rows already stored.
_MAILBOX_COUNTS = (
    """CREATE TABLE mailbox_counts (
        account     TEXT NOT NULL,
        device_id   INTEGER NOT NULL,
        kind        INTEGER NOT NULL,
        count       INTEGER NOT NULL,
        bytes       INTEGER NOT NULL,
        PRIMARY KEY (account, device_id, kind),
        FOREIGN KEY (account, device_id) REFERENCES devices(account, device_id) ON DELETE CASCADE
    ) WITHOUT ROWID""",
    """INSERT INTO mailbox_counts (account, device_id, kind, count, bytes)
        SELECT m.account, m.device_id, m.kind, count(*), sum(m.size) FROM mailbox m
        JOIN devices d ON d.account = m.account AND d.device_id = m.device_id
        GROUP BY m.account, m.device_id, m.kind""",
)

# A group item body stored at its hub names the local device whose submission stored it: it
# counts towards that device's and account's stored bytes until its last mailbox row goes.
_GROUP_BODY_SENDERS = (
    "ALTER TABLE group_bodies ADD COLUMN sender_account TEXT NULL",
    "ALTER TABLE group_bodies ADD COLUMN sender_device INTEGER NULL",
    *_sender_triggers("group_bodies", charge="group_body_charge", release="group_body_uncharge"),
)



def _usage_triggers(table: str, name: str, *, scope: str, key: str, size: str, when: str) -> tuple[str, str]:
    """The triggers that count each row of ``table`` in storage_usage under (``scope``,
    ``key``) with ``size`` bytes while ``when`` holds of it (``ROW`` in each: the row)."""
    new, old = (lambda e: e.replace("ROW", "NEW")), (lambda e: e.replace("ROW", "OLD"))
    return (
        f"""CREATE TRIGGER {name}_charge AFTER INSERT ON {table} WHEN {new(when)} BEGIN
        INSERT INTO storage_usage VALUES ('{scope}', {new(key)}, 1, {new(size)})
            ON CONFLICT (scope, key) DO UPDATE SET count = count + 1, bytes = bytes + excluded.bytes;
    END""",
        f"""CREATE TRIGGER {name}_release AFTER DELETE ON {table} WHEN {old(when)} BEGIN
        UPDATE storage_usage SET count = count - 1, bytes = bytes - {old(size)} WHERE scope = '{scope}' AND key = {old(key)};
    END""",
    )


# What a hub stores for a submission pushed by another node counts towards that origin node's
# relay budget: its body (group_bodies.origin), its copies queued for other nodes (outbox.origin)
# and the record that it was ordered (hub_refs.origin, a row until the item expires).
_GROUP_ORIGINS = (
    "ALTER TABLE group_bodies ADD COLUMN origin TEXT NULL",
    *_usage_triggers("group_bodies", "group_body_origin", scope="origin", key="ROW.origin", size="ROW.size", when="ROW.origin IS NOT NULL"),
    "ALTER TABLE hub_refs ADD COLUMN origin TEXT NULL",
    *_usage_triggers("hub_refs", "hub_ref_origin", scope="origin", key="ROW.origin", size="0", when="ROW.origin IS NOT NULL"),
)

# The hub each of a device's group submissions was sent to: only it (or the hub the node follows
# after a hand-over) may refuse it (sqlite_groups.py ``_verdict_refusal``).
_SUBMISSION_HUBS = ("ALTER TABLE group_submissions ADD COLUMN hub TEXT NULL",)

# The devices an ORDERED item still has to reach count as rows towards the relay budget of
# the hub that pushed it (sqlite_groups.py ``_deliver_taken``); the rows kept already from here on.
_WAITING_ORIGINS = (
    *_usage_triggers("group_waiting", "group_waiting_origin", scope="origin", key="ROW.origin", size="0", when="ROW.origin IS NOT NULL"),
    """INSERT INTO storage_usage (scope, key, count, bytes) SELECT 'origin', origin, count(*), 0 FROM group_waiting WHERE true GROUP BY origin
        ON CONFLICT (scope, key) DO UPDATE SET count = storage_usage.count + excluded.count""",
)

# A hub's records of other nodes' submissions (hub_refs) count apart from what it relays for
# them ("origin_refs": sqlite_budgets.py ORIGIN_REFS_FACTOR), the rows kept already moved there.
_ORIGIN_REFS = (
    "DROP TRIGGER hub_ref_origin_charge",
    "DROP TRIGGER hub_ref_origin_release",
    *_usage_triggers("hub_refs", "hub_ref_origin", scope="origin_refs", key="ROW.origin", size="0", when="ROW.origin IS NOT NULL"),
    """UPDATE storage_usage SET count = count - (SELECT count(*) FROM hub_refs WHERE hub_refs.origin = storage_usage.key)
        WHERE scope = 'origin'""",
    """INSERT INTO storage_usage (scope, key, count, bytes) SELECT 'origin_refs', origin, count(*), 0 FROM hub_refs
        WHERE origin IS NOT NULL GROUP BY origin""",
)

# The rows naming the devices a pushed ORDERED item still has to reach count apart from the
# pushing hub's relay budget ("group_waiting": sqlite_budgets.py WAITING_FACTOR), so that the
# hub's other items and envelopes are not refused for them; the rows kept already moved there.
_WAITING_SCOPE = (
    "DROP TRIGGER group_waiting_origin_charge",
    "DROP TRIGGER group_waiting_origin_release",
    *_usage_triggers("group_waiting", "group_waiting_origin", scope="group_waiting", key="ROW.origin", size="0", when="ROW.origin IS NOT NULL"),
    """UPDATE storage_usage SET count = count - (SELECT count(*) FROM group_waiting WHERE group_waiting.origin = storage_usage.key)
        WHERE scope = 'origin'""",
    """INSERT INTO storage_usage (scope, key, count, bytes) SELECT 'group_waiting', origin, count(*), 0 FROM group_waiting
        WHERE origin IS NOT NULL GROUP BY origin""",
)

# A group item a member node took from another node's hub names that hub on its mailbox row
# (``hub``), and each device's rows of each such hub are counted ("group_hub", key
# "account/device id/hub"): one hub may hold only a share of a device's allowance of group
# items (sqlite_groups.py ``_deliver``, node/group_budgets.py ``HUB_SHARE``). Rows stored before
# name no hub and count for none.
_GROUP_ROW_HUBS = (
    "ALTER TABLE mailbox ADD COLUMN hub TEXT NULL",
    *_usage_triggers(
        "mailbox", "group_row_hub", scope="group_hub", key="ROW.account || '/' || ROW.device_id || '/' || ROW.hub", size="ROW.size",
        when="ROW.hub IS NOT NULL",
    ),
)

# The outboxes as appended batches with an index in memory (outbox_log.py; issue 14 item 1). The
# rows queued before are moved into batches by ``outbox_log.move_rows`` when the store opens
# (msgpack is not SQL), which then drops ``outbox_rows``. SQLite only: PostgreSQL keeps its
# ``outbox`` table (several processes cannot share an index in memory); its migration 31 is empty.
_OUTBOX_LOG = (
    "ALTER TABLE outbox RENAME TO outbox_rows",
    "CREATE TABLE outbox_batches (batch INTEGER PRIMARY KEY AUTOINCREMENT, dest TEXT NOT NULL, items BLOB NOT NULL)",
    "CREATE TABLE outbox_meta (one INTEGER PRIMARY KEY CHECK (one = 1), version INTEGER NOT NULL)",
    "INSERT INTO outbox_meta (one, version) VALUES (1, 0)",
)


def _rebuild_deliveries(version: int, key: str) -> tuple[str, ...]:
    """The statements that rebuild ``deliveries`` as a rowid table with ``key`` as its UNIQUE
    index (migrations 32 and 33 differ only in that key)."""
    return (
        f"""CREATE TABLE deliveries_v{version} (
        sender_account  TEXT NOT NULL,
        sender_device   INTEGER NOT NULL,
        id              BLOB NOT NULL,
        dest            TEXT NOT NULL,
        device          INTEGER NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('queued', 'accepted', 'failed')),
        code            TEXT NOT NULL,
        updated_at      INTEGER NOT NULL,
        expires         INTEGER NOT NULL,
        early_state     TEXT NULL,
        early_code      TEXT NULL,
        early_at        INTEGER NULL,
        vanishes        INTEGER NULL,
        UNIQUE ({key})
    )""",
        f"""INSERT INTO deliveries_v{version}
        SELECT sender_account, sender_device, id, dest, device, state, code, updated_at, expires,
               early_state, early_code, early_at, vanishes FROM deliveries ORDER BY expires""",
        "DROP TABLE deliveries",
        f"ALTER TABLE deliveries_v{version} RENAME TO deliveries",
        "CREATE INDEX deliveries_expiry ON deliveries (expires)",
        "CREATE INDEX deliveries_vanishing ON deliveries (vanishes) WHERE vanishes IS NOT NULL",
    )


# The delivery rows back in a rowid table (issue 14 item 1; docs/performance.md "Round 16"). Since
# the rows are written once, when an item is settled (no longer at enqueue and again at settle, as
# when migration 20 keyed the table by its lookup key), a key of random envelope ids as the
# table's own B-tree costs more than it saves: each row was placed at a random page of ~100-byte
# rows, and ``deliveries_expiry`` carried the whole five-column key in every entry. Now the rows
# append, the lookup key is one UNIQUE index (also the target of the settle's ON CONFLICT), and
# the expiry index holds (expires, rowid): ~4.5 µs less per settled envelope at the sending node.
_DELIVERIES_BY_ROWID = _rebuild_deliveries(32, "id, dest, device, sender_account, sender_device")

# The delivery rows keyed by their sender first (issue 14 item 1; docs/performance.md "Round 17").
# Keyed by the envelope id first, each settled envelope's row went into the UNIQUE index at a
# random place among a week of rows: one page written per envelope once that index outgrows the
# cache's share of it (a node's sending side at 1,000,000 rows: ~21 µs per settled envelope,
# against ~8 with none). By (sender account, device, id) a device's rows of the week are a few
# pages, which its next rows land on again; the sender's status question (``_deliveries``) reads
# that range. The relay reports and early reports, which name no sender, find the "queued" rows
# they may change by ``deliveries_queued``: only rows handed to a relay are in it.
_DELIVERIES_BY_SENDER = (
    *_rebuild_deliveries(33, "sender_account, sender_device, id, dest, device"),
    "CREATE INDEX deliveries_queued ON deliveries (id, dest, device) WHERE state = 'queued'",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    _V1, _V2, _V3, _V4, _V5, _V6, _V7, _BUDGETS, _KEY_PACKAGES, _GROUPS, _GROUP_BUDGETS, _GROUP_TREES, _GROUP_BODIES,
    _HANDOVERS, _HANDOVER_FROM, _VANISHING, _ADMIN, _GROUP_EXPIRY, _LINK_SLOTS, _LEANER_RELAY, _OUTBOX_USAGE_IN_WRITES,
    _ACKED_DAYS, _MAILBOX_COUNTS, _GROUP_BODY_SENDERS, _GROUP_ORIGINS, _SUBMISSION_HUBS, _WAITING_ORIGINS, _ORIGIN_REFS,
    _WAITING_SCOPE, _GROUP_ROW_HUBS, _OUTBOX_LOG, _DELIVERIES_BY_ROWID, _DELIVERIES_BY_SENDER,
)  # fmt: skip
LATEST_VERSION = len(MIGRATIONS)


def _statements_from(conn: sqlite3.Connection, version: int, *, fresh_schema: bool) -> tuple[str, ...]:
    """What brings the schema from ``version`` to LATEST_VERSION: the pending migrations, or for
    an empty database the schema those build, as one script (when it is of LATEST_VERSION)."""
    if fresh_schema and version == 0 and FRESH_VERSION == LATEST_VERSION and _empty(conn):
        return FRESH_STATEMENTS
    return tuple(statement for migration in MIGRATIONS[version:] for statement in migration)


def _empty(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def _user_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def log_migrated(before: int, after: int) -> None:
    """Say that an existing database was brought to a newer schema (an operator upgrading sees
    it happen; a new database, at 0 before, is not news)."""
    if 0 < before < after:
        log.info("migrated the database from schema version %d to %d", before, after)


def migrate(conn: sqlite3.Connection, *, fresh_schema: bool = True) -> int:
    """Bring the schema to LATEST_VERSION; return the version. A no-op when already there.

    ``conn`` must be in autocommit mode (``isolation_level=None``). An empty database gets the
    latest schema in one script (fresh_schema.py) unless ``fresh_schema`` is False (the test
    that checks the script against the migrations).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Read under the write lock: another process may have migrated meanwhile.
        version = _user_version(conn)
        if version > LATEST_VERSION:
            raise StoreError(
                f"database schema version {version} is newer than this software "
                f"(knows up to {LATEST_VERSION})"
            )
        if version < LATEST_VERSION:
            for statement in _statements_from(conn, version, fresh_schema=fresh_schema):
                conn.execute(statement)
            # PRAGMA cannot take a bound parameter; the value is our own integer.
            conn.execute(f"PRAGMA user_version = {LATEST_VERSION:d}")
        conn.execute("COMMIT")
        log_migrated(version, LATEST_VERSION)
        return LATEST_VERSION
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
