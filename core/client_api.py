"""Frames of the device <-> home node protocol on ``/client`` (inside the secure channel).

Requests carry a client-chosen ``request`` number that the answer repeats. The node speaks
first with ``Welcome``. Deliveries are pushed; the device acknowledges them by id once it has
stored them, and only then does the node delete them.
"""

from __future__ import annotations

from . import blob_api, limits
from .access import ACCESS_TOKEN_LEN
from .envelope import Envelope
from .wire import Frame, FrameSet, Struct, frame, frames_declared_in, struct

__all__ = [
    "Welcome",
    "AccessToken",
    "DeviceKeys",
    "Register",
    "Registered",
    "FetchDevices",
    "DeviceEntry",
    "Devices",
    "SendBatch",
    "Accepted",
    "Delivery",
    "Deliver",
    "Ack",
    "Drained",
    "ErrorFrame",
    "Ping",
    "Pong",
    "DeviceMismatch",
    "PublishPrekeys",
    "PrekeysPublished",
    "FetchBundles",
    "Bundle",
    "Bundles",
    "GetSenderCertificate",
    "SenderCertificate",
    "LinkBegin",
    "LinkSlot",
    "LinkFetch",
    "LinkPending",
    "LinkApprove",
    "LinkApproved",
    "LinkOffer",
    "LinkComplete",
    "RemoveDevice",
    "DeviceRemoved",
    "FetchNodeKey",
    "NodeKey",
    "FetchStatus",
    "EnvelopeStatus",
    "Statuses",
    "DirectoryProof",
    "SignedHead",
    "FetchConsistency",
    "Consistency",
    "FetchHead",
    "Head",
    "FetchLeaves",
    "Leaves",
    "PublishKeyPackages",
    "KeyPackagesPublished",
    "FetchKeyPackages",
    "KeyPackageEntry",
    "KeyPackages",
    "CreateGroup",
    "GroupCreated",
    "GroupSubmit",
    "GroupQueued",
    "FetchGroupTree",
    "GroupTree",
    "CLIENT_FRAMES",
]


@frame(tag=10)
class Welcome(Frame):
    node: str
    #: the authenticated device's account and id, or None for a device not yet registered
    account: str | None
    device: int | None
    time: int
    #: one-time prekeys the node still holds for this device (X25519, ML-KEM); 0 if unregistered
    one_time_left: int
    pq_one_time_left: int
    #: configured peers of this node: they witness its key directory, so with any its devices
    #: require a cosigned head (key transparency)
    witnesses: int
    #: the node's ``minimum_crypto_mode``: devices start no session below it (client/crypto_modes.py)
    minimum_crypto_mode: str


@struct
class DeviceKeys(Struct):
    """A new device's first prekeys (core/ratchet/prekeys.py encodings), carried by
    ``Register`` and ``LinkComplete`` so that the node commits the device together with them:
    a device nobody can start a session with never exists. The signed prekey (classical and
    hybrid modes) and the ML-KEM last-resort prekey (hybrid and pq) are required; the one-time
    keys are the first batch (``PublishPrekeys`` tops them up later)."""

    signed_prekey: bytes | None
    pq_last_resort: bytes | None
    one_time: tuple[bytes, ...]
    pq_one_time: tuple[bytes, ...]

    def check(self) -> None:
        cap = limits.MAX_ONE_TIME_PREKEYS
        if len(self.one_time) > cap or len(self.pq_one_time) > cap:
            raise ValueError(f"at most {cap} one-time prekeys of each kind")


@frame(tag=11)
class Register(Frame):
    """Create ``user@node`` with this device. ``account_identity`` is the account's public
    identity key (VerifyKey bytes); ``device_list`` its signed list (version 1) holding exactly
    this device's fingerprint (core/device_list.py); ``keys`` its first prekeys, committed with
    it. Idempotent for this device: sent again after a lost answer (same device key, account
    and invite), it is answered with the same ``Registered``."""

    request: int
    user: str
    invite: str
    record: bytes
    account_identity: bytes
    device_list: bytes
    keys: DeviceKeys


@frame(tag=12)
class Registered(Frame):
    request: int
    account: str
    device: int


