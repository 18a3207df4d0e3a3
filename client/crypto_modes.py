"""Which crypto modes this device runs its end-to-end sessions in (ARCHITECTURE §2, docs/security.md).

- The device's **minimum** is chosen when it registers or links (by default the mode of its
  keys) and kept in its state, sealed by the vault like every other value there. It never
  changes afterwards: nothing a peer or a node sends can lower it.
- The **node's minimum** (``minimum_crypto_mode``) comes in every ``Welcome``; the device keeps
  the last one it saw. The stricter of the two is the floor for every session, sent or received.
- Which modes a device's **keys** can run: classical keys only classical, pq keys only pq, hybrid
  keys (X25519 + ML-KEM-768, Ed25519 + ML-DSA-65) all three. The peer's key mode comes from its
  signed device record, never from what its node serves next to it, so a node that strips the
  ML-KEM prekey from a hybrid device's bundle gets a refused bundle, not a classical session.
- The first message of a session names its mode; PQXDH binds that mode into the session key
  (core/ratchet/pqxdh.py), and the receiver refuses it below its floor before anything else.
"""

from __future__ import annotations

from sonet.core.crypto import CryptoMode, CryptoPolicy
from sonet.core.errors import LocalProtocolError

from .state import DeviceState

__all__ = [
    "can_run",
    "check_minimum_for_keys",
    "check_requested",
    "device_minimum",
    "key_policy",
    "note_node_minimum",
    "save_device_minimum",
    "session_floor",
]

_DEVICE_MINIMUM = "crypto_minimum"
_NODE_MINIMUM = "node_crypto_minimum"


def can_run(keys: CryptoMode, session: CryptoMode) -> bool:
    """Whether a device whose keys are of mode ``keys`` can take part in a ``session``-mode PQXDH:
    hybrid keys have both halves, classical and pq keys only their own."""
    return keys is CryptoMode.HYBRID or keys is session


def check_minimum_for_keys(keys: CryptoMode, minimum: CryptoMode) -> None:
    """A minimum above what the keys can run would leave the device unable to talk to anyone."""
    if minimum.rank > keys.rank:
        raise LocalProtocolError(f"a device with {keys.value} keys cannot require crypto mode {minimum.value}", code="crypto_mode_refused")


def save_device_minimum(state: DeviceState, minimum: CryptoMode) -> None:
    state.put(_DEVICE_MINIMUM, minimum.value.encode())


def device_minimum(state: DeviceState) -> CryptoMode:
    """This device's own minimum; devices registered before it was recorded use their key mode."""
    raw = state.get(_DEVICE_MINIMUM)
    if raw is None:
        return state.profile().mode
    return CryptoMode.parse(raw.decode(), remote=False)


def note_node_minimum(state: DeviceState, node: str, announced: str) -> CryptoMode:
    """Keep the minimum the home node announced in its Welcome (refused when it is no mode)."""
    mode = CryptoMode.parse(announced)
    value = f"{node} {mode.value}".encode()
    if state.get(_NODE_MINIMUM) != value:
        state.put(_NODE_MINIMUM, value)
    return mode


def session_floor(state: DeviceState) -> tuple[CryptoMode, str]:
    """The lowest mode a session may run in now, and whose minimum that is (for error lines)."""
    own = device_minimum(state)
    floor, whose = own, f"this device's minimum ({own.value})"
    raw = state.get(_NODE_MINIMUM)
    if raw is not None:
        node, _, value = raw.decode().partition(" ")
        theirs = CryptoMode.parse(value, remote=False)
        if theirs.rank > floor.rank:
            floor, whose = theirs, f"the minimum of {node} ({theirs.value})"
    return floor, whose


def check_requested(state: DeviceState, keys: CryptoMode, mode: CryptoMode) -> None:
    """A mode asked for (``send --crypto-mode``): at least the floor, and one these keys run."""
    floor, whose = session_floor(state)
    if mode.rank < floor.rank:
        raise LocalProtocolError(f"crypto mode {mode.value} is below {whose}", code="crypto_mode_refused")
    if not can_run(keys, mode):
        raise LocalProtocolError(f"this device has {keys.value} keys: it cannot run a {mode.value} session", code="crypto_mode_refused")


def key_policy(state: DeviceState) -> CryptoPolicy:
    """What this device accepts as the keys of nodes and of other accounts: its minimum, capped
    at hybrid (node keys are hybrid; a pq device talks to hybrid devices in pq mode)."""
    if not state.registered():
        return CryptoPolicy()
    minimum = device_minimum(state)
    return CryptoPolicy(minimum if minimum.rank <= CryptoMode.HYBRID.rank else CryptoMode.HYBRID)
