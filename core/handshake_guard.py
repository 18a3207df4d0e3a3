"""The responder's first line against handshake floods (pure: the caller passes the time).

A Hello1 costs its sender nothing to make but costs the responder an ML-KEM encapsulation, an
X25519 exchange and a hybrid signature. :class:`HandshakeGuard` looks at each Hello1 BEFORE any
of that, with a hash and a MAC only, and answers one of three ways:

- **refused, replayed**: the same first message (same ephemeral keys and nonce) was already
  worked on within ``replay_window_ms``; a recorded Hello1 sent again costs one hash lookup;
- **a cookie** (under load, as WireGuard's cookie reply and QUIC's Retry): a 16-byte MAC, under
  a secret that rotates every two minutes (the previous one is still accepted), over the
  sender's address and the digest of its Hello1. The initiator sends the SAME Hello1 again
  carrying it; a valid cookie proves the sender reads answers at that address now, without
  the responder keeping any state between the two messages;
- **refused, rate_limited**: the address spent its share of expensive handshakes (a token
  bucket per address in a bounded LRU table);
- otherwise **proceed**: the digest enters the replay cache and the expensive work may start.

The node is *under load* while ``max_in_progress`` handshakes are past this point and not yet
ended (:meth:`HandshakeGuard.release`), or while more than ``load_rate`` of them started per
second. The cookie is not part of the transcript: the retried Hello1 must be identical, so the
cookie round cannot change what both sides sign (no downgrade through it).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from . import canonical
from .crypto import Rng, ct_equal, hmac_sha256, sha256
from .errors import RemoteProtocolError
from .handshake import Hello1
from .ratelimit import Bucket, Limiter, Rate

__all__ = [
    "COOKIE_LEN",
    "COOKIE_ROTATION_MS",
    "GuardSettings",
    "CookieJar",
    "ReplayCache",
    "HandshakeGuard",
    "hello1_digest",
]

COOKIE_LEN = 16
#: how long one cookie secret mints cookies; the previous one still verifies for as long
COOKIE_ROTATION_MS = 120_000
_DIGEST_LEN = 16


def hello1_digest(hello: Hello1) -> bytes:
    """What identifies one first message: every field but the cookie (so the retry that
    carries the cookie is the same message), canonically encoded, hashed and truncated."""
    fields = [hello.v, list(hello.offer), hello.x25519, hello.mlkem, hello.nonce]
    return sha256(canonical.dumps(["sonet-hello1", fields]))[:_DIGEST_LEN]


@dataclass(frozen=True, slots=True)
class GuardSettings:
    #: handshakes past the guard and not yet ended at which the node counts as under load
    max_in_progress: int = 32
    #: expensive handshakes per second (node-wide) above which the node counts as under load
    load_rate: Rate = field(default_factory=lambda: Rate(per_second=50, burst=100))
    #: expensive handshakes per source address (IPv4 address, IPv6 /64)
    per_address: Rate = field(default_factory=lambda: Rate(per_second=20, burst=100))
    #: addresses whose bucket is remembered (least recently used forgotten first)
    max_addresses: int = 10_000
    #: first messages remembered to refuse replays, and for how long
    replay_entries: int = 65_536
    replay_window_ms: int = 10 * 60 * 1000

    def __post_init__(self) -> None:
        if self.max_in_progress < 0 or self.max_addresses < 1 or self.replay_entries < 1 or self.replay_window_ms < 1:
            raise ValueError("guard settings need max_in_progress >= 0 and positive table sizes and window")


class CookieJar:
    """Mints and checks cookies under a rotating secret; ``rng`` makes each new secret."""

    def __init__(self, rng: Rng) -> None:
        self._rng = rng
        self._epoch: int | None = None
        self._current = b""
        self._previous = b""

    def _secrets(self, now_ms: int) -> tuple[bytes, bytes]:
        epoch = now_ms // COOKIE_ROTATION_MS
        if self._epoch is None or epoch > self._epoch:
            # after a gap of more than one period the old secret is not kept: its cookies are stale
            self._previous = self._current if self._epoch == epoch - 1 else self._rng(32)
            self._current = self._rng(32)
            self._epoch = epoch
        return self._current, self._previous

    @staticmethod
    def _mac(secret: bytes, address: bytes, digest: bytes) -> bytes:
        message = canonical.dumps(["sonet-cookie-v1", address, digest])
        return hmac_sha256(secret, message)[:COOKIE_LEN]

    def mint(self, address: bytes, digest: bytes, now_ms: int) -> bytes:
        return self._mac(self._secrets(now_ms)[0], address, digest)

    def valid(self, cookie: bytes, address: bytes, digest: bytes, now_ms: int) -> bool:
        """Whether ``cookie`` was minted for this address and first message by the current or
        the previous secret (constant-time comparisons; both are always computed)."""
        if len(cookie) != COOKIE_LEN:
            return False
        current, previous = self._secrets(now_ms)
        fresh = ct_equal(cookie, self._mac(current, address, digest))
        older = ct_equal(cookie, self._mac(previous, address, digest))
        return fresh | older


class ReplayCache:
    """Digests of first messages worked on, each kept ``window_ms``, at most ``max_entries``
    (the oldest forgotten first: a replay of a forgotten one is worked on once more)."""

    def __init__(self, *, max_entries: int, window_ms: int) -> None:
        self._max = max_entries
        self._window = window_ms
        self._seen: OrderedDict[bytes, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now_ms: int) -> None:
        while self._seen:
            digest, at = next(iter(self._seen.items()))
            if now_ms - at < self._window:
                break
            del self._seen[digest]

    def seen(self, digest: bytes, now_ms: int) -> bool:
        self._expire(now_ms)
        return digest in self._seen

    def add(self, digest: bytes, now_ms: int) -> None:
        self._expire(now_ms)
        if len(self._seen) >= self._max:
            self._seen.popitem(last=False)
        self._seen[digest] = now_ms


class HandshakeGuard:
    """One per listening node, shared by every handshake it answers (see the module text)."""

    def __init__(self, settings: GuardSettings, *, rng: Rng) -> None:
        self.settings = settings
        self.cookies = CookieJar(rng)
        self.replays = ReplayCache(max_entries=settings.replay_entries, window_ms=settings.replay_window_ms)
        self._per_address = Limiter(settings.per_address, max_keys=settings.max_addresses)
        self._load: Bucket | None = None
        self.in_progress = 0
        #: what the guard did so far (for status and tests)
        self.counts = {"proceeded": 0, "cookies": 0, "replayed": 0, "rate_limited": 0}

    def _load_bucket(self, now_ms: int) -> Bucket:
        if self._load is None:
            self._load = Bucket(self.settings.load_rate, now_ms)
        return self._load

    def under_load(self, now_ms: int) -> bool:
        return self.in_progress >= self.settings.max_in_progress or self._load_bucket(now_ms).available(now_ms) < 1

    def screen(self, address: bytes, hello: Hello1, now_ms: int) -> bytes | None:
        """None: go on with the expensive work (the caller must :meth:`release` once that
        handshake has ended, however it ended); bytes: send this cookie and expect the same
        Hello1 back carrying it. Refusals raise RemoteProtocolError (``replayed``,
        ``rate_limited``)."""
        digest = hello1_digest(hello)
        if self.replays.seen(digest, now_ms):
            self.counts["replayed"] += 1
            raise RemoteProtocolError("this first handshake message was seen before (a replay)", code="replayed")
        proven = bool(hello.cookie) and self.cookies.valid(hello.cookie, address, digest, now_ms)
        if not proven and self.under_load(now_ms):
            self.counts["cookies"] += 1
            return self.cookies.mint(address, digest, now_ms)
        if not self._per_address.allow(address, now_ms):
            self.counts["rate_limited"] += 1
            raise RemoteProtocolError("too many handshakes from this address; try again later", code="rate_limited")
        self.replays.add(digest, now_ms)
        self._load_bucket(now_ms).take(now_ms)  # an empty bucket spends nothing: it already means under load
        self.in_progress += 1
        self.counts["proceeded"] += 1
        return None

    def release(self) -> None:
        """One handshake that :meth:`screen` let through has ended."""
        self.in_progress = max(0, self.in_progress - 1)