@struct
class SignedHead(Struct):
    """A node's signed tree head (core/keydir/head.py) with the cosignatures of its witnesses
    (each over the head's node, size and root)."""

    head: bytes
    cosignatures: tuple[bytes, ...]

    def check(self) -> None:
        if len(self.head) > limits.MAX_TREE_HEAD_BYTES:
            raise ValueError("tree head too large")
        if len(self.cosignatures) > limits.MAX_COSIGNATURES or any(len(c) > limits.MAX_COSIGNATURE_BYTES for c in self.cosignatures):
            raise ValueError(f"at most {limits.MAX_COSIGNATURES} cosignatures of bounded size")


@struct
class DirectoryProof(Struct):
    """One leaf of a node's key directory, proven included in the tree of ``head``.

    ``path`` is the RFC 9162 inclusion proof (§2.1.3) of leaf number ``index`` (0-based) in the
    tree of the head's size."""

    leaf: bytes
    index: int
    path: tuple[bytes, ...]
    head: SignedHead

    def check(self) -> None:
        if len(self.leaf) > limits.MAX_DIRECTORY_LEAF_BYTES:
            raise ValueError("directory leaf too large")
        if not 0 <= self.index < 2**63:
            raise ValueError("leaf index out of range")
        if len(self.path) > limits.MAX_PROOF_HASHES or any(len(h) != 32 for h in self.path):
            raise ValueError(f"an inclusion proof is at most {limits.MAX_PROOF_HASHES} hashes of 32 bytes")


@frame(tag=13)
class FetchDevices(Frame):
    request: int
    account: str


@struct
class DeviceEntry(Struct):
    device: int
    record: bytes


@frame(tag=14)
class Devices(Frame):
    request: int
    account: str
    account_identity: bytes
    device_list: bytes
    devices: tuple[DeviceEntry, ...]
    #: the account's latest directory entry (whose identity and device list are the two fields
    #: above), its inclusion proof and the signed head it is proven against
    proof: DirectoryProof


@struct
class AccessToken(Struct):
    """The access token (core/access.py) of recipient ``account`` in a ``SendBatch``."""

    account: str
    token: bytes

    def check(self) -> None:
        if len(self.token) != ACCESS_TOKEN_LEN:
            raise ValueError(f"an access token is {ACCESS_TOKEN_LEN} bytes")


@frame(tag=15)
class SendBatch(Frame):
    """``access``: the recipient accounts' access tokens the sender knows (core/access.py), at
    most one per account; envelopes to an account without a valid one are message requests."""

    request: int
    envelopes: tuple[Envelope, ...]
    access: tuple[AccessToken, ...] = ()

    def check(self) -> None:
        if not 0 < len(self.envelopes) <= limits.MAX_ENVELOPES_PER_FRAME:
            raise ValueError(f"a batch holds 1..{limits.MAX_ENVELOPES_PER_FRAME} envelopes")
        if len(self.access) > len(self.envelopes) or len({a.account for a in self.access}) != len(self.access):
            raise ValueError("a batch holds at most one access token per recipient account")


@frame(tag=16)
class Accepted(Frame):
    """The batch is durably stored (or was already): safe to forget on the device."""

    request: int
    stored: int


@struct
class Delivery(Struct):
    envelope: Envelope
    #: when the home node durably accepted it (ms)
    stored_at: int


@frame(tag=17)
class Deliver(Frame):
    items: tuple[Delivery, ...]


@frame(tag=18)
class Ack(Frame):
    ids: tuple[bytes, ...]

    def check(self) -> None:
        if len(self.ids) > limits.MAX_ARRAY_LEN or any(len(i) != limits.ENVELOPE_ID_LEN for i in self.ids):
            raise ValueError("ack ids must be 16 bytes each")


@frame(tag=19)
class Drained(Frame):
    """Everything queued when the device connected has been pushed; live pushes follow."""


@frame(tag=20)
class ErrorFrame(Frame):
    #: the request it answers, or 0 for a connection-level error (the node then closes)
    request: int
    code: str
    message: str


@frame(tag=21)
class Ping(Frame):
    request: int


@frame(tag=22)
class Pong(Frame):
    request: int


# Multi-device and sessions (E2EE issue) --------------------------------------------------


