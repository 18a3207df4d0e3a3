"""Keeping this device's prekeys on its node: initial upload, top-up, scheduled rotation.

One-time prekeys (X25519 and ML-KEM-768) are topped up to ``TARGET`` whenever the node reports
fewer than ``LOW`` left; the signed X25519 prekey and the ML-KEM last-resort prekey rotate every
``ROTATE_MS``, and their old secrets are kept for ``GRACE_MS`` so messages already in flight
still decrypt.
"""

from __future__ import annotations

from collections.abc import Callable

from sonet.core.client_api import PrekeysPublished, PublishPrekeys
from sonet.core.errors import RemoteProtocolError
from sonet.core.ratchet import MLKEM768, X25519, generate_prekey

from .connection import Connection
from .state import DeviceState, Profile

__all__ = ["maintain_prekeys", "LOW", "TARGET", "ROTATE_MS", "GRACE_MS"]

LOW = 20
TARGET = 60
ROTATE_MS = 7 * 24 * 3600 * 1000
GRACE_MS = 30 * 24 * 3600 * 1000
MLKEM = MLKEM768


def _new(state: DeviceState, profile: Profile, kind: str, rng: Callable[[int], bytes], now: int, *, one_time: bool, last_resort: bool = False) -> bytes:
    key_id = state.get_int(f"next_prekey_id/{kind}", 1)
    secret, signed = generate_prekey(profile.identity, kind, key_id, rng, last_resort=last_resort)
    with state.transaction():
        state.put_int(f"next_prekey_id/{kind}", key_id + 1)
        state.save_prekey(kind, key_id, secret.to_bytes(), created=now, one_time=one_time)
        if not one_time:
            state.put_int(f"current_prekey/{kind}", key_id)
    return signed.to_bytes()


async def maintain_prekeys(
    conn: Connection, state: DeviceState, profile: Profile, rng: Callable[[int], bytes], now: int
) -> PrekeysPublished | None:
    """Upload whatever is missing or due; None when nothing had to be done."""
    mode = profile.mode
    classical, pq = mode.uses_classical, mode.uses_pq
    rotated_at = state.get_int("prekeys_rotated_at", 0)
    rotate = now - rotated_at >= ROTATE_MS
    need_x = TARGET - conn.welcome.one_time_left if classical and conn.welcome.one_time_left < LOW else 0
    need_pq = TARGET - conn.welcome.pq_one_time_left if pq and conn.welcome.pq_one_time_left < LOW else 0
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

