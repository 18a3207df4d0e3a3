"""Security events of a running node into its audit log, without letting an attacker fill it.

Every event (transport/events.py) is something a stranger can cause by the thousand, so none
is written as it comes: identical events (same kind and fields: the same address or actor,
the same code or limit) are counted, and every ``interval_s`` one entry per distinct event is
written with its ``count``. The stream itself is rate-limited: at most ``max_keys`` distinct
events are held per interval and the entries written come from a token bucket; what does not
fit is dropped and counted, by kind, in one ``audit_dropped`` entry per interval. So a flood
from a million addresses costs a bounded number of entries, and says that it happened.

The node's own entries (``note``: its start with the config digest, its stop) are not limited.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import trio

from sonet.core.ratelimit import Bucket, Rate

from .audit import AuditError, AuditLog

__all__ = ["AuditStream", "INTERVAL_S", "MAX_KEYS", "ENTRY_RATE", "started_fields"]

log = logging.getLogger("sonet.node.audit")

#: how often the counted events are written
INTERVAL_S = 10.0
#: distinct events held per interval (memory and entries per interval)
MAX_KEYS = 64
#: entries of security events written: about 43 000 a day at most under a lasting flood
ENTRY_RATE = Rate(per_second=0.5, burst=200)
#: a field's text is cut to this many characters (fields come from the network)
MAX_TEXT = 200


def _plain(value: object) -> str | int | bool | None:
    if value is None or type(value) in (int, bool):
        return value  # type: ignore[return-value]
    # what UTF-8 cannot carry (a lone surrogate) would make the whole batch unwritable
    return str(value)[:MAX_TEXT].encode("utf-8", "replace").decode("utf-8")


class AuditStream:
    """Subscriber of the security events (``hear``) and writer of the node's entries."""

    def __init__(
        self,
        audit: AuditLog,
        *,
        clock_ms: Callable[[], int],
        interval_s: float = INTERVAL_S,
        max_keys: int = MAX_KEYS,
        rate: Rate = ENTRY_RATE,
    ) -> None:
        self.audit = audit
        self._clock_ms = clock_ms
        self.interval_s = interval_s
        self._max_keys = max_keys
        self._bucket = Bucket(rate, clock_ms())
        #: (kind, fields) -> count, in the order first heard
        self._counted: dict[tuple[str, tuple[tuple[str, Any], ...]], int] = {}
        self._dropped: Counter[str] = Counter()
        self._notes: list[tuple[str, dict[str, Any]]] = []

    def hear(self, kind: str, fields: Mapping[str, object]) -> None:
        """One security event (called on the emitter's thread, the trio thread: no I/O here)."""
        key = (kind, tuple(sorted((name, _plain(value)) for name, value in fields.items())))
        if key in self._counted:
            self._counted[key] += 1
        elif len(self._counted) < self._max_keys:
            self._counted[key] = 1
        else:
            self._dropped[kind] += 1

    def note(self, kind: str, **fields: Any) -> None:
        """One of the node's own entries, written with the next batch."""
        self._notes.append((kind, fields))

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        """The entries due now: the node's own, one per distinct event heard with its count
        (while the bucket has tokens), and what was dropped."""
        batch, self._notes = self._notes, []
        counted, self._counted = self._counted, {}
        now = self._clock_ms()
        for (kind, fields), count in counted.items():
            if self._bucket.take(now):
                batch.append((kind, {**dict(fields), "count": count}))
            else:
                self._dropped[kind] += count
        if self._dropped:
            batch.append(("audit_dropped", {"events": sum(self._dropped.values()), "by_kind": dict(sorted(self._dropped.items()))}))
            self._dropped.clear()
        return batch

    def write(self) -> None:
        """Append what is due (blocking file I/O, on the calling thread); see ``_append``."""
        self._append(self.take())

    def _append(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        """A failure is logged, not raised: a full disk or a damaged log must not stop the node
        serving (the entries are lost and the log line says how many)."""
        try:
            self.audit.append(batch)
        except (AuditError, OSError, ValueError) as exc:  # ValueError: an entry that cannot be logged
            log.error("cannot write %d audit entries: %s", len(batch), exc)
        except Exception:  # a bug here must not stop the node either: said, with its traceback
            log.exception("cannot write %d audit entries", len(batch))

    async def run(self) -> None:
        """Write every interval until cancelled, and once more then. ``take`` runs here, on the
        trio thread like ``hear`` (they share the counts without a lock); only the file I/O
        goes to a worker thread."""
        try:
            while True:
                await trio.sleep(self.interval_s)
                await trio.to_thread.run_sync(self._append, self.take())
        finally:
            self.write()


def started_fields(config_bytes: bytes, *, name: str, listen: list[str], fingerprint: str, version: str, pid: int) -> dict[str, Any]:
    """The ``node_started`` entry: what ran, with which configuration (node.toml's SHA-256:
    a change between two starts shows, without copying the file into the log)."""
    return {
        "name": name,
        "listen": listen,
        "config_sha256": hashlib.sha256(config_bytes).hexdigest(),
        "fingerprint": fingerprint,
        "version": version,
        "pid": pid,
    }
