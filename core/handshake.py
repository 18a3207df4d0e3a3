"""The secure-channel handshake, both roles, sans-I/O (ARCHITECTURE §4).

Four messages, each one WebSocket message (a wire frame)::

    I -> R  Hello1   offered modes, X25519 share, ML-KEM-768 encapsulation key, nonce, cookie
   [R -> I  Cookie   under load only: a cookie; I -> R the same Hello1 again, carrying it]
    R -> I  Hello2   chosen mode, X25519 share and/or ML-KEM ciphertext, nonce,
                     AEAD_hs_r{ responder identity, signature over the transcript }
    I -> R  Auth3    AEAD_hs_i{ initiator identity, signature over the transcript }
    R -> I  Done4    AEAD_hs_r{ "ok" }            (or a plaintext HandshakeError)

The transcript hash chains the canonical CBOR of every field of every message, the prologue
(which binds the endpoint, e.g. ``/client``) and both identities and signatures; the offered
list and the chosen mode are in it, so an attacker who strips modes from the offer breaks the
responder's signature (downgrade protection). The cookie is in no transcript and the retried
Hello1 must be the same message (the responder's guard, core/handshake_guard.py, checks a MAC
over its digest), so the cookie round cannot change what is signed. Keys come from HKDF-SHA256
with the transcript hash as salt over the concatenated shared secrets. Identities travel only
inside AEAD boxes, so a passive observer learns neither. The responder reports the
authenticated initiator as a ``PeerIdentified`` event and must then :meth:`Handshake.accept` or
:meth:`Handshake.reject`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from . import canonical, limits
from .crypto import Aead, CryptoMode, CryptoPolicy, KexOffer, Rng, SigningKey, VerifyKey, hkdf_expand, respond, sha256
from .crypto.kdf import hmac_sha256
from .errors import DecryptError, LocalProtocolError, ProtocolError, RemoteProtocolError, VerifyError, registered
from .wire import Frame, FrameSet, decode_frame, encode_frame, frame

__all__ = [
    "Role",
    "Handshake",
    "SessionKeys",
    "PeerIdentified",
    "HandshakeComplete",
    "NEED_DATA",
    "Hello1",
    "Hello2",
    "Auth3",
    "Done4",
    "HandshakeError",
    "Cookie",
    "COOKIE_LEN",
    "Screen",
    "HANDSHAKE_FRAMES",
    "PROTOCOL_VERSION",
]

PROTOCOL_VERSION = 1
_NONCE_LEN = 32
#: the length of a handshake cookie (core/handshake_guard.py mints them)
COOKIE_LEN = 16


class Role(enum.Enum):
    INITIATOR = "initiator"
    RESPONDER = "responder"


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Any = _NeedData()


# Wire messages --------------------------------------------------------------------------


@frame(tag=1)
class Hello1(Frame):
    v: int
    offer: tuple[str, ...]
    x25519: bytes
    mlkem: bytes
    nonce: bytes
    #: empty, or the cookie the responder sent back for this very message (not in the transcript)
    cookie: bytes

    def check(self) -> None:
        if len(self.cookie) not in (0, COOKIE_LEN):
            raise ValueError(f"cookie must be empty or {COOKIE_LEN} bytes")


@frame(tag=2)
class Hello2(Frame):
    v: int
    mode: str
    x25519: bytes | None
    mlkem_ct: bytes | None
    nonce: bytes
    auth: bytes


@frame(tag=3)
class Auth3(Frame):
    auth: bytes


@frame(tag=4)
class Done4(Frame):
    confirm: bytes


@frame(tag=5)
class HandshakeError(Frame):
    """Plaintext refusal; unauthenticated by nature, so it only ever ends a handshake."""

    code: str
    message: str


@frame(tag=6)
class Cookie(Frame):
    """Responder under load, instead of Hello2: send the same Hello1 again carrying this."""

    cookie: bytes

    def check(self) -> None:
        if len(self.cookie) != COOKIE_LEN:
            raise ValueError(f"cookie must be {COOKIE_LEN} bytes")


#: the responder's look at a Hello1 before any expensive work: None goes on, bytes is a cookie
#: to send instead of Hello2; a refusal raises a ProtocolError (core/handshake_guard.py)
Screen = Callable[[Hello1], bytes | None]

#: the frames of the handshake (before any channel); a channel frame here is a message other
#: than the one expected, ``bad_input`` like any
HANDSHAKE_FRAMES = FrameSet("handshake", (Hello1, Hello2, Auth3, Done4, HandshakeError, Cookie), foreign_code="bad_input")


# Events ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionKeys:
    """Traffic secrets for one direction pair, from this side's point of view."""

    send_key: bytes
    recv_key: bytes
    send_iv: bytes
    recv_iv: bytes
    #: public channel binding value, identical on both sides
    binding: bytes

    def __repr__(self) -> str:
        return "SessionKeys(<secret>)"


