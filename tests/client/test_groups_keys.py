"""This device's MLS identity and KeyPackages (client/groups/keys.py) and the checks of others'
KeyPackages against their device records (client/groups/members.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sonet.client.groups import keys
from sonet.client.groups.keys import LOW, SUITE, TARGET, OwnKeyPackage, maintain_key_packages, new_key_package, signature_key
from sonet.client.groups.members import _check
from sonet.client.state import DeviceState, Profile
from sonet.core.client_api import KeyPackagesPublished, PublishKeyPackages
from sonet.core.crypto import CryptoMode, HpkePrivateKey, SigningKey
from sonet.core.errors import ProtocolError
from sonet.core.groups.credential import SUITE_ID, leaf_member
from sonet.core.mls.framing import MLSMessage
from sonet.core.mls.key_package import KeyPackage
from sonet.core.wire import Frame

NOW = 1_800_000_000_000
ALICE = "alice@alpha.example"


@pytest.fixture
def device(tmp_path: Path) -> Iterator[tuple[DeviceState, Profile]]:
    state = DeviceState(tmp_path / "alice")
    mode = CryptoMode.CLASSICAL
    profile = Profile(
        address=ALICE, device_id=3, node_url="wss://x", node_fingerprint="f", mode=mode, identity=SigningKey.generate(mode, os.urandom),
        identity_dh=None, hpke=HpkePrivateKey.generate(mode, os.urandom), account_key=SigningKey.generate(mode, os.urandom),
    )  # fmt: skip
    state.save_profile(profile)
    yield state, profile
    state.close()


def decoded(message: bytes) -> KeyPackage:
    body = MLSMessage.from_bytes(message).body
    assert isinstance(body, KeyPackage)
    return body


def test_the_signature_key_is_made_once_and_kept_sealed(device: tuple[DeviceState, Profile]) -> None:
    state, _profile = device
    key = signature_key(state, os.urandom)
    assert signature_key(state, os.urandom) == key
    (sealed,) = state._db.execute("SELECT value FROM kv WHERE key = 'mls_signature_key'").fetchone()
    assert key not in sealed


def test_a_key_package_carries_the_devices_credential_and_its_keys_are_kept(device: tuple[DeviceState, Profile]) -> None:
    state, profile = device
    kp = decoded(new_key_package(state, profile, os.urandom, NOW))
    assert kp.cipher_suite == SUITE_ID and kp.verify_signature(SUITE)
    credential = leaf_member(kp.leaf_node)
    assert (credential.account, credential.device, credential.fingerprint) == (ALICE, 3, profile.identity.public.fingerprint)
    assert kp.leaf_node.signature_key == SUITE.signature_public_key(signature_key(state, os.urandom))
    assert kp.leaf_node.lifetime is not None and kp.leaf_node.lifetime.not_before < NOW // 1000 < kp.leaf_node.lifetime.not_after
    found = state.key_package_secret(kp.ref(SUITE))
    assert found is not None and not found[1]
    own = OwnKeyPackage.from_bytes(found[0])
    assert own.key_package == kp and SUITE.hpke_private_key(own.init_priv).public.raw == kp.init_key
    _check(kp, ALICE, 3, profile.identity.public.to_bytes(), profile.identity.public.fingerprint)


@pytest.mark.parametrize(
    "what, expected",
    [
        ("other account", "its credential names device 3 of alice@alpha.example"),
        ("other device", "its credential names device 3"),
        ("other identity", "names another identity key than the device's record"),
        ("tampered", "its signature does not verify"),
        ("other suite", "cipher suite 0x0001"),
    ],
)
def test_a_key_package_that_is_not_the_devices_is_refused(device: tuple[DeviceState, Profile], what: str, expected: str) -> None:
    state, profile = device
    kp = decoded(new_key_package(state, profile, os.urandom, NOW))
    account, number, identity = ALICE, 3, profile.identity.public
    if what == "other account":
        account = "mallory@alpha.example"
    elif what == "other device":
        number = 4
    elif what == "other identity":
        identity = SigningKey.generate(CryptoMode.CLASSICAL, os.urandom).public
    elif what == "tampered":
        kp = KeyPackage(kp.cipher_suite, kp.init_key[:-1] + bytes([kp.init_key[-1] ^ 1]), kp.leaf_node, kp.extensions, kp.signature)
    elif what == "other suite":
        kp = KeyPackage(1, kp.init_key, kp.leaf_node, kp.extensions, kp.signature)
    with pytest.raises(ProtocolError, match=expected):
        _check(kp, account, number, identity.to_bytes(), identity.fingerprint)


class FakeNode:
    """Answers PublishKeyPackages as a node would, holding the one-time ones."""

    def __init__(self) -> None:
        self.held = 0
        self.uploads: list[PublishKeyPackages] = []

    async def request(self, build: Callable[[int], Frame]) -> Frame:
        frame = build(1)
        assert isinstance(frame, PublishKeyPackages)
        self.uploads.append(frame)
        self.held += len(frame.key_packages)
        return KeyPackagesPublished(request=1, left=self.held)


async def test_key_packages_are_published_topped_up_and_checked_now_and_then(device: tuple[DeviceState, Profile]) -> None:
    state, profile = device
    node = FakeNode()
    conn = node  # only request() is used
    assert await maintain_key_packages(conn, state, profile, os.urandom, NOW) is not None  # type: ignore[arg-type]
    [first] = node.uploads
    assert len(first.key_packages) == TARGET and first.last_resort is not None
    last_resort = decoded(first.last_resort).ref(SUITE)
    assert state.key_package_secret(last_resort) is not None and state.key_package_secret(last_resort)[1]  # type: ignore[index]
    assert await maintain_key_packages(conn, state, profile, os.urandom, NOW + 1000) is None  # type: ignore[arg-type]
    node.held = LOW - 1  # others took some
    assert await maintain_key_packages(conn, state, profile, os.urandom, NOW + 2000) is None  # type: ignore[arg-type]  # not asked yet
    later = NOW + keys.CHECK_MS
    await maintain_key_packages(conn, state, profile, os.urandom, later)  # type: ignore[arg-type]
    check, top_up = node.uploads[1:]
    assert check.key_packages == () and check.last_resort is None
    assert len(top_up.key_packages) == TARGET - (LOW - 1) and node.held == TARGET
    # a month on: a new last-resort KeyPackage replaces the old one here too
    await maintain_key_packages(conn, state, profile, os.urandom, NOW + keys.LAST_RESORT_MS)  # type: ignore[arg-type]
    assert node.uploads[-1].last_resort is not None and state.key_package_secret(last_resort) is None
