"""Per-device Double Ratchet sessions on top of core/ratchet, persisted in the device state.

Write-ahead on sending: a session's new state is committed *before* the message leaves, so a
crash can never make the device reuse a message key. On receiving, the new state is committed
together with the stored message (and the deletion of a used one-time prekey) before the
envelope is acknowledged.

As in Signal, a session replaced by a new incoming one is kept (up to ``MAX_PREVIOUS`` per
device) and tried when the current one cannot decrypt; one that decrypts becomes current
again. Without this, two devices that start a session with each other at the same time would
each adopt the other's and never understand each other again.

Current sessions stay live between messages in a ``SessionCache`` (client/session_cache.py)
that the device owns and passes in; the stored record remains the source of truth.

Crypto modes (client/crypto_modes.py): a new session runs in the mode the sender asked for or,
by default, the one both devices' signed records allow (``session_mode``); either way never
below this device's minimum or its node's, in both directions. A session below that floor is
not used for sending (a new one is started) and does not decrypt.

Sender certificates go by reference once the peer device holds ours (client/cert_refs.py):
:meth:`Sessions.encrypt_sealed` says which, and :meth:`Sessions.decrypt` /
:meth:`Sessions.commit` keep what both sides know about certificates with the session record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sonet.core.certs import certificate_ref
from sonet.core.client_api import Bundle
from sonet.core.crypto import CryptoMode, CryptoPolicy
from sonet.core.device import DeviceRecord
from sonet.core.errors import DecryptError, LocalProtocolError, ProtocolError, RemoteProtocolError, VerifyError
from sonet.core.ratchet import PrekeyBundle, PrekeySecret, SessionState, decrypt, encrypt, initiate, open_initial, session_mode
from sonet.core.ratchet import decode_prekey, read_prekey_header, verify_bundle
from sonet.core.sealed_sender import unknown_reference

from . import cert_refs
from .crypto_modes import can_run, check_requested, session_floor
from .session_cache import SessionCache
from .state import DeviceState, Profile

__all__ = ["Sessions", "Decrypted", "MAX_PREVIOUS"]

#: earlier sessions kept per peer device
MAX_PREVIOUS = 10


@dataclass(frozen=True, kw_only=True)
class Decrypted:
    plaintext: bytes = field(repr=False)
    #: staged: saved by commit() together with whatever the caller stores
    _address: str
    _device: int
    _record: bytes = field(repr=False)
    _used_prekeys: tuple[tuple[str, int], ...]
    _state: SessionState = field(repr=False)
    #: the new list of earlier sessions, or None when it stays as it is
    _previous: tuple[bytes, ...] | None = field(default=None, repr=False)
    #: the sender certificate the message carried in full (verified), to keep for references
    _certificate: bytes | None = field(default=None, repr=False)
    #: what the peer now holds of our certificate, when that changed
    _sent: cert_refs.SentCertificate | None = field(default=None, repr=False)


class Sessions:
    def __init__(
        self,
        state: DeviceState,
        profile: Profile,
        rng: Callable[[int], bytes],
        policy: CryptoPolicy,
        cache: SessionCache | None = None,
        *,
        mode: CryptoMode | None = None,
    ) -> None:
        """``mode``: the mode new sessions started here run in (None: what both records allow)."""
        self._state = state
        self._profile = profile
        self._rng = rng
        self._policy = policy
        self._cache = cache if cache is not None else SessionCache()
        self._requested = mode

    def has(self, address: str, device: int) -> bool:
        return self._state.session(address, device) is not None

    def usable(self, address: str, device: int) -> bool:
        """Whether the current session with that device can carry a message now: it exists, is
        not below the floor, and runs the mode asked for (if one was)."""
        current = self._current(address, device)
        if current is None:
            return False
        mode = current[1].mode
        if self._requested is not None and mode is not self._requested:
            return False
        return mode.rank >= session_floor(self._state)[0].rank

    # Sending ----------------------------------------------------------------------------

    def establish(self, address: str, record: DeviceRecord, bundle: Bundle) -> None:
        """Start a session from a fetched prekey bundle (PQXDH as initiator); verify_bundle
        checks every prekey signature against the device record's identity key. The mode comes
        from the signed records (or the caller's choice), never from which prekeys the bundle
        holds: a bundle lacking a part that mode needs is refused. A session this replaces is
        kept as an earlier one, so replies already on their way still decrypt."""
        mode = self._mode_to_offer(record, address, bundle.device)
        classical = mode.uses_classical
        verified = verify_bundle(
            PrekeyBundle(
                mode=mode,
                identity=record.identity,
                identity_dh=record.identity_dh if classical else None,
                signed_prekey=decode_prekey(bundle.signed_prekey) if classical and bundle.signed_prekey else None,
                pq_prekey=decode_prekey(bundle.pq_prekey) if mode.uses_pq and bundle.pq_prekey else None,
                one_time_prekey=decode_prekey(bundle.one_time) if classical and bundle.one_time else None,
            )
        )
        _header, state = initiate(
            mode=mode,
            identity=self._profile.identity,
            identity_dh_secret=self._profile.identity_dh if classical else None,
            bundle=verified,
            rng=self._rng,
        )
        replaced = self._state.session(address, bundle.device)
        with self._state.transaction():
            if replaced is not None:
                earlier = [replaced, *self._state.previous_sessions(address, bundle.device)]
                self._state.save_previous_sessions(address, bundle.device, earlier[:MAX_PREVIOUS])
            self._save(address, bundle.device, state)

    def encrypt(self, address: str, device: int, plaintext: bytes) -> bytes:
        """Encrypt and commit the advanced state before returning the message."""
        current = self._current(address, device)
        if current is None:
            raise VerifyError(f"no session with {address} device {device}")
        message, new_state = encrypt(current[1], plaintext)
        self._save(address, device, new_state)
        return message

    def encrypt_sealed(self, address: str, device: int, plaintext: bytes, certificate: bytes) -> tuple[bytes, bytes | None]:
        """:meth:`encrypt` for a sealed box with our sender ``certificate``: ``(message,
        reference)``, the reference set when the peer device holds the certificate (seal it
        with ``certificate_ref=``), None when the box must carry it in full. The session and
        what it knows of the peer's certificates are committed together."""
        current = self._current(address, device)
        if current is None:
            raise VerifyError(f"no session with {address} device {device}")
        ref = certificate_ref(certificate)
        sent = cert_refs.load_sent(self._state, address, device)
        by_ref, after = cert_refs.plan_send(sent, current[1], ref)
        message, new_state = encrypt(current[1], plaintext)
        with self._state.transaction():
            self._save(address, device, new_state)
            if after != sent:
                self._state.put(cert_refs.sent_key(address, device), after.to_bytes())
        return message, ref if by_ref else None

    def held_certificate(self, ref: bytes) -> bytes | None:
        """The (unverified: verify it again) certificate this device holds under ``ref``."""
        return cert_refs.held_certificate(self._state, ref)

    def _current(self, address: str, device: int) -> tuple[bytes, SessionState] | None:
        """The stored record of the current session and its (live) state."""
        raw = self._state.session(address, device)
        if raw is None:
            self._cache.forget(address, device)
            return None
        return raw, self._cache.load(address, device, raw)

    def _save(self, address: str, device: int, state: SessionState) -> None:
        record = state.to_bytes()
        self._state.save_session(address, device, record)
        self._cache.remember(address, device, record, state)

    # Receiving --------------------------------------------------------------------------

    def decrypt(
        self, address: str, device: int, record: DeviceRecord, message: bytes, *,
        certificate: bytes | None = None, certificate_ref: bytes | None = None,
    ) -> Decrypted:
        """Decrypt without committing; the peer's identity must be ``record``'s. The box's
        sender certificate: ``certificate`` (verified) when it came in full, kept on commit;
        ``certificate_ref`` when by reference, which must name one held for that device
        (VerifyError ``certificate_unknown`` otherwise)."""
        if certificate_ref is not None and not cert_refs.is_bound(self._state, address, device, certificate_ref):
            raise unknown_reference()
        held = (certificate,) if certificate is not None else ()
        current = self._current(address, device)
        raw = current[0] if current is not None else None
        errors: list[ProtocolError] = []
        if current is not None:
            try:
                plaintext, new_state = decrypt(current[1], message, self._rng)
                return self._staged(address, device, record, plaintext, new_state, (), None, current[1], *held)
            except ProtocolError as exc:
                errors.append(exc)
        previous = self._state.previous_sessions(address, device)
        for index, old in enumerate(previous):
            try:
                plaintext, new_state = decrypt(self._cache.decode(old), message, self._rng)
            except ProtocolError as exc:
                errors.append(exc)
                continue
            # The peer still uses this one: it becomes current, the current one is kept.
            rest = ([raw] if raw is not None else []) + previous[:index] + previous[index + 1 :]
            return self._staged(address, device, record, plaintext, new_state, (), tuple(rest[:MAX_PREVIOUS]), None, *held)
        header = read_prekey_header(message)
        if header is not None:  # a message that starts a session
            mode = self._accept_offered(header.mode, record, address, device)
            plaintext, new_state, used = open_initial(
                message,
                mode=mode,
                identity=self._profile.identity,
                identity_dh_secret=self._profile.identity_dh if mode.uses_classical else None,
                prekey_secret=self._prekey_secret,
                rng=self._rng,
            )
            kept = None if raw is None else tuple(([raw] + previous)[:MAX_PREVIOUS])
            return self._staged(address, device, record, plaintext, new_state, tuple(used), kept, None, *held)
        raise errors[0] if errors else DecryptError()

    def _mode_to_offer(self, record: DeviceRecord, address: str, device: int) -> CryptoMode:
        """The mode of a session this device starts with that device."""
        floor, whose = session_floor(self._state)
        if self._requested is None:
            mode = session_mode(self._profile.mode, record.identity.mode)
            if mode.rank < floor.rank:
                raise RemoteProtocolError(
                    f"{address} device {device} has {record.identity.mode.value} keys: a session with it would run in "
                    f"crypto mode {mode.value}, below {whose}",
                    code="crypto_mode_refused",
                )
        else:
            mode = self._requested
            check_requested(self._state, self._profile.mode, mode)
            if not can_run(record.identity.mode, mode):
                raise LocalProtocolError(
                    f"{address} device {device} has {record.identity.mode.value} keys: it cannot run a {mode.value} session",
                    code="crypto_mode_refused",
                )
        return self._checked(mode, record, address)

    def _accept_offered(self, mode: CryptoMode, record: DeviceRecord, address: str, device: int) -> CryptoMode:
        """The mode a peer's first message names, if this device takes sessions in it: the
        downgrade check, before any key agreement."""
        floor, whose = session_floor(self._state)
        if mode.rank < floor.rank:
            raise RemoteProtocolError(
                f"{address} device {device} started a session in crypto mode {mode.value}, below {whose}",
                code="crypto_mode_refused",
            )
        if not (can_run(self._profile.mode, mode) and can_run(record.identity.mode, mode)):
            raise RemoteProtocolError(
                f"{address} device {device} started a {mode.value} session, which its {record.identity.mode.value} keys "
                f"and this device's {self._profile.mode.value} keys cannot both run",
                code="crypto_mode_refused",
            )
        return self._checked(mode, record, address)

    def _checked(self, mode: CryptoMode, record: DeviceRecord, address: str) -> CryptoMode:
        self._policy.require(mode, f"a session with {address}")
        if mode.uses_classical and record.identity_dh is None:
            raise VerifyError(f"the device record of {address} lacks its X25519 identity key")
        return mode

    def _staged(self, address, device, record, plaintext, new_state, used, previous=None, before=None, certificate=None) -> Decrypted:  # noqa: ANN001
        floor, whose = session_floor(self._state)
        if new_state.mode.rank < floor.rank:  # a session from before the floor was raised
            raise RemoteProtocolError(
                f"the session with {address} device {device} runs in crypto mode {new_state.mode.value}, below {whose}",
                code="crypto_mode_refused",
            )
        # Both halves of the peer's PQXDH identity must be the ones its signed record lists: the
        # X25519 identity key authenticates the sender in classical/hybrid PQXDH (DH1), so a
        # session opened with someone else's X25519 key must never pass as that device's.
        if new_state.peer_identity != record.identity:
            raise VerifyError(f"the session with {address} device {device} belongs to another identity key")
        expected_dh = record.identity_dh if new_state.mode.uses_classical else None
        if new_state.peer_identity_dh != expected_dh:
            raise VerifyError(f"the session with {address} device {device} uses another X25519 identity key")
        sent = None
        if before is not None:  # the current session: did the peer just answer one of our chains?
            known = cert_refs.load_sent(self._state, address, device)
            sent = cert_refs.after_receive(known, before, new_state)
            sent = None if sent == known else sent
        return Decrypted(
            plaintext=plaintext, _address=address, _device=device, _record=new_state.to_bytes(), _state=new_state,
            _used_prekeys=used, _previous=previous, _certificate=certificate, _sent=sent,
        )  # fmt: skip

    def commit(self, decrypted: Decrypted) -> None:
        with self._state.transaction():
            self._state.save_session(decrypted._address, decrypted._device, decrypted._record)
            if decrypted._previous is not None:
                self._state.save_previous_sessions(decrypted._address, decrypted._device, list(decrypted._previous))
            for kind, key_id in decrypted._used_prekeys:
                if self._state.prekey_is_one_time(kind, key_id):
                    self._state.delete_prekey(kind, key_id)
            if decrypted._certificate is not None:
                ref = certificate_ref(decrypted._certificate)
                cert_refs.hold(self._state, decrypted._address, decrypted._device, decrypted._certificate, ref)
            if decrypted._sent is not None:
                self._state.put(cert_refs.sent_key(decrypted._address, decrypted._device), decrypted._sent.to_bytes())
        self._cache.remember(decrypted._address, decrypted._device, decrypted._record, decrypted._state)

    def _prekey_secret(self, kind: str, key_id: int) -> PrekeySecret | None:
        raw = self._state.prekey(kind, key_id)
        return PrekeySecret.from_bytes(raw) if raw is not None else None