@dataclass(frozen=True, kw_only=True, slots=True)
class PeerIdentified:
    """Responder only: the initiator proved its identity; call accept() or reject()."""

    peer: VerifyKey
    mode: CryptoMode


@dataclass(frozen=True, kw_only=True, slots=True)
class HandshakeComplete:
    peer: VerifyKey
    mode: CryptoMode
    keys: SessionKeys


class _State(enum.Enum):
    START = 0
    AWAIT_HELLO1 = 1
    AWAIT_HELLO2 = 2
    AWAIT_AUTH3 = 3
    AWAIT_DECISION = 4
    AWAIT_DONE4 = 5
    COMPLETE = 6
    FAILED = 7


_OK = b"sonet-handshake-ok"


class Handshake:
    """One side of one handshake. Feed whole messages to :meth:`receive_data`, send whatever
    :meth:`data_to_send` returns, and read events with :meth:`next_event`."""

    def __init__(
        self,
        role: Role,
        *,
        identity: SigningKey,
        policy: CryptoPolicy,
        rng: Rng,
        prologue: bytes,
        expected_peer: str | None = None,
        screen: Screen | None = None,
    ) -> None:
        """``screen`` (responder only) looks at the Hello1 before any public-key work and may
        answer with a cookie instead, once per handshake (core/handshake_guard.py)."""
        if screen is not None and role is not Role.RESPONDER:
            raise LocalProtocolError("only a responder screens Hello1")
        self.role = role
        self._screen = screen
        self._hello1: Hello1 | None = None
        self._cookie_round = False
        self._identity = identity
        self._policy = policy
        self._rng = rng
        self._expected_peer = expected_peer
        self._outgoing: list[bytes] = []
        self._events: list[Any] = []
        self._th = sha256(canonical.dumps(["sonet-handshake-v1", prologue]))
        self._offer: KexOffer | None = None
        self._prk = b""
        self._mode: CryptoMode | None = None
        self._peer: VerifyKey | None = None
        self._state = _State.START
        if role is Role.INITIATOR:
            self._send_hello1()
        else:
            self._state = _State.AWAIT_HELLO1

    # Public API --------------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        return self._state is _State.COMPLETE

    def data_to_send(self) -> list[bytes]:
        out, self._outgoing = self._outgoing, []
        return out

    def next_event(self) -> Any:
        return self._events.pop(0) if self._events else NEED_DATA

    def receive_data(self, data: bytes) -> None:
        """Process one handshake message. On any error the machine fails for good, queues a
        HandshakeError for the peer and raises."""
        if self._state in (_State.COMPLETE, _State.FAILED, _State.AWAIT_DECISION, _State.START):
            raise LocalProtocolError(f"handshake cannot receive in state {self._state.name}")
        try:
            if len(data) > limits.MAX_HANDSHAKE_MESSAGE_BYTES:
                raise RemoteProtocolError("handshake message too large")
            msg = decode_frame(data, HANDSHAKE_FRAMES)
            if isinstance(msg, HandshakeError):
                if not registered(msg.code):  # a code this version does not know says nothing more
                    raise RemoteProtocolError(f"peer refused the handshake ({msg.code!r}): {msg.message}")
                raise RemoteProtocolError(f"peer refused the handshake: {msg.message}", code=msg.code)
            state = self._state
            if state is _State.AWAIT_HELLO1 and isinstance(msg, Hello1):
                self._on_hello1(msg)
            elif state is _State.AWAIT_HELLO2 and isinstance(msg, Hello2):
                self._on_hello2(msg)
            elif state is _State.AWAIT_HELLO2 and isinstance(msg, Cookie):
                self._on_cookie(msg)
            elif state is _State.AWAIT_AUTH3 and isinstance(msg, Auth3):
                self._on_auth3(msg)
            elif state is _State.AWAIT_DONE4 and isinstance(msg, Done4):
                self._on_done4(msg)
            else:
                expected = {_State.AWAIT_HELLO1: Hello1, _State.AWAIT_HELLO2: Hello2, _State.AWAIT_AUTH3: Auth3}.get(state, Done4)
                raise RemoteProtocolError(f"expected {expected.__name__}, got {type(msg).__name__}")
        except ProtocolError as exc:
            self._fail(exc)
            raise

    def accept(self) -> None:
        """Responder: admit the identified initiator; completes the handshake."""
        if self._state is not _State.AWAIT_DECISION:
            raise LocalProtocolError("accept() is only valid after PeerIdentified")
        confirm = self._box(self._hs_key(Role.RESPONDER), 1, _OK)
        self._outgoing.append(encode_frame(Done4(confirm=confirm)))
        self._finish()

    def reject(self, code: str, message: str) -> None:
        """Responder: refuse the identified initiator with a reason it will see."""
        if self._state is not _State.AWAIT_DECISION:
            raise LocalProtocolError("reject() is only valid after PeerIdentified")
        self._fail(RemoteProtocolError(message, code=code))

    # Transcript and keys -------------------------------------------------------------

    def _absorb(self, label: str, value: Any) -> bytes:
        self._th = sha256(self._th, canonical.dumps([label, value]))
        return self._th

    def _hs_key(self, sender: Role) -> bytes:
        return hkdf_expand(self._prk, info=b"sonet hs " + sender.value.encode(), length=32)

    def _box(self, key: bytes, counter: int, plaintext: bytes) -> bytes:
        return Aead(key).seal(counter.to_bytes(12, "big"), plaintext, self._th)

    def _unbox(self, key: bytes, counter: int, ciphertext: bytes) -> bytes:
        return Aead(key).open(counter.to_bytes(12, "big"), ciphertext, self._th)

    def _sign_identity(self, role: Role) -> bytes:
        """Our identity and a signature over the transcript, boxed under our handshake key.

        The box's associated data is the transcript before the identity; the identity and the
        signature are then absorbed, exactly as the verifier does."""
        aad = self._th
        key = self._identity.public.to_bytes()
        th = self._absorb(role.value + " identity", key)
        sig = self._identity.sign(b"sonet-handshake-" + role.value.encode(), th)
        self._absorb(role.value + " signature", sig)
        body = canonical.dumps({"identity": key, "sig": sig})
        return Aead(self._hs_key(role)).seal(bytes(12), body, aad)

    def _verify_identity(self, role: Role, box: bytes) -> VerifyKey:
        body = self._unbox(self._hs_key(role), 0, box)
        fields = canonical.loads_map(body, {"identity": bytes, "sig": bytes})
        peer = VerifyKey.from_bytes(fields["identity"])
        self._policy.require(peer.mode, f"the {role.value}'s identity key")
        if self._expected_peer is not None and peer.fingerprint != self._expected_peer:
            raise VerifyError(
                f"peer identity {peer.fingerprint} does not match the pinned fingerprint {self._expected_peer}",
                code="wrong_identity",
            )
        th = self._absorb(role.value + " identity", fields["identity"])
        peer.verify(b"sonet-handshake-" + role.value.encode(), th, fields["sig"])
        self._absorb(role.value + " signature", fields["sig"])
        return peer

    # Initiator -------------------------------------------------------------------------

    def _send_hello1(self) -> None:
        self._offer = KexOffer(self._rng)
        hello = Hello1(
            v=PROTOCOL_VERSION,
            offer=tuple(m.value for m in self._policy.offer()),
            x25519=self._offer.x25519_public,
            mlkem=self._offer.mlkem_public,
            nonce=self._rng(_NONCE_LEN),
            cookie=b"",
        )
        self._absorb_hello1(hello)
        self._hello1 = hello
        self._outgoing.append(encode_frame(hello))
        self._state = _State.AWAIT_HELLO2

    def _on_cookie(self, c: Cookie) -> None:
        """The responder is under load: the same Hello1 again, carrying its cookie (once)."""
        assert self._hello1 is not None
        if self._cookie_round:
            raise RemoteProtocolError("the responder asked for a cookie round twice")
        self._cookie_round = True
        self._outgoing.append(encode_frame(replace(self._hello1, cookie=c.cookie)))

    def _absorb_hello1(self, h: Hello1) -> None:
        self._absorb("hello1", {"v": h.v, "offer": list(h.offer), "x25519": h.x25519, "mlkem": h.mlkem, "nonce": h.nonce})

    def _absorb_hello2(self, h: Hello2) -> None:
        self._absorb("hello2", {"v": h.v, "mode": h.mode, "x25519": h.x25519, "mlkem_ct": h.mlkem_ct, "nonce": h.nonce})

    def _on_hello2(self, h: Hello2) -> None:
        assert self._offer is not None
        if h.v != PROTOCOL_VERSION:
            raise RemoteProtocolError(f"unsupported handshake version {h.v}")
        mode = CryptoMode.parse(h.mode)
        offered = self._policy.offer()
        if mode not in offered:
            raise RemoteProtocolError(f"responder chose crypto mode {mode.value}, which was not offered", code="crypto_mode_refused")
        if len(h.nonce) != _NONCE_LEN:
            raise RemoteProtocolError("nonce must be 32 bytes")
        secret = self._offer.finish(mode, h.x25519, h.mlkem_ct)
        self._offer = None
        self._mode = mode
        self._absorb_hello2(h)
        self._prk = _extract(self._th, secret)
        self._peer = self._verify_identity(Role.RESPONDER, h.auth)
        # Our own identity goes out only after the responder has proven who it is.
        self._outgoing.append(encode_frame(Auth3(auth=self._sign_identity(Role.INITIATOR))))
        self._state = _State.AWAIT_DONE4

    def _on_done4(self, d: Done4) -> None:
        if self._unbox(self._hs_key(Role.RESPONDER), 1, d.confirm) != _OK:
            raise DecryptError()
        self._finish()

    # Responder -------------------------------------------------------------------------

    def _on_hello1(self, h: Hello1) -> None:
        if h.v != PROTOCOL_VERSION:
            raise RemoteProtocolError(f"unsupported handshake version {h.v}", code="version")
        if len(h.nonce) != _NONCE_LEN or len(h.offer) > 8:
            raise RemoteProtocolError("malformed Hello1")
        offered = [CryptoMode.parse(m) for m in h.offer]
        mode = next((m for m in offered if self._policy.accepts(m)), None)
        if mode is None:
            raise RemoteProtocolError(
                f"no offered crypto mode meets this node's minimum ({self._policy.minimum.value})",
                code="crypto_mode_refused",
            )
        if self._screen is not None:
            cookie = self._screen(h)  # may refuse (raises): a replay, an address over its share
            if cookie is not None:
                if self._cookie_round:  # the retry's cookie did not verify (forged, another address)
                    raise RemoteProtocolError("the handshake cookie is not valid here", code="bad_input")
                self._cookie_round = True
                self._outgoing.append(encode_frame(Cookie(cookie=cookie)))
                return  # still AWAIT_HELLO1; nothing about this Hello1 is kept
        self._absorb_hello1(h)
        kex = respond(mode, self._rng, h.x25519, h.mlkem)
        self._mode = mode
        unsigned = Hello2(
            v=PROTOCOL_VERSION, mode=mode.value, x25519=kex.x25519_share, mlkem_ct=kex.mlkem_ciphertext, nonce=self._rng(_NONCE_LEN), auth=b""
        )
        self._absorb_hello2(unsigned)
        self._prk = _extract(self._th, kex.shared_secret)
        self._outgoing.append(encode_frame(replace(unsigned, auth=self._sign_identity(Role.RESPONDER))))
        self._state = _State.AWAIT_AUTH3

    def _on_auth3(self, a: Auth3) -> None:
        self._peer = self._verify_identity(Role.INITIATOR, a.auth)
        assert self._mode is not None
        self._state = _State.AWAIT_DECISION
        self._events.append(PeerIdentified(peer=self._peer, mode=self._mode))

    # Endings ---------------------------------------------------------------------------

    def _finish(self) -> None:
        assert self._peer is not None and self._mode is not None
        th = self._th
        keys = {
            name: hkdf_expand(self._prk, info=b"sonet traffic " + name.encode() + th, length=n)
            for name, n in (("i2r key", 32), ("r2i key", 32), ("i2r iv", 12), ("r2i iv", 12))
        }
        binding = hmac_sha256(hkdf_expand(self._prk, info=b"sonet binding", length=32), th)
        mine, theirs = ("i2r", "r2i") if self.role is Role.INITIATOR else ("r2i", "i2r")
        session = SessionKeys(
            send_key=keys[mine + " key"],
            recv_key=keys[theirs + " key"],
            send_iv=keys[mine + " iv"],
            recv_iv=keys[theirs + " iv"],
            binding=binding,
        )
        self._prk = b""
        self._state = _State.COMPLETE
        self._events.append(HandshakeComplete(peer=self._peer, mode=self._mode, keys=session))

    def _fail(self, exc: ProtocolError) -> None:
        was_failed = self._state is _State.FAILED
        self._state = _State.FAILED
        self._prk = b""
        self._offer = None
        if not was_failed:
            # Tell the peer why, without detail that could help an attacker. The frame is
            # plaintext: identity failures name fingerprints, which must not leak (§4).
            if isinstance(exc, DecryptError):
                message = "decryption failed"
            elif isinstance(exc, VerifyError):
                message = "peer identity verification failed"
            else:
                message = str(exc)
            self._outgoing.append(encode_frame(HandshakeError(code=exc.code, message=message[:200])))


def _extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract (RFC 5869) with the transcript hash as salt."""
    return hmac_sha256(salt, ikm)
