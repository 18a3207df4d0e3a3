"""The one place where the node is wired together: config, key, store, key directory, registry,
federation, server.

What a node takes from outside besides its data directory and config is a parameter of
``Node``: its clock, its randomness, its federation tunables and its per-device limits
(production defaults: the wall clock, ``os.urandom``, node.toml's ``[federation]`` settings,
``ClientLimits()`` with its ``[budgets]``). Tests pass their own instead of patching this module.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import trio

import sonet
from sonet.core import limits
from sonet.core.blob_api import BlobGet
from sonet.core.client_api import CLIENT_FRAMES, FetchGroupTree
from sonet.core.cost_budget import CostBudget
from sonet.core.crypto import CryptoPolicy
from sonet.core.federation_api import FEDERATION_FRAMES
from sonet.core.handshake import HandshakeComplete
from sonet.core.handshake_guard import HandshakeGuard
from sonet.core.timer import wake_delay_s
from sonet.core.wire import Frame
from sonet.federation.link import ENDPOINT as FEDERATION_ENDPOINT
from sonet.federation.message_requests import MessageRequests
from sonet.federation.service import Federation
from sonet.federation.settings import FederationSettings
from sonet.federation.status import FederationStatus
from sonet.transport import SecureSocket, events, serve
from sonet.transport.server import ConnectionLimits, Listening, raise_fd_limit
from sonet.transport.tls import server_context

from .client_keys import answer_local
from .group_trees import answer_group_tree
from .client_limits import ClientLimits
from .client_context import ClientContext, ClientFederation
from .client_session import ClientSession
from .audit import AuditLog
from .audit_stream import AuditStream, started_fields
from .blobs import BlobStore
from .admin_watch import watch_admin_changes
from .client_blobs import answer_blob
from .clock import now_ms
from .config import CONFIG_FILE, NodeConfig
from .data_dir import DB_FILE, RUNTIME_FILE
from .directory import NodeDirectory
from .client_checks import RequestError
from .expiry import CHECK_S as EXPIRY_CHECK_S, expiry_loop
from .identity import load_node_key
from .linking import LinkRegistry
from .mailbox import DeviceConnections, MailboxRegistry
from .server import PLAIN_HTTP_ANSWER, Router
from .store import Quota, SqliteStore, open_store
from .unregistered import Unregistered

if TYPE_CHECKING:  # imported where a node on PostgreSQL starts its cluster: psycopg took ~0.2 s of every start
    from .cluster import Cluster
    from .ops.metrics import NodeMetrics

__all__ = ["Node", "ListenError", "now_ms", "federation_settings", "connection_limits", "DB_FILE", "RUNTIME_FILE"]

log = logging.getLogger("sonet.node")

PURGE_INTERVAL_S = 60.0
#: how often the federation section of run.json is refreshed when it changed
STATUS_WRITE_INTERVAL_S = 0.5


class ListenError(OSError):
    """The node could not bind its address (in use, not this host's, not permitted): told
    apart from every other OSError of start-up, which names its own cause (a full disk...)."""


def federation_settings(config: NodeConfig) -> FederationSettings:
    """The federation tunables node.toml's ``[federation]`` (and ``[budgets]``: a peer's lookup
    budget and group submissions) sets; the others keep their defaults."""
    return FederationSettings(
        retry_base_s=config.federation_retry_base_s,
        retry_max_s=config.federation_retry_max_s,
        request_deadline_s=config.federation_request_timeout_s,
        send_timeout_s=config.send_timeout_s,
        pushes_in_flight=config.federation_pushes_in_flight,
        lookup_budget=config.budgets.peer_budget,
        group_submit_rate=config.budgets.peer_group_submit_rate,
    )


def connection_limits(config: NodeConfig) -> ConnectionLimits:
    """The port's caps and deadlines node.toml's ``[connections]`` sets."""
    return ConnectionLimits(
        max_connections=config.max_connections,
        max_connections_per_address=config.max_connections_per_address,
        max_pending=config.max_pending_connections,
        max_pending_per_address=config.max_pending_per_address,
        upgrade_timeout_s=config.upgrade_timeout_s,
        handshake_timeout_s=config.handshake_timeout_s,
        send_timeout_s=config.send_timeout_s,
        message_timeout_s=config.message_timeout_s,
        partial_bytes_per_address=config.partial_bytes_per_address,
        partial_bytes_per_device=config.partial_bytes_per_device,
        partial_bytes_per_account=config.partial_bytes_per_account,
        partial_bytes_per_peer=config.partial_bytes_per_peer,
    )


def storage_quota(config: NodeConfig) -> Quota:
    """What the node stores per actor: node.toml's ``[mailbox]`` and ``[storage]``."""
    return Quota(
        max_envelopes=config.mailbox_max_envelopes,
        max_bytes=config.mailbox_max_bytes,
        sender_device_bytes=config.storage_device_max_bytes,
        sender_account_bytes=config.storage_account_max_bytes,
        outbox_bytes=config.storage_outbox_max_bytes,
        relay_origin_bytes=config.storage_relay_origin_max_bytes,
        reserve_bytes=config.storage_reserve_bytes,
        max_store_bytes=config.storage_max_database_bytes or None,
        group_envelopes=config.budgets.group_items_per_device,
        group_bytes=config.budgets.group_bytes_per_device,
    )


