"""Requests from peers on admitted inbound links (core/federation_api.py), each only while
the link's peer is still pinned to the key it proved (removed or re-pinned: the link closes,
``unknown_peer``).

- ``Push``: each item is classified. For this node: an envelope goes to its mailbox (expiry
  capped by this node's envelope TTL), a report updates the delivery row of an envelope this
  node sent (accepted only from the peer the envelope's route starts with), a group item is
  ordered (at its hub), delivered to member devices or forwarded by the store (node/store/
  sqlite_groups.py) in the same transaction; a SUBMIT names the node that answers for it (its
  origin when the peer is that node or its relay, else the peer: ``_answerable``), whose relay
  budget what it stores counts towards; any other group item (a hub's) is ``hub_pending``
  (pushed again later) unless its origin is that node. For another node:
  forwarded only as a relay between configured peers ("not_relaying" otherwise), only while it
  has a route there ("unroutable") and hops left ("hop_limit"), held on behalf of the node that
  answers for it (its origin when the peer is that node or its relay, else the peer). What is taken is committed in
  one store transaction before the PushResult says "ok"; then mailboxes are notified and
  outbox workers woken. A link's sequenced pushes are taken one at a time in their order, the
  next one while the one before still waits for its commit (its write queued behind that one's:
  one group commit for both), and answered in that order, each after its own commit
  (``InboundLink``); one that is not the next is refused ``out_of_order``
  (federation/push_sequence.py).
- ``FetchDevices`` / ``FetchBundles`` / ``FetchKeyPackages``: for this node's accounts answered
  by ``local``; for another node relayed over the link pool under the same rule, the answer
  passed back.
- ``FetchNodeKey``: this node's key; another node's relayed like the lookups. ``Ping``: Pong.
- ``FetchHead`` / ``FetchConsistency``: this node's key directory (``directory``; sizes it
  cannot prove: ``bad_request``); another node's relayed like the lookups.
- ``Cosign``: a cosignature of this node's head, kept by the directory if it verifies with the
  pinned key of the witness it names (the link's peer, or a peer behind it when relayed), else
  ``bad_cosignature``; one of another node's head is relayed like the lookups. ``Gossip``:
  heads the peer has seen, checked in the background (federation/gossip.py). Both: ``Noted``.
- ``EphemeralPush``: typing and presence, never stored (federation/ephemeral.py, its own rate
  limits): ``Noted``.

A request whose handling hits a store error (the database is locked, the disk is full) is
answered ``ErrorFrame(request, "unavailable")``: the peer tries again later; the link and the
node go on. A push that would take an origin over its relay budget, a destination's outbox over
its budget or this node into its disk reserve (node/store/sqlite_budgets.py) is answered
``ErrorFrame`` with that code ("relay_full", "outbox_full", "disk_full") and nothing of it is
taken: the pusher keeps the items in its own (bounded) outbox and backs off.

Each peer node has token buckets (federation/ratelimit.py): pushed items, lookups, and prekey
bundles and KeyPackages (stricter: they hand out one-time keys); past its share of one account's
one-time prekeys (``one_time_rate``, per peer and account) a peer gets bundles without them, and
past its share of one-time KeyPackages (the same rate, its own bucket) last-resort ones. An envelope
for this node without the recipient's valid access token is a message request: it must fit the
allowance of its (peer, origin) and of its mailbox (federation/message_requests.py), else its
outcome is ``message_request_limit``. Over a limit the answer is
``ErrorFrame(request, "rate_limited")`` and nothing is taken; a link that keeps going after
``max_refusals`` refusals in a row is closed, and so is one that sends more than
``max_refusals`` pushes refused ``out_of_order`` without one in its turn between them. Other
peers have their own buckets and links.
A group SUBMIT for this node spends a token of the node that answers for it (``_answerable``:
its origin when the peer is that node or its relay, else the peer; ``group_submit_rate``): past
it that item alone is refused ``rate_limited``, a RETRY_LATER outcome (the pusher keeps it, and
its group's later submissions behind it, and pushes them again later); the rest of the push is
taken and the link's refusals in a row do not count it.
Lookups also spend the peer's cost budget (``settings.lookup_budget``: count and bytes of the
answers, core/cost_budget.py); over it they are refused ``rate_limited`` too.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable

import trio

from sonet.core import limits
from sonet.core.address import parse_address, validate_node_name
from sonet.core.blob_api import BlobChunk, BlobGet
from sonet.core.client_api import (
    Bundles,
    Consistency,
    Devices,
    ErrorFrame,
    FetchBundles,
    FetchConsistency,
    FetchDevices,
    FetchGroupTree,
    FetchHead,
    FetchKeyPackages,
    FetchNodeKey,
    GroupTree,
    Head,
    KeyPackages,
    NodeKey,
    Ping,
    Pong,
)
from sonet.core.crypto import SigningKey, VerifyKey
from sonet.core.cost_budget import CostBudget, OverBudget
from sonet.core.errors import ProtocolError, RemoteProtocolError
from sonet.core.groups.items import ItemKind
from sonet.core.federation_api import OK, Cosign, EphemeralPush, Gossip, Noted, Push, PushResult, Report, SeenHead, Transit
from sonet.core.keydir import decode_cosignature
from sonet.core.wire import Frame, encode_frame
from sonet.transport import events
from sonet.transport.log_summary import OncePer

from .ephemeral import Ephemerals
from .errors import FederationError
from .pool import LinkPool
from .ports import Delivered, FederationStore, KeyDirectory, LocalAnswer, Queued, Received, StoreFailure
from .message_requests import REFUSAL as REQUEST_REFUSAL
from .message_requests import MessageRequests
from .push_sequence import Receiving
from .ratelimit import Limiter
from .records import BUDGET_CODES, GroupReceived, NewEnvelope, OutboundItem, Quota, StatusUpdate
from .routes import Routes
from .settings import FederationSettings
from .transit import relayed_item

__all__ = ["Inbound", "InboundLink", "TakenPush", "ANSWERS"]

#: the share of the request deadline a relay waits for the next hop's answer to a lookup
RELAY_DEADLINE_SHARE = 0.6

log = logging.getLogger("sonet.federation")

#: how often a peer's group items in another node's name are said in the log
UNVOUCHED_LOG_S = 60.0

Lookup = FetchDevices | FetchBundles | FetchKeyPackages | FetchNodeKey | FetchHead | FetchConsistency | FetchGroupTree | BlobGet
#: the lookups that hand out one-time keys
OneTime = FetchBundles | FetchKeyPackages
#: what a peer may ask on a link
Request = Push | EphemeralPush | Ping | Gossip | Cosign | Lookup
#: what a peer answers each request relayed for another node with (or an ErrorFrame)
ANSWERS: dict[type[Frame], type[Frame]] = {
    FetchDevices: Devices,
    FetchBundles: Bundles,
    FetchKeyPackages: KeyPackages,
    FetchGroupTree: GroupTree,
    BlobGet: BlobChunk,
    FetchNodeKey: NodeKey,
    FetchHead: Head,
    FetchConsistency: Consistency,
    Cosign: Noted,
}


class Inbound:
    def __init__(
        self,
        *,
        name: str,
        identity: SigningKey,
        store: FederationStore,
        pool: LinkPool,
        routes: Callable[[], Awaitable[Routes]],
        local: LocalAnswer,
        delivered: Delivered,
        wake: Callable[[Iterable[str]], None],
        quota: Quota,
        envelope_ttl_ms: int,
        clock_ms: Callable[[], int],
        settings: FederationSettings,
        directory: KeyDirectory | None,
        gossiped: Callable[[str, Iterable[SeenHead]], Awaitable[None]],
        node_key: Callable[[str], Awaitable[bytes]],
        requests: MessageRequests,
        ephemerals: Ephemerals,
    ) -> None:
        """``directory`` is this node's key directory (None: it keeps none), ``gossiped(peer,
        heads)`` takes the heads a peer gossips, ``node_key(node)`` is a peer's pinned key,
        ``requests`` the allowance of envelopes without a valid access token, ``ephemerals``
        takes the ephemeral pushes (federation/ephemeral.py). A request a
        ``StoreFailure`` interrupts is answered ``unavailable``."""
        self._requests = requests
        self._ephemerals = ephemerals
        self._name = name
        self._directory = directory
        self._gossiped = gossiped
        self._node_key = node_key
        self._identity = identity
        self._store = store
        self._pool = pool
        self._routes = routes
        self._local = local
        self._delivered = delivered
        self._wake = wake
        self._quota = quota
        self._ttl_ms = envelope_ttl_ms
        #: peer -> until when nothing more is said about its group items in others' names
        self._unvouched_said = OncePer(UNVOUCHED_LOG_S)
        self._clock_ms = clock_ms
        self._max_refusals = settings.max_refusals
        #: sequenced pushes an inbound link takes ahead of its oldest unanswered one
        self.pushes_in_flight = settings.pushes_in_flight
        self._relay_deadline_s = settings.request_deadline_s * RELAY_DEADLINE_SHARE
        self._pushes = Limiter(settings.push_rate)
        # group submissions per node that answers for them (the hub verifies each commit)
        self._group_submits = Limiter(settings.group_submit_rate)
        self._queries = Limiter(settings.query_rate)
        self._bundles = Limiter(settings.bundle_rate)
        self._costs = CostBudget(settings.lookup_budget)
        # one-time prekeys handed to one peer per target account: past it, bundles come without
        self._one_time = Limiter(settings.one_time_rate)
        # the same for one-time KeyPackages: past it, the last-resort ones
        self._one_time_key_packages = Limiter(settings.one_time_rate)

    def handler(self, peer: str, key: VerifyKey) -> InboundLink:
        """The request handler for one inbound link from configured peer ``peer``, whose
        identity key (checked against its pin) is ``key``; it keeps the link's push sequence
        (for ``serve_link``: the handler, and its pipelined lane)."""
        return InboundLink(self, peer, key)

    async def _handle(self, link: InboundLink, frame: Frame) -> Frame:
        if not isinstance(frame, Request):
            raise RemoteProtocolError(f"unexpected {type(frame).__name__} on a federation link", code="unexpected_frame")
        await self._check_pinned(link)
        refused = await self._rate_limited(link, frame)
        if refused is not None:
            return refused
        if isinstance(frame, Push):
            return await self._push(link.peer, frame)
        if isinstance(frame, EphemeralPush):
            return await self._ephemerals.receive(link.peer, frame)
        if isinstance(frame, Ping):
            return Pong(request=frame.request)
        if isinstance(frame, Cosign):
            return await self._cosign(link.peer, link.key, frame)
        if isinstance(frame, Gossip):
            await self._gossiped(link.peer, frame.heads)
            return Noted(request=frame.request)
        return await self._charged_lookup(link.peer, frame)

    async def _check_pinned(self, link: InboundLink) -> None:
        """RemoteProtocolError (the link closes) once the link's peer is no longer pinned to the
        key it proved: a link is admitted once, and a peer removed or re-pinned (its old key
        leaked) must not go on being served on a link it opened before."""
        pinned = (await self._routes()).peer(link.peer)
        if pinned is None or pinned.fingerprint != link.key.fingerprint:
            raise RemoteProtocolError(f"{link.peer} is no longer a peer of this node with this key", code="unknown_peer")

    async def _rate_limited(self, link: InboundLink, frame: Request) -> ErrorFrame | None:
        """The refusal of a request over the peer's rate; a link that keeps going after
        ``max_refusals`` of them in a row is closed (RemoteProtocolError)."""
        if await self._allowed(link.peer, frame):
            link.refused_in_a_row = 0
            return None
        events.emit("rate_limited", peer=link.peer, limit="peer_requests")
        link.refused_in_a_row += 1
        if link.refused_in_a_row > self._max_refusals:
            raise RemoteProtocolError(f"{link.peer} kept sending after {self._max_refusals} rate-limit refusals", code="rate_limited")
        return ErrorFrame(request=frame.request, code="rate_limited", message=f"too many requests from {link.peer}; try again in a moment")

    def _unavailable(self, request: int) -> ErrorFrame:
        return ErrorFrame(request=request, code="unavailable", message=f"{self._name} cannot answer right now; try again later")

    async def _allowed(self, peer: str, frame: Frame) -> bool:
        """Spend the request's tokens; a request costs at most a full bucket (else one larger
        than the burst could never pass)."""
        now = self._clock_ms()
        if isinstance(frame, EphemeralPush):  # its own buckets: envelopes and bytes
            return self._ephemerals.allow(peer, frame)
        if isinstance(frame, Push):
            limiter, cost = self._pushes, len(frame.items)
        elif isinstance(frame, OneTime):
            limiter, cost = self._bundles, await self._bundle_count(frame)
        else:
            limiter, cost = self._queries, 1
        return limiter.allow(peer, now, min(cost, limiter.rate.burst))

    async def _bundle_count(self, req: OneTime) -> int:
        """Bundles (KeyPackages) the request may hand out: those asked for, or (none named)
        every device of a local account; a relayed request counts once here, its destination
        counts it fully."""
        if isinstance(req, FetchBundles) and req.devices:
            return len(req.devices)
        try:
            address = parse_address(req.account, remote=True)
        except RemoteProtocolError:
            return 1
        if address.node != self._name:
            return 1
        return max(1, len(await self._store.devices(str(address))))

    # Push ---------------------------------------------------------------------------------------

    async def _push(self, peer: str, req: Push) -> PushResult | ErrorFrame:
        """An unsequenced push (or one outside a pipelined lane): classified, stored, answered."""
        classified = await self._classified(peer, req)
        if not classified.taken:
            return self._stored(req, classified, [])
        try:
            results = await self._store.receive(classified.taken, now=classified.now, quota=self._quota)
        except Exception as exc:
            return self._not_stored(peer, req, exc)
        return self._stored(req, classified, results)

    async def _classified(self, peer: str, req: Push) -> _Classified:
        """What of ``req`` goes to the store, and the outcomes of what does not."""
        now = self._clock_ms()
        routes = await self._routes()
        classified = _Classified(now)
        contacts: dict[tuple[str, bytes], tuple[str, bool]] = {}  # a push's envelopes share a few
        for item in req.items:
            refusal, record = self._classify(peer, item, routes, now, contacts)
            if record is not None:
                classified.positions.append(len(classified.outcomes))
                classified.taken.append(record)
            classified.outcomes.append(refusal)
        return classified

    def _not_stored(self, peer: str, req: Push, exc: Exception) -> ErrorFrame:
        """The answer to a push whose store write failed: nothing of it was committed."""
        if isinstance(exc, StoreFailure):
            if exc.code in BUDGET_CODES:  # a storage budget: the peer keeps the items, backs off
                log.info("refused a push from %s: %s", peer, exc)
                return ErrorFrame(request=req.request, code=exc.code, message=f"{self._name}: {exc}")
            # e.g. a full disk (the peer retries later), or a push queued behind one that failed
            log.warning("could not store what %s pushed: %s", peer, exc)
            return self._unavailable(req.request)
        # a bug, not the peer's fault either
        log.error("could not store what %s pushed", peer, exc_info=exc)
        return self._unavailable(req.request)

    def _stored(self, req: Push, classified: _Classified, results: list[str]) -> PushResult:
        """The answer to a push whose taken items (``results``: their outcomes) are durably
        committed; tells the mailboxes and outbox workers that got something."""
        outcomes, taken = classified.outcomes, classified.taken
        mailboxes: set[tuple[str, int]] = set()
        forwarded: set[str] = set()
        for position, record, outcome in zip(classified.positions, taken, results):
            outcomes[position] = outcome
            if outcome == "hub_pending" and isinstance(record, GroupReceived) and record.charged is not None and record.charged != record.origin:
                # a SUBMIT its pusher may not speak for (the store's _vouched): said as the others
                self._unvouched(record.charged, record.origin)
            if outcome != OK:
                continue
            if isinstance(record, NewEnvelope):
                mailboxes.add((record.account, record.device_id))
            elif isinstance(record, OutboundItem):
                forwarded.add(record.dest)
            elif isinstance(record, GroupReceived):
                mailboxes.update(record.effects.mailboxes)
                forwarded.update(record.effects.dests)
        # Durably committed: only now tell the mailboxes and the outbox workers.
        if mailboxes:
            self._delivered(mailboxes)
        if forwarded:
            self._wake(forwarded)
        return PushResult(request=req.request, outcomes=tuple(outcomes))

    def _unvouched(self, peer: str, origin: str) -> None:
        """A hub's group item ``peer`` pushed in ``origin``'s name, a node it is not and does not
        relay for here: held back. Most likely a relay configured on one side only; said once a
        minute per peer (only pinned peers push)."""
        if not self._unvouched_said.due(peer, trio.current_time()):
            return
        log.warning(
            "group items from %s in %s's name are held back: %s is not %s and is not its --via here"
            " (a relay between a hub and its member nodes is named --via on both sides)",
            peer, origin, peer, origin,
        )  # fmt: skip

    def _classify(
        self, peer: str, item: Transit, routes: Routes, now: int, contacts: dict[tuple[str, bytes], tuple[str, bool]]
    ) -> tuple[str, Received | None]:
        """(refusal, None) or ("", what to hand the store) for one pushed item. ``contacts``:
        (address, access token) -> (account, whether the token is valid), for one push (one
        ``now``): its envelopes mostly repeat a few, and checking a token is an HMAC."""
        if item.dest == self._name:
            if item.envelope is not None:
                env = item.envelope
                known = contacts.get((env.to, item.access))
                if known is None:
                    account = str(parse_address(env.to, remote=True))
                    known = contacts[(env.to, item.access)] = (account, self._requests.is_contact(account, item.access, now=now))
                account, contact = known
                origin = _answerable(item.origin, peer, routes)
                if not contact and not self._requests.from_peer(peer, origin, (account, env.device), len(env.body), now=now):
                    return REQUEST_REFUSAL, None  # a stranger's message request over its allowance
                return "", NewEnvelope(
                    account=account,
                    device_id=env.device,
                    id=env.id,
                    expires=min(env.expires, now + self._ttl_ms),
                    kind=env.kind,
                    body=env.body,
                )
            if item.report is not None:
                return self._report(peer, item.report, routes)
            if item.group is not None:  # ordered, delivered or forwarded by the store
                charged = _answerable(item.origin, peer, routes)
                if charged != item.origin and item.group.kind != ItemKind.SUBMIT:
                    # a hub's items are taken from the hub (node/store/sqlite_groups.py): the
                    # origin must be the pusher's to give, or a peer could push in its name.
                    # Held back, not refused: an honest relay the operator has not named --via
                    # here loses nothing, and a forger's items stay in its own outbox
                    self._unvouched(peer, item.origin)
                    return "hub_pending", None
                if item.group.kind == ItemKind.SUBMIT and not self._group_submits.allow(charged, now):
                    # past the rate of the node that answers for it: refused for now (RETRY_LATER),
                    # the pusher keeps it and its group's later submissions, and pushes them again
                    events.emit("rate_limited", peer=charged, limit="peer_group_submits")
                    return "rate_limited", None
                return "", GroupReceived(item=item.group, origin=item.origin, node=self._name, ttl_ms=self._ttl_ms, charged=charged)
            return "invalid", None  # Transit.check refuses an item with none
        if not routes.may_relay(origin=item.origin, link_peer=peer, dest=item.dest):
            return "not_relaying", None
        hop = routes.next_hop(item.dest)
        if hop is None or hop.name == peer:  # never hand an item back where it came from
            return "unroutable", None
        if item.hops == 0:
            return "hop_limit", None
        # held on behalf of the node that answers for it: naming another origin spends no budget of its
        return "", relayed_item(item, now=now, ttl_ms=self._ttl_ms, charged=_answerable(item.origin, peer, routes))

    def _report(self, peer: str, report: Report, routes: Routes) -> tuple[str, StatusUpdate | None]:
        try:
            node = parse_address(report.account, remote=True).node
        except RemoteProtocolError:
            return "invalid", None
        hop = routes.next_hop(node)
        if hop is None or hop.name != peer:  # only the way the envelope went may report on it
            return "invalid", None
        accepted = report.outcome == OK
        return "", StatusUpdate(
            id=report.id,
            account=report.account,
            device=report.device,
            state="accepted" if accepted else "failed",
            code="" if accepted else report.outcome,
            at=report.at,
        )

    # Lookups ------------------------------------------------------------------------------------

    async def _charged_lookup(self, peer: str, req: Lookup) -> Frame:
        """``_lookup`` within ``peer``'s cost budget (core/cost_budget.py ``settings.lookup_budget``):
        refused ``rate_limited`` (saying when to try again) over it, its answer's size charged."""
        try:
            self._costs.admit(peer, self._clock_ms())
        except OverBudget as exc:
            return ErrorFrame(request=req.request, code=exc.code, message=f"{self._name}: {exc}")
        answer = await self._lookup(peer, req)
        if not isinstance(answer, BlobChunk):  # attachment chunks: counted as requests, not bytes
            self._costs.charge(peer, self._clock_ms(), len(encode_frame(answer)))
        return answer

    async def _lookup(self, peer: str, req: Lookup) -> Frame:
        try:
            if isinstance(req, FetchGroupTree):  # asked of the group's hub
                node = validate_node_name(req.hub, remote=True)
            elif isinstance(req, BlobGet):  # asked of the node that holds the attachment
                node = validate_node_name(req.node, remote=True)
            else:
                node = req.node if isinstance(req, (FetchNodeKey, FetchHead, FetchConsistency)) else parse_address(req.account, remote=True).node
        except RemoteProtocolError as exc:
            return ErrorFrame(request=req.request, code="bad_address", message=str(exc))
        if node != self._name:
            return await self._relay(peer, req, node)
        if isinstance(req, FetchNodeKey):
            return NodeKey(request=req.request, node=self._name, key=self._identity.public.to_bytes())
        if isinstance(req, (FetchHead, FetchConsistency)):
            return await self._directory_answer(req)
        if isinstance(req, OneTime) and req.one_time:
            req = self._one_time_allowed(peer, req)
        return await self._local(req)

    def _one_time_allowed(self, peer: str, req: OneTime) -> OneTime:
        """``req``, or the same without one-time prekeys (KeyPackages) once ``peer`` had its
        share of the account's (a node draining them for its users gets bundles that still
        work: PQXDH then runs with the signed and last-resort keys; a group add with the
        last-resort KeyPackage)."""
        limiter = self._one_time if isinstance(req, FetchBundles) else self._one_time_key_packages
        devices = len(req.devices) if isinstance(req, FetchBundles) else 0
        cost = min(devices or limits.MAX_DEVICES_PER_ACCOUNT, limiter.rate.burst)
        account = str(parse_address(req.account, remote=True))  # _lookup parsed it already
        if limiter.allow((peer, account), self._clock_ms(), cost):
            return req
        return dataclasses.replace(req, one_time=False)

    async def _directory_answer(self, req: FetchHead | FetchConsistency) -> Frame:
        if self._directory is None:
            return ErrorFrame(request=req.request, code="unavailable", message=f"{self._name} keeps no key directory")
        if isinstance(req, FetchHead):
            return Head(request=req.request, node=self._name, head=await self._directory.head())
        try:
            proof = await self._directory.consistency(req.first, req.second)
        except ValueError as exc:
            return ErrorFrame(request=req.request, code="bad_request", message=str(exc))
        return Consistency(request=req.request, node=self._name, first=req.first, second=req.second, proof=proof)

    async def _cosign(self, peer: str, key: VerifyKey, req: Cosign) -> Frame:
        try:
            claimed = decode_cosignature(req.cosignature)  # whose, and for which node (not trusted)
        except RemoteProtocolError as exc:
            return ErrorFrame(request=req.request, code="bad_cosignature", message=str(exc))
        if claimed.node != self._name:
            return await self._relay(peer, req, claimed.node)
        if self._directory is None:
            return ErrorFrame(request=req.request, code="unavailable", message=f"{self._name} keeps no key directory")
        try:
            if claimed.witness != peer:  # relayed from a peer behind ``peer``
                key = VerifyKey.from_bytes(await self._node_key(claimed.witness))
            await self._directory.add_cosignature(claimed.witness, key, req.cosignature)
        except (FederationError, ProtocolError) as exc:
            return ErrorFrame(request=req.request, code="bad_cosignature", message=f"cosignature by {claimed.witness} refused: {exc}")
        return Noted(request=req.request)

    async def _relay(self, peer: str, req: Lookup | Cosign, node: str) -> Frame:
        """``req`` passed on towards ``node`` (between configured peers), its answer back."""
        routes = await self._routes()
        if not routes.may_relay(origin=peer, link_peer=peer, dest=node):
            return ErrorFrame(request=req.request, code="not_relaying", message=f"{self._name} does not relay for {peer} to {node}")
        hop = routes.next_hop(node)
        if hop is None or hop.name == peer:
            return ErrorFrame(request=req.request, code="unroutable", message=f"{self._name} has no route to {node}")
        answer: Frame | None = None
        # Give up before the asking node does (it waits request_deadline_s for us): it then gets
        # an answer on a link that is alive, rather than silence it must treat as a dead link.
        with trio.move_on_after(self._relay_deadline_s):
            try:
                answer = await self._pool.request(hop, req)
            except FederationError as exc:
                return ErrorFrame(request=req.request, code=exc.code, message=str(exc))
        if answer is None:
            return ErrorFrame(request=req.request, code="unreachable", message=f"{node} did not answer {self._name} in time")
        if not isinstance(answer, (ANSWERS[type(req)], ErrorFrame)):
            return ErrorFrame(request=req.request, code="invalid", message=f"{hop.name} answered with {type(answer).__name__}")
        return dataclasses.replace(answer, request=req.request)



