"""Frames of the node <-> node protocol on ``/federation`` (inside the secure channel).

The dialling node sends requests, the accepting node answers each with the same ``request``
number (several may be outstanding; answers can come in any order):

- ``Push`` -> ``PushResult``: outbox items, one outcome per item, given only after the
  receiver durably committed what it took. ``"ok"`` means the item is the receiver's
  responsibility now (stored in a mailbox, queued for the next hop, applied, or a duplicate
  of one it already took); any other outcome is a refusal code and the item was not taken:
  a REFUSALS code for good, a RETRY_LATER code for now (the pusher keeps the item and pushes
  it again later).
- ``FetchDevices`` / ``FetchBundles`` / ``FetchKeyPackages`` / ``FetchNodeKey``
  (core/client_api.py) -> ``Devices`` / ``Bundles`` / ``KeyPackages`` / ``NodeKey``, or
  ``ErrorFrame`` with the request number. A relay passes a query for another node on to that
  node and its answer back.
- ``FetchHead`` / ``FetchConsistency`` (core/client_api.py) -> ``Head`` / ``Consistency``:
  a node's key directory, asked of it directly or through relays like the lookups above.
- ``Cosign`` -> ``Noted``: a witness hands the node it witnesses a cosignature of that node's
  head (only after checking it is consistent with the last head it cosigned).
- ``Gossip`` -> ``Noted``: signed heads of any nodes the sender has seen (its own included),
  so that two views of one directory meet somewhere and a split is detected.
- ``EphemeralPush`` -> ``Noted``: typing and presence envelopes, never stored (a relay passes
  them on); over the peer's ephemeral allowance ``ErrorFrame`` ``rate_limited``.
- ``BlobGet`` (core/blob_api.py) -> ``BlobChunk``: a chunk of an attachment's ciphertext of the
  node named, asked directly or through relays like the lookups above (node/client_blobs.py).
- ``Ping`` -> ``Pong``.

An item names the node it comes from (``origin``) and the node it is for (``dest``), never
the sending account (sealed sender). Reports flow back to ``origin``: the node that pushed an
envelope to its destination tells the origin what became of it (only when it is not the
origin itself, i.e. when the envelope came through a relay).
"""

from __future__ import annotations

from . import limits
from .access import ACCESS_TOKEN_LEN
from .address import parse_address, validate_node_name
from . import blob_api, client_api
from .client_api import SignedHead
from .envelope import Envelope, Kind
from .groups.items import GroupItem
from .errors import ProtocolError
from .wire import Frame, FrameSet, Struct, frame, frames_declared_in, struct

__all__ = ["Report", "Transit", "Push", "EphemeralPush", "PushResult", "Cosign", "SeenHead", "Gossip", "Noted", "OK", "REFUSALS", "RETRY_LATER", "FEDERATION_FRAMES"]

#: the outcome of an item that the receiver took
OK = "ok"

#: outcomes of group items refused for now: the pusher keeps the item in its outbox and pushes
#: it again later (node/store/sqlite_groups.py, federation/outbox.py); nothing else waits for it
RETRY_LATER = {
    "group_full": "a member device has no room for more group items now (its allowance)",
    "hub_pending": "this node takes the group's items from another hub (a hand-over may be on its way)",
    "rate_limited": "the hub takes this node's group submissions at a bounded rate (the rest later)",
}

#: outcomes of refused items, with what the origin's user is told
REFUSALS = {
    "unknown_account": "the recipient's node has no such account",
    "unknown_device": "the recipient's node has no such device (it was removed)",
    "mailbox_full": "the recipient's mailbox is full",
    "message_request_limit": "the recipient has not answered this sender yet and its message requests are used up",
    "expired": "the message expired before it could be delivered",
    "not_relaying": "a relay on the way refused to forward for this node",
    "unroutable": "no route to the recipient's node",
    "hop_limit": "the message passed through too many relays",
    "invalid": "the recipient's node refused the message as malformed",
}


@struct
class Report(Struct):
    """What the recipient's node did with one envelope, on its way back to the origin."""

    id: bytes
    account: str
    device: int
    #: OK or a code from REFUSALS
    outcome: str
    at: int

    def check(self) -> None:
        if len(self.id) != limits.ENVELOPE_ID_LEN:
            raise ValueError("report id must be 16 bytes")
        if self.outcome != OK and self.outcome not in REFUSALS:
            raise ValueError(f"unknown report outcome {self.outcome!r}")
        if not 0 < self.device < 2**31:
            raise ValueError("device id out of range")
        if not 0 <= self.at < 2**63:  # it is stored as a signed 64-bit integer
            raise ValueError("report time out of range")


