"""Key transparency on the device: no key from a directory is used before its proof checks out.

Every Devices / Bundles answer carries a DirectoryProof: one leaf, its RFC 9162 inclusion
proof and the node's signed head with its witnesses' cosignatures. ``check_lookup`` verifies
the head signature (with the node key this device pinned) and the inclusion (core/keydir),
that the leaf is not older than one of that account already accepted (``stale_entry``), then
that the head is consistent with the last head this device accepted from that node (same size:
same root; else a consistency proof asked through the home node — an older head is fine when
consistent), then that enough witnesses cosigned it. Only then are the head and the leaf index
kept. Only signed evidence makes a split view (two signed roots for one size, or a received
consistency proof that does not verify): it is refused (``split_view``) and the user alerted.
A proof the node could not fetch is a NodeError like any "not now"; too few cosignatures is
``unwitnessed``, which right after a change only means the witnesses have not caught up yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import trio

from sonet.core.address import parse_address
from sonet.core.client_api import (
    Bundles,
    Consistency,
    Devices,
    DirectoryProof,
    FetchConsistency,
    FetchDevices,
    FetchNodeKey,
    NodeKey,
)
from sonet.core.crypto import CryptoPolicy, VerifyKey
from sonet.core.device import verify_device_record
from sonet.core.device_list import verify_device_list
from sonet.core.errors import ProtocolError, RemoteProtocolError, VerifyError
from sonet.core.keydir import ProvenEntry, TreeHead, decode_cosignature, decode_head, verify_consistency, verify_cosignature
from sonet.core.keydir import verify_directory_proof, witnesses

from .connection import TRANSIENT_LOOKUP_CODES, Connection, NodeError
from .state import ALERT, DeviceState

__all__ = [
    "CosignatureView",
    "Checked",
    "node_key",
    "required_quorum",
    "check_lookup",
    "check_answer",
    "fetch_devices",
    "check_bundles",
    "UNWITNESSED_TRIES",
    "UNWITNESSED_DELAY_S",
]

#: a lookup that is "unwitnessed" is asked again this many times in all, this far apart: the
#: witnesses cosign a new head within moments of hearing of it
UNWITNESSED_TRIES = 10
UNWITNESSED_DELAY_S = 0.5

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class CosignatureView:
    witness: str
    at: int
    raw: bytes
    #: it verifies with the witness's node key (as the home node knows it) for this head
    verified: bool


@dataclass(frozen=True, kw_only=True)
class Checked:
    proof: DirectoryProof
    proven: ProvenEntry
    #: the head of that node this device had accepted before, or None
    previous: TreeHead | None
    cosignatures: tuple[CosignatureView, ...]
    witnesses: tuple[str, ...]


async def node_key(conn: Connection, state: DeviceState, node: str, *, now: int) -> VerifyKey:
    """The identity key of ``node``: the home node's from the channel, another node's from the
    home node (which checks it against its pin), asked once per connection and pinned in the
    state on first use: the home node cannot later hand out another key for a node (a witness
    of its own making), that is ``node_key_changed`` and an alert. A failed lookup is a
    NodeError (code ``bad_node_key`` when the answer itself was wrong); only definite ones are
    remembered for the connection, a "not now" is asked again."""
    if node == conn.welcome.node:
        return conn.node_key
    cache = conn.node_keys
    if node not in cache:
        try:
            reply = await conn.request(lambda n: FetchNodeKey(request=n, node=node))
            if not isinstance(reply, NodeKey) or reply.node != node:
                raise RemoteProtocolError(f"the home node answered with another node's key than {node}'s")
            key = VerifyKey.from_bytes(reply.key)
        except NodeError as exc:
            if exc.code in TRANSIENT_LOOKUP_CODES:
                raise
            cache[node] = exc
        except RemoteProtocolError as exc:
            cache[node] = NodeError("bad_node_key", f"cannot check what {node} signed: {exc}")
        else:
            pinned = state.pin_node_key(node, key.to_bytes(), now)
            if pinned != key.to_bytes():
                state.add_alert(ALERT, f"the home node gave another identity key for {node} than the one this device pinned: refusing it", now)
                raise VerifyError(
                    f"the identity key of {node} changed (this device pinned another one); refusing what it signs until you "
                    f"check its new fingerprint with its operator and run `sonet trust-node {node}`",
                    code="node_key_changed",
                )
            cache[node] = key
    found = cache[node]
    if isinstance(found, NodeError):
        raise NodeError(found.code, str(found))
    return found


def required_quorum(state: DeviceState, node: str, *, home: str, home_witnesses: int) -> int:
    """Witness cosignatures a head of ``node`` needs: the user's setting, else 1 for another
    node (at least the home node, through which we reach it, witnesses it) and for the home
    node when it has witnesses (``home_witnesses``: its peers, as its Welcome says) or one of
    its heads ever came cosigned, else 0."""
    setting = state.witness_quorum()
    if setting is not None:
        return setting
    return 1 if node != home or home_witnesses > 0 or state.ever_cosigned(home) else 0


def _split(state: DeviceState, node: str, why: str, now: int) -> VerifyError:
    state.add_alert(ALERT, f"{node} showed a split view of its key directory: {why}", now)
    return VerifyError(f"{node} is showing a split view of its key directory ({why}); refusing its keys", code="split_view")


async def _check_consistent(conn: Connection, state: DeviceState, old: TreeHead, new: TreeHead, now: int) -> None:
    node = new.node
    if old.size == new.size:
        if old.root != new.root:
            raise _split(state, node, f"two different roots for size {new.size}", now)
        return
    first, second = (old, new) if old.size < new.size else (new, old)
    # a NodeError (the node could not get the proof) is no evidence of a split: it passes as it is
    reply = await conn.request(lambda n: FetchConsistency(request=n, node=node, first=first.size, second=second.size))
    if not isinstance(reply, Consistency) or (reply.node, reply.first, reply.second) != (node, first.size, second.size):
        raise RemoteProtocolError("the home node answered another consistency question")
    try:
        verify_consistency(first=first.size, second=second.size, first_root=first.root, second_root=second.root, proof=list(reply.proof))
    except VerifyError:
        if node == conn.welcome.node:  # the proof came from the node itself, over the channel
            raise _split(state, node, f"its tree of size {second.size} does not extend the one of size {first.size}", now) from None
        # Proofs are not signed, and this one came from another node through the home node and
        # maybe relays: a refusal, but not evidence against that node.
        raise VerifyError(
            f"the consistency proof of {node}'s key directory ({first.size} -> {second.size}) does not verify; refusing its keys for now",
            code="bad_consistency_proof",
        ) from None


async def _cosignatures(
    conn: Connection, state: DeviceState, raws: tuple[bytes, ...], head: TreeHead, now: int
) -> tuple[list[CosignatureView], dict[str, VerifyKey]]:
    """Each cosignature as claimed, checked with its witness's key where the home node knows
    it; unknown, unreachable or malformed ones simply do not count."""
    views: list[CosignatureView] = []
    keys: dict[str, VerifyKey] = {}
    for raw in raws:
        try:
            claimed = decode_cosignature(raw)
        except ProtocolError:
            continue
        verified = False
        if claimed.witness != head.node:
            try:
                keys[claimed.witness] = await node_key(conn, state, claimed.witness, now=now)
                verify_cosignature(raw, witness_key=keys[claimed.witness], head=head)
                verified = True
            except (NodeError, ProtocolError):
                pass
        views.append(CosignatureView(witness=claimed.witness, at=claimed.at, raw=raw, verified=verified))
    return views, keys


async def check_lookup(conn: Connection, state: DeviceState, *, node: str, account: str, proof: DirectoryProof, now: int) -> Checked:
    """Verify ``proof`` of ``account``'s leaf in ``node``'s directory as described above; the
    head is kept (if larger than the one held) only when everything checks out."""
    proven = verify_directory_proof(proof, node=node, node_key=await node_key(conn, state, node, now=now), account=account)
    head = proven.head
    newest = state.newest_entry(account)
    if newest is not None and proven.index < newest:
        raise VerifyError(
            f"the key directory of {node} shows an older entry of {account} (leaf {proven.index}) than one already seen (leaf {newest})",
            code="stale_entry",
        )
    stored = state.accepted_head(node)
    previous = decode_head(stored) if stored is not None else None  # verified when it was accepted
    if previous is not None:
        await _check_consistent(conn, state, previous, head, now)
    views, keys = await _cosignatures(conn, state, proof.head.cosignatures, head, now)
    named = witnesses(proof.head.cosignatures, head=head, keys=keys)
    need = required_quorum(state, node, home=conn.welcome.node, home_witnesses=conn.welcome.witnesses)
    if len(named) < need:
        have = "no cosignature from a witness yet" if not named else f"only {len(named)} witness cosignatures"
        if node == conn.welcome.node and state.witness_quorum() is not None and need > conn.welcome.witnesses:
            raise VerifyError(  # waiting cannot help: the home node has fewer witnesses than that
                f"the key directory head of {node} has {have}, and your witness quorum ({need}) is more than its "
                f"{conn.welcome.witnesses} witnesses: lower it with `sonet witness-quorum N` (or `auto`)",
                code="unwitnessed",
            )
        raise VerifyError(f"the key directory head of {node} has {have} (need {need}); try again in a moment", code="unwitnessed")
    keep = head if previous is None or head.size > previous.size else previous
    with state.transaction():
        state.accept_head(node, keep.raw, cosigned=bool(named))
        state.accept_entry(account, proven.index)
    return Checked(proof=proof, proven=proven, previous=previous, cosignatures=tuple(views), witnesses=tuple(named))


async def check_answer(conn: Connection, state: DeviceState, answer: Devices | Bundles, *, account: str, now: int) -> Checked:
    """``check_lookup`` for a Devices or Bundles answer about ``account``, whose identity key
    and device list must be exactly the proven leaf's."""
    if answer.account != account:
        raise RemoteProtocolError(f"the node answered about {answer.account}, not {account}")
    node = parse_address(account, remote=True).node
    checked = await check_lookup(conn, state, node=node, account=account, proof=answer.proof, now=now)
    entry = checked.proven.entry
    if answer.account_identity != entry.identity or answer.device_list != entry.device_list:
        raise VerifyError(f"the directory answer for {account} is not its proven directory entry", code="directory_mismatch")
    return checked