def _answerable(origin: str, peer: str, routes: Routes) -> str:
    """The node that answers for what link peer ``peer`` pushes in the name of ``origin``: the
    origin is the pusher's word, so it is ``origin`` only when that is ``peer`` or a configured
    node ``peer`` relays for (its `via`); any other name is the peer's own (naming new ones, or
    other nodes, does not multiply its allowances or spend theirs)."""
    if origin == peer:
        return peer
    relayed = routes.peer(origin)
    return origin if relayed is not None and relayed.via == peer else peer


@dataclasses.dataclass(slots=True)
class _Classified:
    """A push's items classified at ``now``: ``taken`` go to the store (their outcomes at
    ``positions`` of ``outcomes``), the others' refusals are in ``outcomes`` already."""

    now: int
    outcomes: list[str] = dataclasses.field(default_factory=list)
    taken: list[Received] = dataclasses.field(default_factory=list)
    positions: list[int] = dataclasses.field(default_factory=list)


def _nothing() -> None:
    pass


class InboundLink:
    """One inbound link's handler. ``__call__`` answers any request (several at a time, in
    ``serve_link``). Its sequenced pushes come through the pipelined lane (``start``), one at a
    time in the order read: each is checked, classified and its store write queued behind the
    previous push's (push_sequence.py ``Receiving``), so that the next push's write joins the
    group commit of the one before it instead of waiting for it (one fsync for both); each
    answer goes in the order read, once its own write has committed. At most ``ahead`` pushes
    are taken before the oldest one's answer has gone."""

    def __init__(self, inbound: Inbound, peer: str, key: VerifyKey) -> None:
        self._inbound = inbound
        self.peer = peer
        self.key = key
        #: pushes taken ahead of the oldest unanswered one: as many as this node sends
        self.ahead = inbound.pushes_in_flight
        #: requests refused rate_limited in a row (more than max_refusals close the link)
        self.refused_in_a_row = 0
        # pushes refused out_of_order since the last one handled in its turn: an honest pusher
        # has at most its in-flight window behind a refused push; pings do not end the run
        self._out_of_turn = 0
        self._sequence = Receiving()

    async def __call__(self, frame: Frame) -> Frame:
        if isinstance(frame, Push) and frame.seq:  # outside a pipelined lane: one at a time
            taken = await self.start(frame)
            await taken.wait(_nothing)
            return taken.answer()
        return await self._handle_or_unavailable(frame)

    async def _handle_or_unavailable(self, frame: Frame) -> Frame:
        # A store error (the database is locked, the disk is full) is this node's trouble,
        # not the peer's: the peer is told to try again later, the link and the node go on.
        try:
            return await self._inbound._handle(self, frame)
        except StoreFailure as exc:
            log.warning("could not answer a %s from %s: %s", type(frame).__name__, self.peer, exc)
            return self._inbound._unavailable(getattr(frame, "request", 0))

    async def start(self, frame: Frame) -> TakenPush:
        """Take the next frame of the ordered lane (a sequenced push): refused at once, or
        classified with its write still to be queued (``TakenPush.wait``). RemoteProtocolError
        closes the link (after the answers of the pushes before it)."""
        if not isinstance(frame, Push):  # the lane holds sequenced pushes only
            return TakenPush(self, frame, answer=await self._handle_or_unavailable(frame))
        sequence, inbound = self._sequence, self._inbound
        refused = sequence.refusal(frame)
        if refused is not None:
            self._out_of_turn += 1
            if self._out_of_turn > inbound._max_refusals:
                raise RemoteProtocolError(
                    f"{self.peer} kept sending pushes out of turn after {inbound._max_refusals} out_of_order refusals", code="out_of_order"
                )
            return TakenPush(self, frame, answer=refused)
        self._out_of_turn = 0
        await inbound._check_pinned(self)
        answer: ErrorFrame | None
        try:
            answer = await inbound._rate_limited(self, frame)
            classified = None if answer is not None else await inbound._classified(self.peer, frame)
        except StoreFailure as exc:
            log.warning("could not answer a Push from %s: %s", self.peer, exc)
            answer, classified = inbound._unavailable(frame.request), None
        behind = sequence.refusal(frame)  # a push before it failed while it was classified
        if behind is not None:
            return TakenPush(self, frame, answer=behind)
        if classified is None:  # refused as a whole: nothing after it is taken until it is answered
            return TakenPush(self, frame, answer=answer, round_=sequence.hold(frame))
        if not classified.taken:  # nothing for the store
            return TakenPush(self, frame, answer=inbound._stored(frame, classified, []), round_=sequence.take(frame, None))
        return TakenPush(self, frame, classified=classified)

    async def _write(self, taken: TakenPush, classified: _Classified, queued: Callable[[], object]) -> None:
        """Queue ``taken``'s write behind the previous push's (``queued()`` once it has its
        place), then wait for its commit."""
        sequence = self._sequence
        push = taken.push
        assert isinstance(push, Push)  # only a push is classified
        behind = sequence.refusal(push)  # a push before it failed since it was classified
        if behind is not None:
            taken.result = behind
            return

        def placed(write: Queued) -> None:
            taken.round = sequence.take(push, write)
            queued()

        try:
            results = await self._inbound._store.receive(
                classified.taken, now=classified.now, quota=self._inbound._quota, after=sequence.after, queued=placed
            )
        except Exception as exc:
            if taken.round is None:  # refused before it had its place: like a rate-limited one
                taken.round = sequence.hold(push)
            taken.result = self._inbound._not_stored(self.peer, push, exc)
            return
        taken.result = self._inbound._stored(push, classified, results)

    def _answer(self, taken: TakenPush) -> Frame:
        assert taken.result is not None
        if taken.round is None or not isinstance(taken.push, Push):
            return taken.result
        return self._sequence.answer(taken.push, taken.round, taken.result)


class TakenPush:
    """A frame of the ordered lane, taken: ``wait`` for its write (beside the next ones),
    then its ``answer`` (in the order read)."""

    __slots__ = ("_link", "push", "_classified", "result", "round")

    def __init__(
        self, link: InboundLink, push: Frame, *, answer: Frame | None = None, round_: int | None = None, classified: _Classified | None = None
    ) -> None:
        self._link = link
        self.push = push
        self._classified = classified
        #: what it was handled into, before the sequence has its say
        self.result = answer
        #: the round it was taken or held in; None for a refusal the sequence made itself
        self.round = round_

    async def wait(self, queued: Callable[[], object]) -> None:
        """Until its write (if any) has committed or failed; ``queued()`` is called once the
        next frame may be taken (its write has its place, or it has none)."""
        try:
            if self._classified is not None:
                await self._link._write(self, self._classified, queued)
        finally:
            queued()

    def answer(self) -> Frame:
        """What to send; called after the answers of the frames read before it went."""
        return self._link._answer(self)
