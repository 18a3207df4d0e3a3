"""DeviceState.profile(): the keys are opened and parsed once and kept while their sealed rows
stay the same bytes; any write (by this state or another process's, here another DeviceState
on the same home) is seen at the next call, and a home without an account is one clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sonet.client.state import DeviceState, Profile, StateError
from sonet.core.crypto import CryptoMode, HpkePrivateKey, SigningKey


def a_profile(**changes: object) -> Profile:
    fields: dict[str, object] = dict(
        address="ann@alpha", device_id=3, node_url="ws://127.0.0.1:1", node_fingerprint="fp", mode=CryptoMode.HYBRID,
        identity=SigningKey.generate(CryptoMode.HYBRID, os.urandom), identity_dh=os.urandom(32),
        hpke=HpkePrivateKey.generate(CryptoMode.HYBRID, os.urandom), account_key=SigningKey.generate(CryptoMode.HYBRID, os.urandom),
    )  # fmt: skip
    return Profile(**(fields | changes))  # type: ignore[arg-type]


def test_the_profile_is_parsed_once_and_follows_every_write(tmp_path: Path) -> None:
    home = tmp_path / "home"
    state = DeviceState(home)
    with pytest.raises(StateError, match="no account in"):
        state.profile()
    saved = a_profile()
    state.save_profile(saved)
    first = state.profile()
    assert state.profile() is first  # kept, not parsed again
    assert first.identity.private_bytes() == saved.identity.private_bytes()
    assert (first.address, first.device_id, first.node_url, first.identity_dh) == (saved.address, 3, saved.node_url, saved.identity_dh)

    # another process writes the same home: the next call sees it
    other = DeviceState(home)
    other.put("node_url", b"ws://127.0.0.1:2")
    moved = state.profile()
    assert moved is not first and moved.node_url == "ws://127.0.0.1:2"
    assert moved.identity.private_bytes() == saved.identity.private_bytes()

    # even a write of the very same value is a new sealed row: parsed again, same content
    other.put("node_url", b"ws://127.0.0.1:2")
    again = state.profile()
    assert again is not moved and again.node_url == moved.node_url

    # a new registration's keys replace the old ones at once
    replaced = a_profile(address="bob@alpha", device_id=9)
    other.save_profile(replaced)
    now = state.profile()
    assert (now.address, now.device_id) == ("bob@alpha", 9)
    assert now.account_key.private_bytes() == replaced.account_key.private_bytes()
    other.close()
    state.close()
