"""Self-monitoring: on every connection a registered device audits its home node's key
directory, so a device or identity key that none of the user's devices added cannot stay
unnoticed, even one the node shows only to others.

The device keeps the size and root of the home node's log up to which it audited. Each
connection it looks up its own account (proven, consistent and witnessed: client/
transparency.py), then reads EVERY leaf from the audited size up to a target — the largest
head of its home node it accepted — page by page (FetchLeaves): the compact range the node
sends with the first page must fold to the audited root, and the leaves appended to it must
give the target's root, so the node cannot leave out, add or change a leaf (``bad_leaves``, an
alert). The account's own leaves among them are compared, in order, with the last device list
the account key signed; other accounts' leaves are only hashed.

Findings are staged until the target's root is reached: then they are recorded and the target
becomes the audited point; on a mismatch they are dropped with the progress. A connection
reads at most MAX_AUDIT_LEAVES leaves; after each page the progress (compact range reached,
target, device list and findings so far) is kept, and the next connection goes on from there
(``audit_behind`` meanwhile, a warning). A head absurdly far ahead is reported, not audited.

The first audit starts where the device joined: at register and link completion it notes the
account's leaf and the device list it signed (``start_audit``); that leaf must be exactly this
list. Devices without such a start (registered before it existed) take their first check as
the baseline. Devices this device added or approved (``link approve``) are notices; anything
else — a device nobody here approved, an identity key that is not the account's, a list the
account key did not sign or that goes back — is an alert, kept in the state and told (sealed
like a text, content type "alert") to the account's other devices.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sonet.core import canonical, limits
from sonet.core.client_api import DeviceEntry, Devices, FetchDevices, FetchLeaves, Leaves
from sonet.core.crypto import CryptoPolicy, VerifyKey
from sonet.core.device import DeviceRecord, verify_device_record
from sonet.core.device_list import DeviceList, check_successor, verify_device_list
from sonet.core.errors import ProtocolError, RemoteProtocolError, VerifyError
from sonet.core.keydir import CompactRange, DirectoryEntry, TreeHead, decode_entry, decode_head, leaf_hash, verify_directory_proof

from .connection import Connection, NodeError
from .directory import AccountView
from .state import ALERT, NOTICE, DeviceState, Profile
from .transparency import fetch_devices

__all__ = [
    "APPROVED_DEVICE",
    "APPROVED_VERSION",
    "MAX_AUDIT_LEAVES",
    "MAX_AUDIT_GROWTH",
    "MAX_STAGED_FINDINGS",
    "Tell",
    "check_own_account",
    "own_device_list",
    "start_audit",
]

#: approvals (DeviceState.approve): a device fingerprint this device added (itself, at register
#: or link), and a device-list version that a link this device approved creates
APPROVED_DEVICE, APPROVED_VERSION = "device", "list_version"

#: leaves one connection audits at most, so that a node claiming a huge log cannot hold every
#: command; the next connection goes on where this one stopped
MAX_AUDIT_LEAVES = 4096
#: a target further than this beyond the audited size is an alert, not audited: no directory
#: grows that much between two commands of a device, and junk would be read for ever
MAX_AUDIT_GROWTH = 1_000_000
#: findings staged during one audit; more are only counted (a log of junk leaves cannot fill
#: the state)
MAX_STAGED_FINDINGS = 64

#: sends an alert's text to the devices of ``view`` (this account's other devices)
Tell = Callable[[Connection, AccountView, str], Awaitable[None]]

_AUDITED = "monitor/audited"  # canonical CBOR [size, root] of the home node's log audited
_TRUSTED = "monitor/device_list"  # the newest own device list the account key signed
_START = "monitor/start"  # [leaf index, device list]: where the first audit begins
_PROGRESS = "monitor/progress"  # an audit under way: _Progress.dump()


class _Findings:
    """Alerts and notices, staged: recorded only once the leaves they come from are proven."""

    def __init__(self, found: list[tuple[str, str]] | None = None, dropped: int = 0, dropped_alert: bool = False) -> None:
        self._found = found or []
        self._dropped = dropped
        self._dropped_alert = dropped_alert

    def alert(self, text: str) -> None:
        self._add(ALERT, text)

    def notice(self, text: str) -> None:
        self._add(NOTICE, text)

    def _add(self, kind: str, text: str) -> None:
        if len(self._found) < MAX_STAGED_FINDINGS:
            self._found.append((kind, text))
        else:
            self._dropped += 1
            self._dropped_alert |= kind == ALERT

    def record(self, state: DeviceState, home: str, now: int) -> list[str]:
        """Record them; the alerts not recorded before (to tell the other devices)."""
        found = list(self._found)
        if self._dropped:
            kind = ALERT if self._dropped_alert else NOTICE
            found.append((kind, f"{self._dropped} more findings in the key directory of {home} were not kept (the first {len(self._found)} were)"))
        return [text for kind, text in found if state.add_alert(kind, text, now) and kind == ALERT]

    def dump(self) -> list:
        return [[list(f) for f in self._found], self._dropped, self._dropped_alert]

    @classmethod
    def load(cls, data: list) -> _Findings:
        found, dropped, dropped_alert = data
        return cls([(kind, text) for kind, text in found], dropped, dropped_alert)


@dataclass(kw_only=True)
class _Progress:
    """An audit towards the head ``size``/``root``: the leaves before ``tree.size`` are read
    (``tree``: None before the first page)."""

    size: int
    root: bytes
    tree: CompactRange | None
    trusted: DeviceList | None
    findings: _Findings

    def dump(self) -> bytes:
        assert self.tree is not None  # kept after a page only
        trusted = self.trusted.raw if self.trusted is not None else None
        return canonical.dumps([self.size, self.root, self.tree.size, list(self.tree.hashes), trusted, self.findings.dump()])

    @classmethod
    def load(cls, raw: bytes, profile: Profile) -> _Progress:
        size, root, reached, hashes, trusted, findings = canonical.loads(raw)
        return cls(
            size=size, root=root, tree=CompactRange(reached, hashes), trusted=_trusted(trusted, profile), findings=_Findings.load(findings)
        )


async def start_audit(conn: Connection, state: DeviceState, profile: Profile, device_list: bytes) -> None:
    """Right after the node accepted this device (register, link completion): note where its
    first audit begins, the account's newest leaf, which must hold ``device_list`` (the list
    this device signed) and the account key. Only the head's signature and the inclusion are
    checked here (no quorum yet): the audit ends at a head that passed every check."""
    me = profile.address
    reply = await conn.request(lambda n: FetchDevices(request=n, account=me))
    if not isinstance(reply, Devices):
        raise RemoteProtocolError(f"the node answered a device lookup with {type(reply).__name__}")
    proven = verify_directory_proof(reply.proof, node=conn.welcome.node, node_key=conn.node_key, account=me)
    with state.transaction():
        state.put(_START, canonical.dumps([proven.index, device_list]))
        state.accept_entry(me, proven.index)  # later lookups cannot show an older leaf: every target covers it


async def check_own_account(
    conn: Connection, state: DeviceState, profile: Profile, *, policy: CryptoPolicy, now: int, tell: Tell, tries: int
) -> None:
    """Audit the home node's directory for the own account (see the module docstring); raises
    like any lookup when a proof does not verify, ``bad_leaves`` when the leaves do not match
    the heads, ``directory_too_large`` for a head absurdly far ahead and NodeError
    ``audit_behind`` when this connection's budget ran out first. ``tries``: how often to ask
    while the newest head is not witnessed yet (fetch_devices)."""
    reply, checked = await fetch_devices(conn, state, profile.address, now=now, tries=tries)
    accepted = state.accepted_head(conn.welcome.node)
    assert accepted is not None  # fetch_devices has just accepted one
    upto = decode_head(accepted)  # verified when it was accepted; at least the answer's head
    audit = _Audit(conn, state, profile, reply.devices, policy=policy, now=now, tell=tell)
    if state.get(_AUDITED) is None and state.get(_START) is None:
        await audit.baseline(checked.proven.index, checked.proven.entry, upto)
    else:
        await audit.run(upto)


class _Audit:
    """One connection's audit of the home node's log."""

    def __init__(
        self,
        conn: Connection,
        state: DeviceState,
        profile: Profile,
        devices: tuple[DeviceEntry, ...],
        *,
        policy: CryptoPolicy,
        now: int,
        tell: Tell,
    ) -> None:
        self._conn, self._state, self._profile, self._now, self._tell = conn, state, profile, now, tell
        self._home = conn.welcome.node
        self._records = _records(devices, policy, profile.address)
        self._ids = {r.fingerprint: d for d, r in self._records.items()}

    async def baseline(self, index: int, entry: DirectoryEntry, upto: TreeHead) -> None:
        """No start was noted when this device joined (before there were starts): its first
        check only takes the account's entry as the baseline, audited up to ``upto``."""
        found = _Findings()
        trusted = _compare(self._state, self._profile, index, entry, None, self._ids, found)
        await self._finish(upto.size, upto.root, trusted, found)

    async def run(self, upto: TreeHead) -> None:
        """Audit towards a kept target, else towards ``upto``, while the budget lasts."""
        state, budget = self._state, MAX_AUDIT_LEAVES
        while True:
            base, baseline = self._base()
            held = state.get(_PROGRESS)
            if held is not None:
                progress = _Progress.load(held, self._profile)
            elif upto.size <= base[0]:
                return
            elif upto.size - base[0] > MAX_AUDIT_GROWTH:
                grown = upto.size - base[0]
                claim = f"the key directory of {self._home} claims to have grown by {grown} entries since this device last audited it"
                state.add_alert(ALERT, f"{claim}: not auditing it", self._now)
                raise VerifyError(f"the key directory of {self._home} claims {grown} new entries; not auditing them", code="directory_too_large")
            else:
                trusted = _trusted(baseline[1] if baseline else state.get(_TRUSTED), self._profile)
                progress = _Progress(size=upto.size, root=upto.root, tree=None, trusted=trusted, findings=_Findings())
            budget = await self._read(progress, base, baseline, budget)
            if progress.tree is None or progress.tree.size < progress.size:
                left = upto.size - (progress.tree.size if progress.tree is not None else base[0])
                raise NodeError("audit_behind", f"{left} leaves of {self._home}'s key directory not audited yet; the next command goes on")
            if progress.tree.root() != progress.root:
                raise self._bad_leaves(f"leaves {base[0]}..{progress.size - 1} do not make its signed tree of size {progress.size}")
            await self._finish(progress.size, progress.root, progress.trusted, progress.findings)

    def _base(self) -> tuple[tuple[int, bytes | None], tuple[int, bytes] | None]:
        """(size, root) audited, and the start (leaf index, device list) while the first audit
        from it is not done."""
        audited = self._state.get(_AUDITED)
        if audited is not None:
            size, root = canonical.loads(audited)
            return (size, root), None
        start = self._state.get(_START)
        assert start is not None
        index, listed = canonical.loads(start)
        # nothing this device holds gives the root before its start: the frontier the node
        # sends is taken as it is, and the target's root binds it together with every leaf
        return (index, None), (index, listed)

    async def _read(self, progress: _Progress, base: tuple[int, bytes | None], baseline: tuple[int, bytes] | None, budget: int) -> int:
        """Read pages of leaves towards ``progress.size`` while ``budget`` lasts, keeping the
        progress after each; the budget left."""
        at = progress.tree.size if progress.tree is not None else base[0]
        while at < progress.size and budget > 0:
            end = min(at + limits.MAX_LEAVES_PER_FETCH, progress.size, at + budget)
            reply = await self._conn.request(lambda n: FetchLeaves(request=n, start=at, end=end))
            if not isinstance(reply, Leaves) or reply.start != at or not 0 < len(reply.leaves) <= end - at:
                raise RemoteProtocolError(f"the node did not answer with leaves {at}..{end - 1} of its key directory")
            if progress.tree is None:
                try:
                    progress.tree = CompactRange(at, reply.frontier)
                except ValueError:
                    raise self._bad_leaves(f"no compact range of its tree of size {at}") from None
                if base[1] is not None and progress.tree.root() != base[1]:
                    raise self._bad_leaves(f"its tree of size {at} is not the one audited")
            for leaf in reply.leaves:
                progress.tree.append(leaf_hash(leaf))
                self._visit(progress, at, leaf, baseline)
                at += 1
            budget -= len(reply.leaves)
            self._state.put(_PROGRESS, progress.dump())
        return budget

    def _visit(self, progress: _Progress, index: int, leaf: bytes, baseline: tuple[int, bytes] | None) -> None:
        me, key = self._profile.address, self._profile.account_key.public
        try:
            entry = decode_entry(leaf)
        except ProtocolError as exc:  # no device accepts it as anyone's entry
            if baseline is not None and index == baseline[0]:
                progress.findings.alert(self._not_joined(index))
            else:
                progress.findings.notice(f"leaf {index} of the key directory of {self._home} is malformed ({exc})")
            return
        if baseline is not None and index == baseline[0]:
            # the start leaf is exactly what this device joined with; the trusted list stays that
            if (entry.account, entry.identity, entry.device_list) != (me, key.to_bytes(), baseline[1]):
                progress.findings.alert(self._not_joined(index))
        elif entry.account == me:
            found = progress.findings
            progress.trusted = _compare(self._state, self._profile, index, entry, progress.trusted, self._ids, found)

    def _not_joined(self, index: int) -> str:
        return (
            f"leaf {index} of the key directory of {self._home} is not the entry this device joined your account with:"
            " your account may have been changed as it joined"
        )

    def _bad_leaves(self, why: str) -> VerifyError:
        """The lie is an alert; what was staged from it is dropped (back to the audited point)."""
        with self._state.transaction():
            self._state.delete(_PROGRESS)
            lie = f"{self._home} served key-directory leaves that its signed heads do not cover ({why})"
            self._state.add_alert(ALERT, f"{lie}: your account cannot be checked", self._now)
        return VerifyError(f"the key-directory leaves {self._home} served do not match its signed heads ({why})", code="bad_leaves")

    async def _finish(self, size: int, root: bytes, trusted: DeviceList | None, found: _Findings) -> None:
        """The log is audited up to the tree of ``size`` leaves with ``root``: keep that,
        record the findings and tell the account's other devices the new alerts."""
        state = self._state
        with state.transaction():
            state.put(_AUDITED, canonical.dumps([size, root]))
            if trusted is not None:
                state.put(_TRUSTED, trusted.raw)
            state.delete(_PROGRESS)
            state.delete(_START)
            new_alerts = found.record(state, self._home, self._now)
        if not new_alerts or trusted is None:
            return
        others = {d: r for d, r in self._records.items() if r.fingerprint in trusted and d != self._profile.device_id}
        if not others:
            return
        me = self._profile.address
        view = AccountView(address=me, identity=self._profile.account_key.public, device_list=trusted, devices=others)
        for text in new_alerts:
            try:
                await self._tell(self._conn, view, text)
            except (NodeError, ProtocolError) as exc:
                state.add_alert(NOTICE, f"could not tell your other devices about an alert: {exc}", self._now)


