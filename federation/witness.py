"""Witnessing the key directories of the configured peers (ARCHITECTURE §7).

A round for peer P (``nudge``, every ``witness_interval_s``, and ``greet``: P said hello with
its head, after its start or a change of its entry, at most once per ``GREET_GAP_S``) fetches
P's newest signed head over P's route (as lookups go), verifies it with P's pinned key and
compares it with the last head of P this node cosigned (the "witnessed" head). The first one is
accepted; one of the same size must have the same root; any other size needs a valid RFC 9162
consistency proof from P between the smaller and the larger head. Then this node cosigns it,
keeps it as witnessed and hands P the cosignature (``Cosign``) - unless it is smaller than the
witnessed head: a relay may replay an older genuine head, so a consistent smaller one is
ignored, never cosigned, and the witnessed head never goes back.

Heads of P seen elsewhere (gossiped by a peer, or carried by a lookup answer) are checked the
same way in the background (``check``). A split is recorded only on signed evidence
(``record_split``, with both signed heads): two heads of one size with different roots
("fork"), or a consistency proof P's route returned that does not verify ("inconsistent").
From then on P is not witnessed any more and its lookups are refused (``split_view``), also
after a restart. Anything that only says "not now" - P unreachable or busy, an error frame
(even ``bad_request`` to a consistency request), a malformed answer - records nothing, refuses
nothing and waits for the next round.

The work is bounded: per node one job runs at a time, and the next waits with at most one head
to check (the newest wins). Only configured peers are witnessed or checked.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from sonet.core.client_api import Consistency, FetchConsistency, FetchHead, Head
from sonet.core.crypto import SigningKey, VerifyKey
from sonet.core.errors import ProtocolError, VerifyError
from sonet.core.federation_api import Cosign, Noted
from sonet.core.keydir import TreeHead, cosign, verify_consistency, verify_head, witnesses
from sonet.core.wire import Frame
from sonet.transport import events
from sonet.transport.log_summary import SUMMARY_INTERVAL_S, LogSummary, OncePer

from .errors import FederationError
from .ports import FederationStore, StoreFailure
from .routes import Routes
from .records import SplitRow, WitnessRow
from .settings import FederationSettings

__all__ = ["Witness", "TRANSIENT_CODES"]

log = logging.getLogger("sonet.federation")

#: lookup failures that say "not now" rather than "no"
TRANSIENT_CODES = frozenset({"unreachable", "rate_limited", "unavailable"})
#: a peer's hello starts a round for it at once, but at most this often (seconds): a peer that
#: keeps reconnecting cannot keep its witness busy; a hello within the gap waits for its end
GREET_GAP_S = 5.0
#: heads per node already proven consistent with its witnessed head (gossip repeats them, and
#: a round fetches the head a gossip announced)
MAX_KNOWN_HEADS = 32


@dataclass
class _Job:
    round: bool = False
    #: a signed head of the node seen elsewhere (not verified yet), and where it was seen
    head: bytes | None = None
    source: str = ""


class Witness:
    def __init__(
        self,
        *,
        name: str,
        identity: SigningKey,
        store: FederationStore,
        ask: Callable[[str, Frame], Awaitable[Frame]],
        node_key: Callable[[str], Awaitable[bytes]],
        routes: Callable[[], Awaitable[Routes]],
        clock_ms: Callable[[], int],
        settings: FederationSettings,
        cosigned: Callable[[str, TreeHead], None],
    ) -> None:
        """``ask(node, frame)`` is the answer of ``node`` over its route (ErrorFrames raised);
        ``node_key(node)`` its pinned key; ``cosigned(node, head)`` is told when ``node`` took
        this node's cosignature of ``head``, which it did not have one for (its lookup answers
        change)."""
        self._name = name
        self._identity = identity
        self._store = store
        self._ask = ask
        self._node_key = node_key
        self._routes = routes
        self._clock_ms = clock_ms
        self._settings = settings
        self._cosigned = cosigned
        self._witnessed: dict[str, WitnessRow] = {}
        self._splits: dict[str, SplitRow] = {}
        #: per node, heads (by size) shown consistent with its witnessed head
        self._known: dict[str, dict[int, TreeHead]] = {}
        self._jobs: dict[str, _Job] = {}
        self._busy: set[str] = set()
        #: per node, when (trio time) its last hello started a round; nodes whose hello waits
        self._greeted: dict[str, float] = {}
        self._greeting: set[str] = set()
        self._ready = False
        self._nursery: trio.Nursery | None = None
        #: bumped on every change ``witnessed()`` / ``splits()`` / ``next_round_at`` would show
        self.version = 0
        #: when (ms since the epoch) the next round of every peer starts: each dials the peer's
        #: next hop, backoff or not (None until the rounds run)
        self.next_round_at: int | None = None
        # heads that do not verify, and witnessing that failed: the first per source (node) each
        # interval is a line of its own, the others one summary line (a pinned peer gossiping
        # forged heads of other nodes made ~50-130 lines a second)
        self._quiet = LogSummary(log, what="directory heads ignored and witnessing failures")
        self._logged_at = OncePer(SUMMARY_INTERVAL_S)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read what was witnessed and the splits, then run rounds until cancelled. While the
        store cannot be read, lookups are refused ``unavailable`` and reading is retried."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._quiet.run)  # the summary line each interval
            await self._load()
            task_status.started()
            while not self._ready:
                await trio.sleep(self._settings.refresh_s)
                await self._load()
            for node in list(self._jobs):
                self._start(node)
            while True:
                try:
                    for peer in (await self._routes()).peers:
                        self.nudge(peer.name)
                except StoreFailure as exc:
                    log.warning("cannot read the peer table to witness the peers: %s", exc)
                self.next_round_at = self._clock_ms() + int(self._settings.witness_interval_s * 1000)
                self.version += 1
                await trio.sleep(self._settings.witness_interval_s)

    async def _load(self) -> None:
        try:
            witnessed, splits = await self._store.witnessed_all(), await self._store.splits()
        except StoreFailure as exc:
            log.warning("cannot read the witnessed key-directory heads, trying again in %g s: %s", self._settings.refresh_s, exc)
            return
        self._witnessed = {row.node: row for row in witnessed}
        for row in splits:
            self._splits.setdefault(row.node, row)
        self._ready = True
        self.version += 1

    # What the service asks ----------------------------------------------------------------------

    def witnessed(self) -> list[WitnessRow]:
        return sorted(self._witnessed.values(), key=lambda r: r.node)

    def splits(self) -> list[SplitRow]:
        return sorted(self._splits.values(), key=lambda r: r.detected_at)

    def witnessed_size(self, node: str) -> int | None:
        row = self._witnessed.get(node)
        return None if row is None else row.size

    def split_kind(self, node: str) -> str | None:
        row = self._splits.get(node)
        return None if row is None else row.kind

    def refuse(self, node: str) -> None:
        """Raise FederationError unless lookups for ``node`` may go on."""
        if not self._ready:
            raise FederationError("unavailable", f"{self._name} cannot read its key-directory records right now; try again later")
        if node in self._splits:
            raise FederationError(
                "split_view",
                f"{node} showed two different versions of its key directory; its keys are not trusted "
                "(see `sonet-node status`)",
            )

    def nudge(self, node: str) -> None:
        """Run a witness round for ``node`` now (after the one running, if any)."""
        self._job(node).round = True
        self._start(node)

    def greet(self, node: str) -> None:
        """``node`` said hello with its head (it started, or reconnected): witness it now - a
        restarted peer may hold a head without this node's cosignature - unless a hello started
        a round less than ``GREET_GAP_S`` ago; then once that gap is over (one waits at most)."""
        now = trio.current_time()
        due = self._greeted.get(node, -math.inf) + GREET_GAP_S
        if now >= due:
            self._greeted[node] = now
            self.nudge(node)
        elif node not in self._greeting and self._nursery is not None:
            self._greeting.add(node)
            self._nursery.start_soon(self._greet_at, node, due)

    async def _greet_at(self, node: str, due: float) -> None:
        await trio.sleep_until(due)
        self._greeting.discard(node)
        self.greet(node)

    def check(self, node: str, head: bytes, source: str, *, round: bool = False) -> None:
        """Check a signed head of ``node`` seen at ``source`` in the background (``round``:
        then witness ``node``); a newer head than the witnessed one starts a round anyway."""
        job = self._job(node)
        job.head, job.source = head, source
        job.round = job.round or round
        self._start(node)

    async def vet(self, node: str, raw: bytes) -> None:
        """The head of ``node`` a lookup answer carries: FederationError "invalid" unless it
        verifies; a fork of the witnessed head is recorded and refused (``split_view``) at once,
        any other difference is checked in the background."""
        self.refuse(node)
        head = await self._verified(node, raw)
        last = self._witnessed.get(node)
        if last is None or (last.size, last.root) != (head.size, head.root):
            if last is not None and last.size == head.size:
                await self._split(node, "fork", last.head, raw, "lookup")
                self.refuse(node)
            self.check(node, raw, "lookup")

    # Jobs ---------------------------------------------------------------------------------------

    def _job(self, node: str) -> _Job:
        return self._jobs.setdefault(node, _Job())

    def _start(self, node: str) -> None:
        if self._ready and self._nursery is not None and node not in self._busy:
            self._busy.add(node)
            self._nursery.start_soon(self._work, node)

    async def _work(self, node: str) -> None:
        try:
            while (job := self._jobs.pop(node, None)) is not None:
                try:
                    newer = job.head is not None and await self._check(node, job.head, job.source)
                    if (job.round or newer) and node not in self._splits:
                        await self._round(node)
                except FederationError as exc:
                    level = logging.INFO if exc.code in TRANSIENT_CODES else logging.WARNING
                    self._log_limited(f"witnessing {node}", level, "witnessing %s: %s (%s); trying again later", node, exc, exc.code)
                except StoreFailure as exc:
                    self._log_limited(f"witnessing {node}", logging.WARNING, "witnessing %s: %s; trying again later", node, exc)
        finally:
            self._busy.discard(node)

    async def _check(self, node: str, raw: bytes, source: str) -> bool:
        """Whether the head ``raw`` of ``node`` is consistent and newer than the witnessed one
        (then a round should witness ``node``'s newest head)."""
        if node in self._splits:
            return False
        try:
            head = await self._verified(node, raw)
        except FederationError as exc:
            if exc.code != "invalid":
                raise
            self._log_limited(f"head from {source}", logging.WARNING, "ignored a directory head of %s from %s: %s", node, source, exc)
            return False
        last = self._witnessed.get(node)
        return await self._consistent(node, head, source) and (last is None or head.size > last.size)

    def _log_limited(self, key: str, level: int, message: str, *args: object) -> None:
        """``message`` at ``level`` once per ``key`` each interval; more of it are counted in
        the summary line, their detail at DEBUG (keys: configured nodes and sources)."""
        if self._logged_at.due(key, trio.current_time()):
            log.log(level, message, *args)
        else:
            self._quiet.count(key)
            log.debug(message, *args)

    async def _round(self, node: str) -> None:
        answer = await self._ask(node, FetchHead(request=0, node=node))
        if not isinstance(answer, Head) or answer.node != node:
            raise FederationError("invalid", f"{node} answered a head request with {type(answer).__name__}")
        head = await self._verified(node, answer.head.head)
        if not await self._consistent(node, head, "witness"):
            return
        last = self._witnessed.get(node)
        if last is not None and head.size < last.size:
            log.info("%s showed an older directory head (size %d) than the one cosigned (size %d); kept that one", node, head.size, last.size)
            return
        if last is not None and (last.size, last.root) == (head.size, head.root):
            if self._name in witnesses(answer.head.cosignatures, head=head, keys={self._name: self._identity.public}):
                return  # cosigned and handed over already
        now = self._clock_ms()
        cosignature = cosign(self._identity, witness=self._name, head=head, now=now)
        if last is None or (last.size, last.root) != (head.size, head.root):
            row = WitnessRow(node=node, size=head.size, root=head.root, head=head.raw, at=now)
            await self._store.set_witnessed(row)
            self._witnessed[node] = row
            self.version += 1
            # Heads up to the old witnessed size are prefixes of the new one too; larger ones
            # were only shown to extend the old one.
            size = -1 if last is None else last.size
            self._known[node] = {n: h for n, h in self._known.get(node, {}).items() if n <= size}
        answer = await self._ask(node, Cosign(request=0, cosignature=cosignature))
        if not isinstance(answer, Noted):
            raise FederationError("invalid", f"{node} answered a cosignature with {type(answer).__name__}")
        log.info("cosigned the key directory of %s at size %d", node, head.size)
        self._cosigned(node, head)

    # Checks -------------------------------------------------------------------------------------

    async def _verified(self, node: str, raw: bytes) -> TreeHead:
        key = await self._node_key(node)
        try:
            return verify_head(raw, node_key=VerifyKey.from_bytes(key), node=node)
        except ProtocolError as exc:
            raise FederationError("invalid", f"a directory head given for {node} does not verify: {exc}") from None

    async def _consistent(self, node: str, head: TreeHead, source: str) -> bool:
        """Whether ``head`` agrees with the witnessed head of ``node`` (and the other heads of
        ``node`` checked against it); if not, the split is recorded. FederationError if
        ``node`` cannot prove it now."""
        last = self._witnessed.get(node)
        if last is None or (last.size, last.root) == (head.size, head.root):
            return True
        known = self._known.setdefault(node, {})
        seen = known.get(head.size)
        held = last.head
        if head.size == last.size:
            kind = "fork"
        elif seen is not None:
            if seen.root == head.root:
                return True
            kind, held = "fork", seen.raw
        else:
            small, large = (head, last) if head.size < last.size else (last, head)
            if await self._proven(node, small, large):
                known[head.size] = head
                if len(known) > MAX_KNOWN_HEADS:
                    del known[next(iter(known))]
                return True
            kind = "inconsistent"
        await self._split(node, kind, held, head.raw, source)
        return False

    async def _proven(self, node: str, small: TreeHead | WitnessRow, large: TreeHead | WitnessRow) -> bool:
        """Whether the proof ``node`` gives that its tree ``small`` is a prefix of its tree
        ``large`` verifies. No proof (an error frame, even ``bad_request``: a relay or a
        restarting node may say it too), a malformed answer, or a failing proof that came
        through a relay is FederationError: not evidence."""
        if small.size == 0:
            return True  # the empty tree is a prefix of every tree
        request = FetchConsistency(request=0, node=node, first=small.size, second=large.size)
        answer = await self._ask(node, request)
        if not isinstance(answer, Consistency) or (answer.node, answer.first, answer.second) != (node, small.size, large.size):
            raise FederationError("invalid", f"{node} answered the consistency request {small.size}..{large.size} with another answer")
        try:
            verify_consistency(first=small.size, second=large.size, first_root=small.root, second_root=large.root, proof=answer.proof)
        except VerifyError:
            hop = (await self._routes()).next_hop(node)
            if hop is None or hop.name != node:
                # Proofs are not signed: one that came through a relay may be the relay's doing,
                # so it is not evidence against ``node``.
                raise FederationError("invalid", f"the consistency proof of {node} relayed by {hop.name if hop else 'a relay'} does not verify") from None
            return False
        return True

    async def _split(self, node: str, kind: str, first: bytes, second: bytes, source: str) -> None:
        row = SplitRow(node=node, kind=kind, first=first, second=second, source=source, detected_at=self._clock_ms())
        self._splits.setdefault(node, row)
        self._jobs.pop(node, None)
        self.version += 1
        events.emit("directory_alarm", peer=node, kind=kind, source=source, code="split_view")
        log.warning(
            "%s showed two different versions of its key directory (%s, seen via %s): it is no longer "
            "witnessed and its lookups are refused",
            node,
            kind,
            source,
        )
        try:
            await self._store.record_split(row)
        except StoreFailure as exc:
            log.warning("cannot record the split view of %s (refused only until a restart): %s", node, exc)