@frame(tag=23)
class DeviceMismatch(Frame):
    """Answer to a SendBatch whose envelopes for ``account`` do not cover exactly its current
    devices (the sender's own device excluded). Nothing of the batch was stored; refetch and
    resend."""

    request: int
    account: str
    missing: tuple[int, ...]
    extra: tuple[int, ...]


@frame(tag=30)
class PublishPrekeys(Frame):
    """Upload signed prekeys (core/ratchet/prekeys.py encodings). ``signed_prekey`` and
    ``pq_last_resort`` replace the current ones when present; one-time keys are added. All
    empty: just report the counts."""

    request: int
    signed_prekey: bytes | None
    pq_last_resort: bytes | None
    one_time: tuple[bytes, ...]
    pq_one_time: tuple[bytes, ...]


@frame(tag=31)
class PrekeysPublished(Frame):
    request: int
    one_time_left: int
    pq_one_time_left: int


@frame(tag=32)
class FetchBundles(Frame):
    """Prekey bundles for ``account``'s ``devices`` (empty: all devices). Each one-time prekey
    is handed out once; the ML-KEM prekey falls back to the last-resort key when none is left.
    ``one_time`` False: bundles without one-time prekeys (a node asking for a device over its
    one-time allowance; node/client_limits.py)."""

    request: int
    account: str
    devices: tuple[int, ...]
    one_time: bool = True


@struct
class Bundle(Struct):
    device: int
    record: bytes
    signed_prekey: bytes | None
    pq_prekey: bytes | None
    one_time: bytes | None


@frame(tag=33)
class Bundles(Frame):
    request: int
    account: str
    account_identity: bytes
    device_list: bytes
    bundles: tuple[Bundle, ...]
    proof: DirectoryProof


@frame(tag=34)
class GetSenderCertificate(Frame):
    request: int


@frame(tag=35)
class SenderCertificate(Frame):
    """``access``: the device's account's access token (core/access.py), which the device
    hands to the people its user writes to, inside the sealed box."""

    request: int
    certificate: bytes
    access: bytes = b""

    def check(self) -> None:
        if len(self.access) not in (0, ACCESS_TOKEN_LEN):
            raise ValueError(f"an access token is {ACCESS_TOKEN_LEN} bytes")


@frame(tag=36)
class LinkBegin(Frame):
    """From a not-yet-registered device: open a provisioning slot for this ephemeral HPKE key."""

    request: int
    ephemeral: bytes


@frame(tag=37)
class LinkSlot(Frame):
    request: int
    slot: bytes
    expires: int


@frame(tag=38)
class LinkFetch(Frame):
    """From a registered device: the ephemeral key waiting in ``slot``."""

    request: int
    slot: bytes


@frame(tag=39)
class LinkPending(Frame):
    request: int
    ephemeral: bytes


@frame(tag=40)
class LinkApprove(Frame):
    """From a registered device: hand the sealed provisioning payload to the slot's device."""

    request: int
    slot: bytes
    provisioning: bytes


@frame(tag=41)
class LinkApproved(Frame):
    request: int


@frame(tag=42)
class LinkOffer(Frame):
    """Pushed to the waiting new device: the payload and the account's current device list."""

    slot: bytes
    account: str
    provisioning: bytes
    device_list: bytes


@frame(tag=43)
class LinkComplete(Frame):
    """From the new device: its record and the account's next device list (version + 1, now
    including it), signed with the account key it received, and its first prekeys (committed
    with it). Answered with Registered; sent again by the same device after a lost answer, once
    the device is committed, it is answered with the same Registered."""

    request: int
    slot: bytes
    record: bytes
    device_list: bytes
    keys: DeviceKeys


@frame(tag=44)
class RemoveDevice(Frame):
    """From a registered device: remove ``device`` with the next signed device list."""

    request: int
    device: int
    device_list: bytes


@frame(tag=45)
class DeviceRemoved(Frame):
    request: int
    device: int


# Federation (issue 4) ---------------------------------------------------------------------


@frame(tag=46)
class FetchNodeKey(Frame):
    """The identity key of node ``node`` (to verify its sender certificates). Asked by a device
    of its home node, and by a node of the next hop towards ``node``; the home node checks the
    answer against its pin of that node before passing it on."""

    request: int
    node: str


@frame(tag=47)
class NodeKey(Frame):
    request: int
    node: str
    key: bytes  # VerifyKey bytes