def own_device_list(state: DeviceState, profile: Profile) -> DeviceList | None:
    """The newest own device list the audits found signed by the account key (None before
    the first audit finished)."""
    return _trusted(state.get(_TRUSTED), profile)


def _trusted(raw: bytes | None, profile: Profile) -> DeviceList | None:
    return verify_device_list(raw, account_key=profile.account_key.public, account=profile.address) if raw else None


def _compare(
    state: DeviceState, profile: Profile, index: int, entry: DirectoryEntry, trusted: DeviceList | None, ids: dict[str, int], found: _Findings
) -> DeviceList | None:
    """Alerts and notices for one new own entry; the device list to compare the next with."""
    me, key = profile.address, profile.account_key.public
    if entry.identity != key.to_bytes():
        found.alert(f"the key directory shows an identity key for your account that is not its own ({_fingerprint(entry.identity)}, leaf {index}): someone may be impersonating you")
        return trusted
    try:
        listed = verify_device_list(entry.device_list, account_key=key, account=me)
        if trusted is not None:
            check_successor(trusted, listed)
    except ProtocolError as exc:
        found.alert(f"the key directory shows a device list for your account that your account key did not sign or that goes back (leaf {index}: {exc})")
        return trusted
    if trusted is None:
        return listed
    added = sorted(set(listed.devices) - set(trusted.devices))
    approved_version = len(added) == 1 and state.approved(APPROVED_VERSION, str(listed.version))
    for fp in added:
        if approved_version or state.approved(APPROVED_DEVICE, fp):
            found.notice(f"{f'device {ids[fp]}' if fp in ids else _name(fp, ids)} was added (approved on this device)")
        else:
            found.alert(f"{_name(fp, ids)} was added to your account")
    for fp in sorted(set(trusted.devices) - set(listed.devices)):
        found.notice(f"{_name(fp, ids)} was removed from your account")
    return listed


def _records(entries: tuple[DeviceEntry, ...], policy: CryptoPolicy, me: str) -> dict[int, DeviceRecord]:
    """Device id -> verified record of the served records that verify (others are ignored)."""
    records: dict[int, DeviceRecord] = {}
    for d in entries:
        try:
            records[d.device] = verify_device_record(d.record, policy=policy, account=me)
        except ProtocolError:
            continue
    return records


def _name(fp: str, ids: dict[str, int]) -> str:
    return f"device {ids[fp]} (fingerprint {fp})" if fp in ids else f"a device (fingerprint {fp})"


def _fingerprint(identity: bytes) -> str:
    try:
        return f"fingerprint {VerifyKey.from_bytes(identity).fingerprint}"
    except ProtocolError:
        return "not even a valid key"