class Node:
    def __init__(
        self,
        data_dir: Path,
        config: NodeConfig,
        *,
        clock_ms: Callable[[], int] = now_ms,
        rng: Callable[[int], bytes] = os.urandom,
        federation: FederationSettings | None = None,
        client_limits: ClientLimits | None = None,
        client_federation: Callable[[ClientContext], ClientFederation | None] | None = None,
    ) -> None:
        """``clock_ms``: ms since the epoch (certificates, expiry, purges); ``rng``: link
        slots and retry jitter; ``federation``: the federation tunables (default: from
        ``config``); ``client_limits``: per-device rate limits (default: ``ClientLimits()`` with
        node.toml's ``[budgets]`` in it);
        ``client_federation``: what the device handlers reach other nodes through instead of
        this node's own federation, given their context (tests: a loopback, a fake, or None
        for a node that does not federate)."""
        self.data_dir = data_dir
        self.config = config
        self.clock_ms = clock_ms
        self.rng = rng
        self.federation_settings = federation if federation is not None else federation_settings(config)
        self.client_limits = client_limits if client_limits is not None else config.budgets.client_limits()
        self._client_federation = client_federation
        self.identity = load_node_key(data_dir)
        self.policy = CryptoPolicy(config.minimum_crypto_mode)
        self.registry = MailboxRegistry()
        self.links = LinkRegistry(rng=rng)
        self.connections = DeviceConnections(max_per_device=config.max_connections_per_device)
        self.url: str | None = None
        #: the port's state once ``run`` listens (connections held, what was refused or cut)
        self.listening: Listening | None = None
        #: admissions and refusals on /federation (kept across runs of ``run``)
        self.federation_status = FederationStatus()
        #: built by ``run`` (it needs the store)
        self.federation: Federation | None = None
        #: what the device handlers share, built by ``run``
        self.context: ClientContext | None = None
        #: device connections being served right now
        self.client_sessions = 0
        self._started_at = clock_ms()
        #: the node's Prometheus metrics (node/ops/), kept only when node.toml sets [ops] listen:
        #: nothing could read them otherwise (and prometheus_client takes ~0.1 s to import)
        self.metrics: NodeMetrics | None = None
        if config.ops_listen is not None:
            from .ops.metrics import NodeMetrics

            self.metrics = NodeMetrics()
        #: the operations listener's bound port once ``run`` listens (None: [ops] is off)
        self.ops_port: int | None = None
        self._runtime_written = False
        #: the file `sonet-node status` reads this process's state from (one per process when
        #: several share the data directory: node/data_dir.py instance_files)
        self.runtime_file = RUNTIME_FILE
        #: this process's part among several sharing a PostgreSQL database (built by ``run``)
        self.cluster: Cluster | None = None

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        # [tls]: the certificate is read before anything opens (a bad one stops the start)
        tls = server_context(*self.config.tls.paths(self.data_dir)) if self.config.tls else None
        # node.db in the data directory, or node.toml's PostgreSQL database
        store = await open_store(self.config.storage_database or self.data_dir / DB_FILE)
        if self.metrics is not None:  # every store operation timed, envelopes counted (node/ops/observed_store.py)
            from .ops.observed_store import ObservedStore

            store = ObservedStore.around(store, self.metrics)
        # attachments live on disk beside the database, one file per blob (node/blobs.py)
        blobs = await BlobStore.open(self.data_dir, self.config.blobs, rng=self.rng, reserve_bytes=self.config.storage_reserve_bytes)
        # the audit log hears this node's security events (its tasks inherit the context)
        audit = AuditStream(AuditLog(self.data_dir, self.identity), clock_ms=self.clock_ms)
        self.audit_stream = audit
        subscription = events.subscribe(audit.hear)
        # and the node's metrics count them (node/ops/metrics.py)
        metrics_subscription = events.subscribe(self.metrics.on_security_event) if self.metrics is not None else None
        try:
            audit.note("node_started", **self._started_fields())
            await trio.to_thread.run_sync(audit.write)
            quota = storage_quota(self.config)
            # one allowance of message requests for device sends and peers' pushes alike
            requests = MessageRequests.for_node(
                self.identity, quota, envelope_ttl_ms=self.config.envelope_ttl_ms, caps=self.config.budgets.message_requests
            )

            async def answer_for_peer(frame: Frame) -> Frame:
                if isinstance(frame, FetchGroupTree):
                    return await answer_group_tree(ctx, frame)
                if isinstance(frame, BlobGet):  # a chunk of an attachment of this node (node/client_blobs.py)
                    return await answer_blob(ctx, frame)
                return await answer_local(ctx, frame)

            # Each new head goes to the peers at once, so that they witness it.
            directory = NodeDirectory(
                name=self.config.name,
                key=self.identity,
                store=store,
                clock_ms=self.clock_ms,
                on_new_head=lambda: federation.directory_changed(),
            )
            federation = self.federation = Federation(
                name=self.config.name,
                identity=self.identity,
                policy=self.policy,
                store=store,
                local=answer_for_peer,
                delivered=self.registry.notify,
                clock_ms=self.clock_ms,
                rng=self.rng,
                quota=quota,
                envelope_ttl_ms=self.config.envelope_ttl_ms,
                settings=self.federation_settings,
                status=self.federation_status,
                directory=directory,
                requests=requests,
                push_ephemeral=self.registry.push_ephemeral,
            )
            store.on_outbox_changed(federation.wake)  # items another process queued or settled
            self.links.use(store, self.clock_ms)  # the link slots are in the store, seen by every process
            ctx = ClientContext(
                name=self.config.name,
                store=store,
                registry=self.registry,
                policy=self.policy,
                quota=quota,
                registration=self.config.registration,
                envelope_ttl_ms=self.config.envelope_ttl_ms,
                clock_ms=self.clock_ms,
                node_key=self.identity,
                links=self.links,
                connections=self.connections,
                directory=directory,
                federation=self.federation,
                limits=self.client_limits,
                costs=CostBudget(self.config.budgets.device_budget),
                requests=requests,
                unregistered_timeout_s=self.config.unregistered_timeout_s,
                blobs=blobs,
                unregistered=Unregistered(
                    max_total=self.config.max_unregistered, max_per_address=self.config.max_unregistered_per_address
                ),
            )
            if self._client_federation is not None:
                ctx = dataclasses.replace(ctx, federation=self._client_federation(ctx))
            database = self.config.storage_database
            if database is not None:
                # PostgreSQL: other processes may serve this node too (node/cluster.py; imported
                # here: psycopg took ~0.2 s of every node start)
                from .cluster import Cluster, process_name

                self.cluster = Cluster(database, process=process_name(self.rng), registry=self.registry, links=self.links)
                self.cluster.attach(federation.outboxes)
            self.context = ctx

            async def serve_client(sock: SecureSocket, done: HandshakeComplete) -> None:
                if self.metrics is not None:
                    self.metrics.handshake_device.inc()
                self.client_sessions += 1
                try:
                    await ClientSession(ctx, sock).run()
                finally:
                    self.client_sessions -= 1

            router = Router(identity=self.identity, policy=self.policy, guard=HandshakeGuard(self.config.handshake_guard, rng=self.rng))
            # until it has an account a device sends nothing larger than a Register (ClientSession
            # raises the cap once it has one)
            router.route("/client", serve_client, CLIENT_FRAMES, max_message_bytes=limits.MAX_UNREGISTERED_RECORD_BYTES)
            # The gate reads the peers table on every attempt: `sonet-node peer add/remove` on
            # the same database takes effect for the next link without a restart.
            async def serve_peer(sock: SecureSocket, done: HandshakeComplete) -> None:
                if self.metrics is not None:
                    self.metrics.handshake_peer.inc()
                # its unfinished messages count against this peer's budget, not its address's
                sock.allow_messages(limits.MAX_RECORD_BYTES, peer=done.peer.fingerprint)
                await federation.serve(sock, done)

            router.route(FEDERATION_ENDPOINT, serve_peer, FEDERATION_FRAMES, admit_for=self.federation.gate.admit_for)
            # Before serving: every account has its leaf and there is a head to witness.
            await directory.start()
            host, port = self.config.host_port
            # room for the connection caps (allowed without privileges up to the hard limit)
            raise_fd_limit()
            async with trio.open_nursery() as nursery:
                if self.cluster is not None:  # listening to the other processes before serving
                    await nursery.start(self.cluster.run)
                # before the server: inbound links relay lookups over the federation's links
                await nursery.start(self.federation.run)
                try:
                    server = await nursery.start(
                        lambda task_status: serve(
                            router,
                            host,
                            port,
                            plain_http_answer=PLAIN_HTTP_ANSWER,
                            handler_nursery=nursery,
                            caps=connection_limits(self.config),
                            tls=tls,
                            task_status=task_status,
                        )
                    )
                except OSError as exc:  # binding is all the server does before it has started
                    raise ListenError(exc.errno, f"cannot listen on {self.config.listen}: {exc.strerror or exc}") from exc
                bound = server.port
                self.listening = server
                if self.config.ops_listen is not None and self.metrics is not None:
                    from .ops.listener import start_ops_listener

                    self.ops_port = await start_ops_listener(nursery, self, store, self.config.ops_listen, self.metrics)
                self.url = f"{'wss' if tls else 'ws'}://{host}:{bound}"
                self._runtime_written = self._write_runtime_at_start()
                nursery.start_soon(audit.run)
                nursery.start_soon(self._purge_loop, store)
                nursery.start_soon(self._status_loop)
                nursery.start_soon(self._blob_retention_loop, blobs)
                # `sonet-node accounts disable|remove` from another process ends sessions at once;
                # `sonet-node peer add|remove` changes the routes
                refresh = self.federation.refresh_routes if self.federation is not None else None
                nursery.start_soon(
                    functools.partial(watch_admin_changes, store, self.connections, directory.publish, peers_changed=refresh)
                )
                task_status.started(self.url)
        finally:
            if metrics_subscription is not None:
                events.unsubscribe(metrics_subscription)
            events.unsubscribe(subscription)
            audit.note("node_stopped", pid=os.getpid())
            audit.write()
            (self.data_dir / self.runtime_file).unlink(missing_ok=True)
            await store.close()

    def _started_fields(self) -> dict:
        try:
            config_bytes = (self.data_dir / CONFIG_FILE).read_bytes()
        except OSError:
            config_bytes = b""  # a node built from a config in memory (tests)
        listen = [self.config.listen]
        ops_listen = getattr(self.config, "ops_listen", None)
        if ops_listen:
            listen.append(str(ops_listen))
        fingerprint = self.identity.public.fingerprint
        return started_fields(config_bytes, name=self.config.name, listen=listen, fingerprint=fingerprint, version=sonet.__version__, pid=os.getpid())

    def _write_runtime(self) -> None:
        """run.json: how `sonet-node status` finds the running node and its live state."""
        info = {
            "pid": os.getpid(),
            "url": self.url,
            "started_at": self._started_at,
            "federation": self.federation.snapshot() if self.federation else self.federation_status.snapshot(),
        }
        path = self.data_dir / self.runtime_file
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info) + "\n")
        os.replace(tmp, path)  # readers never see a half-written file

    def _write_runtime_at_start(self) -> bool:
        """run.json for this run; on a full disk (a crash may have left it full) the node serves
        without it (acknowledgements and deletes free room; the status loop writes it then)."""
        try:
            self._write_runtime()
        except OSError as exc:
            log.warning("cannot write %s: %s; `sonet-node status` cannot see this node until it can", self.runtime_file, exc.strerror or exc)
            # the one left by a crashed run would name a dead process (and removing it frees room)
            (self.data_dir / self.runtime_file).unlink(missing_ok=True)
            return False
        return True

    async def _status_loop(self) -> None:
        assert self.federation is not None
        written = self.federation.version if self._runtime_written else None
        while True:
            await trio.sleep(STATUS_WRITE_INTERVAL_S)
            if self.federation.version != written:
                try:
                    self._write_runtime()
                except OSError as exc:  # a full disk: the status is stale until there is room again
                    log.warning("cannot write %s, trying again in %g s: %s", self.runtime_file, STATUS_WRITE_INTERVAL_S, exc)
                    continue
                written = self.federation.version

    async def _blob_retention_loop(self, blobs: BlobStore) -> None:
        """Attachments go at their expiry: past their retention (node.toml [blobs] retention_days)
        or at the closer time their owner set (a disappearing message's; node/blobs.py expire).
        Sleeps until the earliest, at most PURGE_INTERVAL_S, woken when one is brought closer."""
        while True:
            now = self.clock_ms()
            try:
                dropped = await blobs.purge(now)
            except RequestError as exc:  # a file that cannot be deleted now: the next round tries again
                log.warning("cannot delete expired attachments, trying again in %g s: %s", EXPIRY_CHECK_S, exc)
                await trio.sleep(EXPIRY_CHECK_S)
                continue
            if dropped:
                log.info("deleted %d attachments at their expiry", dropped)
            with trio.move_on_after(wake_delay_s(now, [blobs.next_expiry()], longest_s=PURGE_INTERVAL_S)):
                await blobs.expiry_changed()

    async def _purge_loop(self, store: SqliteStore) -> None:
        """Expired envelopes go at their expiry (node/expiry.py), the rest every PURGE_INTERVAL_S."""
        federation = self.federation
        assert federation is not None

        async def purge(now: int) -> None:
            dropped = await store.purge_expired(now=now)
            await self.links.purge(now)
            if dropped:
                log.info("expired %d envelopes", dropped)

        await expiry_loop(
            clock_ms=self.clock_ms,
            next_expiry=lambda after: store.next_expiry(after=after),
            purge=purge,
            expire_outbox=federation.expire_outbox,
            full_interval_s=PURGE_INTERVAL_S,
        )