@frame(tag=48)
class FetchStatus(Frame):
    """From a registered device: where the envelopes it sent with these ids are now."""

    request: int
    ids: tuple[bytes, ...]

    def check(self) -> None:
        if len(self.ids) > limits.MAX_STATUS_IDS or any(len(i) != limits.ENVELOPE_ID_LEN for i in self.ids):
            raise ValueError(f"at most {limits.MAX_STATUS_IDS} ids of 16 bytes each")


@struct
class EnvelopeStatus(Struct):
    """One envelope the device sent to an account of another node (one per recipient device:
    ``device`` of the account on node ``node``; the home node does not keep the account).

    ``state``: "queued" (durably held by this node or a relay, not yet accepted by the
    recipient's node; ``code``/``message`` then say why the last attempt failed, if it did),
    "accepted" (durably stored by the recipient's node) or "failed" (given up; ``code`` says
    why: unknown_account, unknown_device, mailbox_full, not_relaying, unroutable, expired)."""

    id: bytes
    node: str
    device: int
    state: str
    code: str
    message: str
    at: int


@frame(tag=49)
class Statuses(Frame):
    request: int
    items: tuple[EnvelopeStatus, ...]


# Key directory (issue 5) -------------------------------------------------------------------


@frame(tag=50)
class FetchConsistency(Frame):
    """The RFC 9162 consistency proof (§2.1.4) between the trees of sizes ``first`` and
    ``second`` (0 < first <= second) of node ``node``'s directory. Local for the home node,
    relayed to other nodes like FetchNodeKey; peers ask it of each other when witnessing."""

    request: int
    node: str
    first: int
    second: int

    def check(self) -> None:
        if not 0 < self.first <= self.second < 2**63:
            raise ValueError("consistency proof sizes must satisfy 0 < first <= second")


@frame(tag=51)
class Consistency(Frame):
    request: int
    node: str
    first: int
    second: int
    proof: tuple[bytes, ...]

    def check(self) -> None:
        if len(self.proof) > limits.MAX_PROOF_HASHES or any(len(h) != 32 for h in self.proof):
            raise ValueError(f"a consistency proof is at most {limits.MAX_PROOF_HASHES} hashes of 32 bytes")


@frame(tag=52)
class FetchHead(Frame):
    """Node ``node``'s latest signed tree head with the cosignatures it holds."""

    request: int
    node: str


@frame(tag=53)
class Head(Frame):
    request: int
    node: str
    head: SignedHead


@frame(tag=54)
class FetchLeaves(Frame):
    """Self-monitoring: leaves ``start`` .. ``end - 1`` of the home node's directory (at most
    limits.MAX_LEAVES_PER_FETCH, and ``end`` at most the size of its newest head)."""

    request: int
    start: int
    end: int

    def check(self) -> None:
        if not 0 <= self.start < self.end < 2**63 or self.end - self.start > limits.MAX_LEAVES_PER_FETCH:
            raise ValueError(f"a leaf range is 1..{limits.MAX_LEAVES_PER_FETCH} leaves")


@frame(tag=55)
class Leaves(Frame):
    """``leaves`` from ``start`` on, with the compact range of the tree of size ``start`` (the
    roots of its perfect subtrees, largest first): folded it gives that tree's root, and the
    leaves appended to it give the root of every larger tree — a device checks them against
    heads it verified, without downloading the log before ``start``."""

    request: int
    start: int
    frontier: tuple[bytes, ...]
    leaves: tuple[bytes, ...]

    def check(self) -> None:
        if len(self.frontier) > 64 or any(len(h) != 32 for h in self.frontier):
            raise ValueError("a compact range is at most 64 hashes of 32 bytes")
        if len(self.leaves) > limits.MAX_LEAVES_PER_FETCH or any(len(x) > limits.MAX_DIRECTORY_LEAF_BYTES for x in self.leaves):
            raise ValueError(f"at most {limits.MAX_LEAVES_PER_FETCH} leaves of bounded size")


# Groups (issue 16, docs/groups.md) ----------------------------------------------------------