@struct
class Transit(Struct):
    """One outbox item between nodes: exactly one of ``envelope``, ``report`` and ``group``."""

    origin: str
    dest: str
    #: relays an item may still pass through; each relay decrements it, 0 stops forwarding
    hops: int
    envelope: Envelope | None
    report: Report | None
    #: the recipient account's access token the sender presented (core/access.py), checked
    #: by the destination only; empty: the envelope is a message request
    access: bytes = b""
    #: a group item (core/groups/items.py): a submission for the hub, an ordered message for a
    #: participating node, a verdict for the submitter's node, or a hand-over
    group: GroupItem | None = None

    def check(self) -> None:
        if (self.envelope is not None) + (self.report is not None) + (self.group is not None) != 1:
            raise ValueError("a transit item carries exactly one of envelope, report and group")
        if len(self.access) not in (0, ACCESS_TOKEN_LEN) or (self.access and self.envelope is None):
            raise ValueError(f"an access token is {ACCESS_TOKEN_LEN} bytes, and only with an envelope")
        if not 0 <= self.hops <= limits.MAX_HOPS:
            raise ValueError("hop count out of range")
        try:
            validate_node_name(self.origin, remote=True)
            validate_node_name(self.dest, remote=True)
            if self.envelope is not None and parse_address(self.envelope.to, remote=True).node != self.dest:
                raise ValueError("envelope address is not on the item's destination node")
        except ProtocolError as exc:
            raise ValueError(str(exc)) from None
        if self.envelope is not None and self.envelope.kind != Kind.SEALED:
            raise ValueError("only stored (sealed) envelopes travel between nodes")


@frame(tag=60)
class Push(Frame):
    request: int
    items: tuple[Transit, ...]
    #: the push's place on its link (1, 2, ... in the order sent): the receiver applies
    #: sequenced pushes one at a time in this order; 0: not sequenced (applied as it comes)
    seq: int = 0

    def check(self) -> None:
        if not 0 < len(self.items) <= limits.MAX_TRANSIT_PER_PUSH:
            raise ValueError(f"a push holds 1..{limits.MAX_TRANSIT_PER_PUSH} items")
        if not 0 <= self.seq < 2**63:
            raise ValueError("push sequence number out of range")


@frame(tag=65)
class EphemeralPush(Frame):
    """Ephemeral envelopes (typing, presence) from ``origin`` for accounts of ``dest``: handed
    to the recipients' devices connected now (or passed on by a relay), never stored, nothing
    reported back; answered ``Noted`` at once (federation/ephemeral.py)."""

    request: int
    origin: str
    dest: str
    #: relays it may still pass through, as a Transit's
    hops: int
    envelopes: tuple[Envelope, ...]

    def check(self) -> None:
        if not 0 < len(self.envelopes) <= limits.MAX_EPHEMERAL_PER_PUSH:
            raise ValueError(f"an ephemeral push holds 1..{limits.MAX_EPHEMERAL_PER_PUSH} envelopes")
        if not 0 <= self.hops <= limits.MAX_HOPS:
            raise ValueError("hop count out of range")
        try:
            validate_node_name(self.origin, remote=True)
            validate_node_name(self.dest, remote=True)
            for env in self.envelopes:
                if env.kind != Kind.EPHEMERAL:
                    raise ValueError("an ephemeral push carries ephemeral envelopes only")
                if parse_address(env.to, remote=True).node != self.dest:
                    raise ValueError("envelope address is not on the push's destination node")
        except ProtocolError as exc:
            raise ValueError(str(exc)) from None


@frame(tag=61)
class PushResult(Frame):
    request: int
    #: one per pushed item, in order: OK or a refusal code
    outcomes: tuple[str, ...]


@frame(tag=62)
class Cosign(Frame):
    """A cosignature (core/keydir/head.py) by the sending node of the receiving node's head."""

    request: int
    cosignature: bytes

    def check(self) -> None:
        if len(self.cosignature) > limits.MAX_COSIGNATURE_BYTES:
            raise ValueError("cosignature too large")


@struct
class SeenHead(Struct):
    node: str
    head: SignedHead


@frame(tag=63)
class Gossip(Frame):
    request: int
    heads: tuple[SeenHead, ...]

    def check(self) -> None:
        if len(self.heads) > limits.MAX_GOSSIP_HEADS:
            raise ValueError(f"at most {limits.MAX_GOSSIP_HEADS} heads in one gossip")


@frame(tag=64)
class Noted(Frame):
    request: int


#: what travels on ``/federation`` (both ways): the frames above and the lookups, answers,
#: errors and pings of core/client_api.py listed in this module's docstring
FEDERATION_FRAMES = FrameSet(
    "/federation",
    (
        *frames_declared_in(__name__),
        *(client_api.FetchDevices, client_api.Devices, client_api.FetchBundles, client_api.Bundles),
        *(client_api.FetchNodeKey, client_api.NodeKey, client_api.FetchHead, client_api.Head),
        *(client_api.FetchConsistency, client_api.Consistency),
        *(client_api.FetchKeyPackages, client_api.KeyPackages),
        *(client_api.FetchGroupTree, client_api.GroupTree),
        *(blob_api.BlobGet, blob_api.BlobChunk),
        *(client_api.ErrorFrame, client_api.Ping, client_api.Pong),
    ),
)