async def _until_witnessed(ask: Callable[[], Awaitable[T]], tries: int) -> T:
    """``ask()`` again, up to ``tries`` times in all, as long as it fails as "unwitnessed" (right
    after a change, until the witnesses have cosigned the new head)."""
    for attempt in range(tries):
        try:
            return await ask()
        except VerifyError as exc:
            if exc.code != "unwitnessed" or attempt == tries - 1:
                raise
        await trio.sleep(UNWITNESSED_DELAY_S)
    raise AssertionError("unreachable")


async def fetch_devices(
    conn: Connection, state: DeviceState, account: str, *, now: int, tries: int = UNWITNESSED_TRIES
) -> tuple[Devices, Checked]:
    """FetchDevices ``account``, its proof checked."""

    async def ask() -> tuple[Devices, Checked]:
        reply = await conn.request(lambda n: FetchDevices(request=n, account=account))
        if not isinstance(reply, Devices):
            raise RemoteProtocolError(f"the node answered a device lookup with {type(reply).__name__}")
        return reply, await check_answer(conn, state, reply, account=account, now=now)

    return await _until_witnessed(ask, tries)


async def check_bundles(
    conn: Connection, state: DeviceState, reply: Bundles, *, account: str, identity: VerifyKey, policy: CryptoPolicy, now: int
) -> None:
    """A Bundles answer is proven like a device lookup, for the identity key the sender uses,
    and every bundle's device record is in the proven device list."""
    entry = (await check_answer(conn, state, reply, account=account, now=now)).proven.entry
    if entry.identity != identity.to_bytes():
        raise VerifyError(f"the prekey bundles of {account} come with another identity key", code="directory_mismatch")
    listed = verify_device_list(entry.device_list, account_key=identity, account=account)
    for bundle in reply.bundles:
        if verify_device_record(bundle.record, policy=policy, account=account).fingerprint not in listed:
            raise VerifyError(f"a prekey bundle of {account} is for a device its list does not name", code="unlisted_device")