@frame(tag=70)
class PublishKeyPackages(Frame):
    """MLS KeyPackages of this device for others to add it to groups: one-time ones (each
    handed out once) and optionally a new last-resort one (handed out when none is left).
    Each is an MLSMessage holding a KeyPackage of suite 0x004D whose credential names this
    account and device (core/groups/credential.py)."""

    request: int
    key_packages: tuple[bytes, ...]
    last_resort: bytes | None


@frame(tag=71)
class KeyPackagesPublished(Frame):
    request: int
    #: one-time KeyPackages the node now holds for this device
    left: int


@frame(tag=72)
class FetchKeyPackages(Frame):
    """One KeyPackage per device of ``account`` (a one-time one, else the last-resort one);
    for another node's account the home node asks that node, like FetchBundles. ``one_time``
    False: last-resort ones only (a node asking over its one-time allowance, as FetchBundles)."""

    request: int
    account: str
    one_time: bool = True


@struct
class KeyPackageEntry(Struct):
    device: int
    #: an MLSMessage holding the device's KeyPackage
    key_package: bytes


@frame(tag=73)
class KeyPackages(Frame):
    request: int
    account: str
    account_identity: bytes
    device_list: bytes
    #: every device of the account that has a KeyPackage, ordered by device id
    items: tuple[KeyPackageEntry, ...]
    proof: DirectoryProof


@frame(tag=74)
class CreateGroup(Frame):
    """A new group of epoch 0 whose only member is this device; the home node becomes its
    hub. ``group_info``: the MLSMessage of its signed GroupInfo; ``ratchet_tree``: the tree."""

    request: int
    group: bytes
    group_info: bytes
    ratchet_tree: bytes


@frame(tag=75)
class GroupCreated(Frame):
    request: int
    group: bytes


@frame(tag=76)
class GroupSubmit(Frame):
    """One group message of this device for the group's hub: an MLSMessage (a commit or a
    proposal as PublicMessage, an application message as PrivateMessage) and, with a commit
    that adds members, its Welcome. ``ref``: 16 random bytes naming this submission; the
    ORDERED copy (or a VERDICT refusing it) comes back to the device's mailbox with it."""

    request: int
    ref: bytes
    group: bytes
    hub: str
    message: bytes
    welcome: bytes


@frame(tag=77)
class GroupQueued(Frame):
    """The submission is durably queued towards the hub (or ordered, when this node is it)."""

    request: int
    ref: bytes


@frame(tag=78)
class FetchGroupTree(Frame):
    """The public ratchet tree of ``group`` at ``epoch``, which a device added by a commit
    needs to join by its Welcome (Welcomes go without the tree: core/groups/trees.py), from
    ``offset`` on. Asked of the home node, which answers when it is ``hub`` and asks ``hub``
    over the federation otherwise. The device checks the tree against the Welcome's GroupInfo."""

    request: int
    group: bytes
    hub: str
    epoch: int
    offset: int

    def check(self) -> None:
        if len(self.group) != 16:
            raise ValueError("a group id is 16 bytes")
        if not 0 <= self.epoch < 2**63 or not 0 <= self.offset <= limits.MAX_GROUP_TREE_BYTES:
            raise ValueError("epoch or offset out of range")


@frame(tag=79)
class GroupTree(Frame):
    """``chunk``: the tree's bytes from ``offset`` on (at most GROUP_TREE_CHUNK_BYTES; the last
    chunk ends at ``total``, the tree's whole size)."""

    request: int
    group: bytes
    epoch: int
    offset: int
    total: int
    chunk: bytes

    def check(self) -> None:
        if len(self.group) != 16 or not 0 <= self.epoch < 2**63:
            raise ValueError("a group id is 16 bytes, an epoch below 2**63")
        if not 0 < self.total <= limits.MAX_GROUP_TREE_BYTES or len(self.chunk) > limits.GROUP_TREE_CHUNK_BYTES:
            raise ValueError("group tree or chunk too large")
        if not self.chunk or not 0 <= self.offset < self.total or self.offset + len(self.chunk) > self.total:
            raise ValueError("a group tree chunk lies within the tree and is not empty")


#: what travels on ``/client`` (both ways): every frame declared above
#: (and the blob store's frames, core/blob_api.py)
CLIENT_FRAMES = FrameSet("/client", [*frames_declared_in(__name__), *frames_declared_in(blob_api.__name__)])
