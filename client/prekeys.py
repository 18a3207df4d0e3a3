"""Keeping this device's prekeys on its node: first keys, top-up, scheduled rotation.

A new device makes its first prekeys (``first_prekeys``) before it registers or links: they
travel in the ``Register`` / ``LinkComplete`` request and the node stores them with the device;
their secrets are saved with the profile (``save_first_prekeys``) once the node answered.
One-time prekeys (X25519 and ML-KEM-768) are topped up to ``TARGET`` whenever the node reports
fewer than ``LOW`` left; the signed X25519 prekey and the ML-KEM last-resort prekey rotate every
``ROTATE_MS``, and their old secrets are kept for ``GRACE_MS`` so messages already in flight
still decrypt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sonet.core.client_api import DeviceKeys, PrekeysPublished, PublishPrekeys
from sonet.core.crypto import CryptoMode, SigningKey
from sonet.core.errors import RemoteProtocolError
from sonet.core.ratchet import MLKEM768, X25519, generate_prekey

from .connection import Connection
from .state import DeviceState, Profile

__all__ = ["maintain_prekeys", "prekeys_left", "FirstPrekeys", "first_prekeys", "save_first_prekeys", "LOW", "TARGET", "ROTATE_MS", "GRACE_MS"]

LOW = 20
TARGET = 60
ROTATE_MS = 7 * 24 * 3600 * 1000
GRACE_MS = 30 * 24 * 3600 * 1000
MLKEM = MLKEM768


def _new(state: DeviceState, profile: Profile, kind: str, rng: Callable[[int], bytes], now: int, *, one_time: bool, last_resort: bool = False) -> bytes:
    key_id = state.get_int(f"next_prekey_id/{kind}", 1)
    secret, signed = generate_prekey(profile.identity, kind, key_id, rng, last_resort=last_resort)
    _remember(state, kind, key_id, secret.to_bytes(), now, one_time=one_time)
    return signed.to_bytes()


def _remember(state: DeviceState, kind: str, key_id: int, secret: bytes, now: int, *, one_time: bool) -> None:
    with state.transaction():
        state.put_int(f"next_prekey_id/{kind}", max(key_id + 1, state.get_int(f"next_prekey_id/{kind}", 1)))
        state.save_prekey(kind, key_id, secret, created=now, one_time=one_time)
        if not one_time:
            state.put_int(f"current_prekey/{kind}", key_id)


@dataclass(frozen=True)
class FirstPrekeys:
    """A new device's first prekeys: ``keys`` for the request, ``secrets`` (kind, key id,
    secret, one-time) to keep once the node stored them."""

    keys: DeviceKeys
    secrets: tuple[tuple[str, int, bytes, bool], ...]


def first_prekeys(identity: SigningKey, mode: CryptoMode, rng: Callable[[int], bytes]) -> FirstPrekeys:
    """The signed prekey and last-resort key ``mode`` uses, and ``TARGET`` one-time keys of
    each kind it uses (what ``maintain_prekeys`` would upload first), numbered from 1. Made
    once per registration: a retry after a lost answer sends the very same keys."""
    secrets: list[tuple[str, int, bytes, bool]] = []

    def make(kind: str, key_id: int, *, one_time: bool, last_resort: bool = False) -> bytes:
        secret, signed = generate_prekey(identity, kind, key_id, rng, last_resort=last_resort)
        secrets.append((kind, key_id, secret.to_bytes(), one_time))
        return signed.to_bytes()

    classical, pq = mode.uses_classical, mode.uses_pq
    keys = DeviceKeys(
        signed_prekey=make(X25519, 1, one_time=False) if classical else None,
        pq_last_resort=make(MLKEM, 1, one_time=False, last_resort=True) if pq else None,
        one_time=tuple(make(X25519, 2 + i, one_time=True) for i in range(TARGET)) if classical else (),
        pq_one_time=tuple(make(MLKEM, 2 + i, one_time=True) for i in range(TARGET)) if pq else (),
    )
    return FirstPrekeys(keys=keys, secrets=tuple(secrets))


def save_first_prekeys(state: DeviceState, first: FirstPrekeys, now: int) -> None:
    """Keep the secrets of the first prekeys (in the caller's transaction, with the profile);
    they are fresh until ``ROTATE_MS`` from ``now``."""
    with state.transaction():
        for kind, key_id, secret, one_time in first.secrets:
            _remember(state, kind, key_id, secret, now, one_time=one_time)
        state.put_int("prekeys_rotated_at", now)


async def prekeys_left(conn: Connection) -> tuple[int, int]:
    """How many one-time prekeys (X25519, ML-KEM) the node holds for this device now: the
    Welcome's counts are those of when the connection opened."""
    reply = await conn.request(lambda n: PublishPrekeys(request=n, signed_prekey=None, pq_last_resort=None, one_time=(), pq_one_time=()))
    if not isinstance(reply, PrekeysPublished):
        raise RemoteProtocolError(f"the node answered a prekey count with {type(reply).__name__}")
    return reply.one_time_left, reply.pq_one_time_left


async def maintain_prekeys(
    conn: Connection, state: DeviceState, profile: Profile, rng: Callable[[int], bytes], now: int, *, left: tuple[int, int] | None = None
) -> PrekeysPublished | None:
    """Upload whatever is missing or due; None when nothing had to be done. ``left``: the
    one-time prekeys the node holds (``prekeys_left``); by default the Welcome's counts."""
    mode = profile.mode
    classical, pq = mode.uses_classical, mode.uses_pq
    rotated_at = state.get_int("prekeys_rotated_at", 0)
    rotate = now - rotated_at >= ROTATE_MS
    x_left, pq_left = left if left is not None else (conn.welcome.one_time_left, conn.welcome.pq_one_time_left)
    need_x = TARGET - x_left if classical and x_left < LOW else 0
    need_pq = TARGET - pq_left if pq and pq_left < LOW else 0
    if not (rotate or need_x or need_pq):
        return None
    signed = _new(state, profile, X25519, rng, now, one_time=False) if rotate and classical else None
    last_resort = _new(state, profile, MLKEM, rng, now, one_time=False, last_resort=True) if rotate and pq else None
    one_time = tuple(_new(state, profile, X25519, rng, now, one_time=True) for _ in range(need_x))
    pq_one_time = tuple(_new(state, profile, MLKEM, rng, now, one_time=True) for _ in range(need_pq))
    reply = await conn.request(
        lambda n: PublishPrekeys(request=n, signed_prekey=signed, pq_last_resort=last_resort, one_time=one_time, pq_one_time=pq_one_time)
    )
    if not isinstance(reply, PrekeysPublished):
        raise RemoteProtocolError(f"the node answered a prekey upload with {type(reply).__name__}")
    if rotate:
        state.put_int("prekeys_rotated_at", now)
        keep = {(k, state.get_int(f"current_prekey/{k}", 0)) for k in (X25519, MLKEM)}
        state.drop_signed_prekeys_before(now - GRACE_MS, keep)
    return reply

