"""What every request handler of a ``/client`` connection shares.

``ClientContext`` is what a session needs from the node; ``Session`` is what a handler needs from
the connection it answers on (node/client_session.py implements it); ``ClientFederation`` is what
the handlers use of federation to reach other nodes (federation/service.py's ``Federation``
implements it). The helpers below are the checks that several handlers start with; each refusal
is a ``RequestError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from sonet.core.blob_api import BlobChunk
from sonet.core.client_api import Bundles, Consistency, Devices, GroupTree, Head, KeyPackages, LinkOffer
from sonet.core.cost_budget import CostBudget
from sonet.core.crypto import CryptoPolicy, SigningKey, VerifyKey
from sonet.core.envelope import Envelope
from sonet.core.wire import Frame
from sonet.federation.errors import FederationError
from sonet.federation.message_requests import MessageRequests
from sonet.federation.records import OutboundItem

from .client_checks import RequestError, parse_or_refuse
from .cost_budget import client_cost_budget
from .directory import NodeDirectory
from .linking import LinkRegistry
from .mailbox import DeviceConnections, MailboxKey, MailboxRegistry
from .unregistered import Unregistered
from .store import AccountRow, DeviceRow, Quota, Store, StoreError

if TYPE_CHECKING:  # client_limits builds on this module
    from .blobs import BlobStore
    from .client_limits import ClientLimits

__all__ = [
    "ClientContext",
    "ClientFederation",
    "Session",
    "require_registered",
    "require_unregistered",
    "local_account",
    "remote",
    "federation_errors",
    "account_row",
    "store_message",
]


class ClientFederation(Protocol):
    """What the device handlers use of federation (federation/service.py documents each
    method); every failure is a ``FederationError``."""

    async def remote_devices(self, account: str) -> Devices: ...

    async def remote_bundles(self, account: str, devices: tuple[int, ...], *, one_time: bool = True) -> Bundles: ...

    async def remote_key_packages(self, account: str, *, one_time: bool = True) -> KeyPackages: ...

    async def remote_group_tree(self, hub: str, group: bytes, epoch: int, offset: int) -> GroupTree: ...

    async def remote_blob(self, node: str, blob: bytes, offset: int) -> BlobChunk: ...

    async def remote_head(self, node: str) -> Head: ...

    async def remote_consistency(self, node: str, first: int, second: int) -> Consistency: ...

    async def node_key(self, node: str) -> bytes: ...

    async def is_peer(self, node: str) -> bool: ...

    def outbound(
        self, env: Envelope, *, sender_account: str, sender_device: int, now: int, access: bytes = b"", checked: bool = False
    ) -> OutboundItem: ...

    def wake(self, dests: Iterable[str]) -> None: ...

    def send_ephemeral(self, envelopes: Iterable[Envelope]) -> None: ...

    def queued_note(self, dest: str) -> tuple[str, str] | None: ...


@dataclass(frozen=True, kw_only=True)
class ClientContext:
    """What a session needs from the node; passed in, never fetched from a global."""

    name: str
    store: Store
    registry: MailboxRegistry
    policy: CryptoPolicy
    quota: Quota
    registration: str
    envelope_ttl_ms: int
    clock_ms: Callable[[], int]
    #: signs sender certificates
    node_key: SigningKey
    links: LinkRegistry
    connections: DeviceConnections
    #: this node's key directory: proofs for lookups, heads, publishing after account changes
    directory: NodeDirectory
    #: lookups and outboxes for accounts of other nodes; None: this node does not federate
    federation: ClientFederation | None = None
    #: per-device rate limits (node/client_limits.py); None: unlimited (tests of other things)
    limits: ClientLimits | None = None
    #: access tokens and the allowance of message requests (federation/message_requests.py),
    #: shared with the federation inbound; None: every sender counts as a contact
    requests: MessageRequests | None = None
    #: how long a connection without an account may stay without registering or linking
    #: (a connection waiting in a link slot: until the slot expires)
    unregistered_timeout_s: float = 60.0
    #: connections without an account, capped per address and node-wide; None: uncapped
    unregistered: Unregistered | None = None
    #: per-device budgets of expensive requests (node/cost_budget.py)
    costs: CostBudget = field(default_factory=client_cost_budget)
    #: the attachment store (node/blobs.py); None: this node keeps no attachments
    blobs: BlobStore | None = None


class Session(Protocol):
    """The connection a request arrived on, as the handlers see it."""

    @property
    def ctx(self) -> ClientContext: ...

    @property
    def peer(self) -> VerifyKey:
        """The device key this connection authenticated with."""
        ...

    @property
    def mailbox(self) -> MailboxKey | None:
        """(account, device) once the device is registered, else None."""
        ...

    @property
    def source(self) -> str:
        """The address the connection comes from (an IPv6 address's /64; "" if unknown):
        the actor that per-address limits charge."""
        ...

    def delivered_here(self, ids: Sequence[bytes]) -> int:
        """How many of ``ids`` this connection delivered and has not seen acknowledged yet."""
        ...

    async def send(self, frame: Frame) -> None: ...

    def become(self, row: DeviceRow) -> None:
        """This connection is now the registered device ``row``: deliveries start."""
        ...

    def push_offer(self, offer: LinkOffer) -> bool:
        """Hand a LinkOffer to this (waiting) connection; False if it cannot take it."""
        ...


def require_registered(session: Session) -> MailboxKey:
    if session.mailbox is None:
        raise RequestError("not_registered", "this device is not registered on this node")
    return session.mailbox


def require_unregistered(session: Session) -> None:
    if session.mailbox is not None:
        raise RequestError("already_registered", f"this device is already registered as {session.mailbox[0]}")


def local_account(ctx: ClientContext, text: str) -> str:
    """The normalised address ``text``, which must be an account of this node."""
    address = parse_or_refuse(text)
    if address.node != ctx.name:
        raise _unknown_node(ctx, address.node)
    return str(address)


def remote(ctx: ClientContext, node: str) -> ClientFederation:
    """The federation service, to reach ``node`` (another node); unknown_node without one."""
    if ctx.federation is None:
        raise _unknown_node(ctx, node)
    return ctx.federation


def _unknown_node(ctx: ClientContext, node: str) -> RequestError:
    why = "" if ctx.federation is not None else ", and federation is not configured"
    return RequestError("unknown_node", f"{node} is not this node{why}")


@contextmanager
def federation_errors() -> Iterator[None]:
    """A failed lookup or route towards another node: the device gets its code and one line
    (e.g. "cannot reach beta.example: ...")."""
    try:
        yield
    except FederationError as exc:
        raise RequestError(exc.code, str(exc)) from None


async def account_row(ctx: ClientContext, account: str) -> AccountRow:
    row = await ctx.store.account(account)
    if row is None:
        raise RequestError("unknown_account", f"no account {account} on {ctx.name}")
    return row


def store_message(exc: StoreError) -> str:
    """What the device is told when the store refuses to take envelopes or prekeys."""
    if exc.code == "mailbox_full":
        return "the recipient's mailbox is full; try again later"
    return "the node could not store the message"
