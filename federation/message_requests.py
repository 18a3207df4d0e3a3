"""Message requests: the small allowance of senders who are not contacts of a mailbox's owner.

A sender who presents the recipient account's access token (core/access.py) is a contact: its
envelopes count only against the mailbox quota and the sender's own rate limits. Any other
envelope to a mailbox of this node (a stranger's first messages, a spammer's flood, a token of
another account or an altered one) is a *message request* and must also fit in two token
buckets, each in envelopes AND bytes:

- per (sender, mailbox): the sending device for this node's devices, the (link peer, origin
  node) for envelopes from other nodes. One stranger cannot use up everyone's requests.
- per mailbox: all message requests to one device together. Its refill is derived from the
  mailbox quota and the envelope TTL so that message requests can never hold more than about
  half a mailbox, even if its owner never reads it: a stranger cannot fill a mailbox, and a
  contact always finds room.

The node checks the token, never learns who presented it (sealed sender holds: the envelope still
names only the recipient), and keeps no state but the buckets (in memory, bounded LRUs).

The sender's own node also charges its device, per remote mailbox, for envelopes it sends
without any token: the destination only sees the origin node, so without this one device of a
node could spend the requests of all of that node's users. Over a limit the refusal is
``message_request_limit``. The sizes below are the defaults of node.toml ``[budgets]``
(``RequestCaps``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sonet.core import limits
from sonet.core.access import access_secret, access_token_valid, issue_access_token
from sonet.core.crypto import SigningKey

from .ratelimit import Limiter, Rate
from .records import Quota

__all__ = ["RequestCaps", "RequestAllowance", "MessageRequests", "REFUSAL"]

REFUSAL = "message_request_limit"

_DAY_S = 24 * 3600


def daily(amount: float) -> Rate:
    """``amount`` at once, refilled over a day."""
    return Rate(per_second=amount / _DAY_S, burst=amount)


#: per (device, mailbox): a few first messages a day before the recipient answers
PER_DEVICE = daily(10)
PER_DEVICE_BYTES = daily(2 * limits.MAX_ENVELOPE_BODY)
#: per (peer, origin, mailbox): all the strangers of one other node to one mailbox
PER_PEER = daily(50)
PER_PEER_BYTES = daily(8 * limits.MAX_ENVELOPE_BODY)
#: most message requests a mailbox takes at once, in envelopes and bytes (and at most a quarter
#: of its quota)
MAILBOX_BURST = 100
MAILBOX_BURST_BYTES = 4 * 1024 * 1024
#: bucket tables are bounded LRUs (core/ratelimit.py): past this many keys the least recently
#: used is forgotten (a forgotten key starts full again). ~0.5 KB a key: ~55 MB at the worst
MAILBOX_KEYS = 50_000
SENDER_KEYS = 20_000


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestCaps:
    """The allowance's sizes (node.toml ``[budgets]``): a day's worth per (device, mailbox) and
    per (peer, origin, mailbox), envelopes and bytes, and the most waiting for one mailbox."""

    per_device: int = int(PER_DEVICE.burst)
    per_device_bytes: int = int(PER_DEVICE_BYTES.burst)
    per_peer: int = int(PER_PEER.burst)
    per_peer_bytes: int = int(PER_PEER_BYTES.burst)
    mailbox: int = MAILBOX_BURST
    mailbox_bytes: int = MAILBOX_BURST_BYTES


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestAllowance:
    per_device: Rate = PER_DEVICE
    per_device_bytes: Rate = PER_DEVICE_BYTES
    per_peer: Rate = PER_PEER
    per_peer_bytes: Rate = PER_PEER_BYTES
    per_mailbox: Rate
    per_mailbox_bytes: Rate

    @classmethod
    def for_quota(cls, quota: Quota, *, envelope_ttl_ms: int, caps: RequestCaps = RequestCaps()) -> RequestAllowance:
        """``caps``, with mailbox buckets that refill half the quota over one envelope TTL."""
        ttl_s = max(1.0, envelope_ttl_ms / 1000)
        return cls(
            per_device=daily(caps.per_device),
            per_device_bytes=daily(caps.per_device_bytes),
            per_peer=daily(caps.per_peer),
            per_peer_bytes=daily(caps.per_peer_bytes),
            per_mailbox=Rate(
                per_second=quota.max_envelopes / 2 / ttl_s, burst=max(1, min(caps.mailbox, quota.max_envelopes // 4))
            ),
            per_mailbox_bytes=Rate(
                per_second=quota.max_bytes / 2 / ttl_s,
                burst=max(limits.MAX_ENVELOPE_BODY, min(caps.mailbox_bytes, quota.max_bytes // 4)),
            ),
        )


class MessageRequests:
    """One per node, shared by its device handlers and its federation inbound links."""

    def __init__(
        self, *, secret: bytes, allowance: RequestAllowance, mailbox_keys: int = MAILBOX_KEYS, sender_keys: int = SENDER_KEYS
    ) -> None:
        self._secret = secret
        self.allowance = allowance
        a = allowance
        self._device = (Limiter(a.per_device, max_keys=sender_keys), Limiter(a.per_device_bytes, max_keys=sender_keys))
        self._peer = (Limiter(a.per_peer, max_keys=sender_keys), Limiter(a.per_peer_bytes, max_keys=sender_keys))
        self._mailbox = (Limiter(a.per_mailbox, max_keys=mailbox_keys), Limiter(a.per_mailbox_bytes, max_keys=mailbox_keys))

    @classmethod
    def for_node(
        cls, identity: SigningKey, quota: Quota, *, envelope_ttl_ms: int, caps: RequestCaps = RequestCaps()
    ) -> MessageRequests:
        """The node's: tokens keyed from its identity key, buckets sized from its quota."""
        allowance = RequestAllowance.for_quota(quota, envelope_ttl_ms=envelope_ttl_ms, caps=caps)
        return cls(secret=access_secret(identity.private_bytes()), allowance=allowance)

    def token(self, account: str, *, now: int) -> bytes:
        """The access token of ``account`` (of this node) to hand its devices."""
        return issue_access_token(self._secret, account, now_ms=now)

    def is_contact(self, account: str, token: bytes, *, now: int) -> bool:
        """``token`` is ``account``'s valid access token (``account`` is of this node)."""
        return bool(token) and access_token_valid(self._secret, account, token, now_ms=now)

    def from_device(self, device: str, mailbox: tuple[str, int], size: int, *, now: int, local: bool = True) -> str | None:
        """Take one message request of ``size`` bytes from this node's device ``device`` (its
        fingerprint) to ``mailbox``; the refusal message, or None. ``local`` False: a mailbox
        of another node (only the sender's share is charged here; its node charges the rest)."""
        refusal = _take(self._device, (device, mailbox), size, now, "this device sent too many message requests to")
        if refusal is None and local:
            refusal = _take(self._mailbox, mailbox, size, now, "too many message requests are waiting for")
        return None if refusal is None else f"{refusal} {mailbox[0]} device {mailbox[1]}"

    def from_peer(self, peer: str, origin: str, mailbox: tuple[str, int], size: int, *, now: int) -> bool:
        """Take one message request that link peer ``peer`` pushed from node ``origin``."""
        if _take(self._peer, (peer, origin, mailbox), size, now, "") is not None:
            return False
        return _take(self._mailbox, mailbox, size, now, "") is None


def _take(buckets: tuple[Limiter, Limiter], key: object, size: int, now: int, refusal: str) -> str | None:
    """Spend one envelope and ``size`` bytes of the key's buckets (a size above a bucket's burst
    costs the whole burst: it passes only into a full bucket)."""
    count, size_bucket = buckets
    if not count.allow(key, now, 1):
        return refusal
    if not size_bucket.allow(key, now, min(float(size), size_bucket.rate.burst)):
        return refusal
    return None
