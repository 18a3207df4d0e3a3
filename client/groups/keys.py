"""This device's MLS identity and KeyPackages (docs/groups.md, "Credentials").

The device has one Ed25519 MLS signature key for all its groups, made on first use and kept
sealed in the profile's kv (``mls_signature_key``). Every leaf of the device carries the Sonet
credential (core/groups/credential.py): the device identity key signs the binding of that
signature key to this account and device, so others check it against the account's signed
device list.

KeyPackages are published like prekeys (client/prekeys.py): ``TARGET`` one-time ones when the
node holds fewer than ``LOW``, and a last-resort one (handed out when none is left, so this
device can always be added). The node answers every upload with how many one-time ones it
holds; the device keeps that count and asks again (an empty upload) every ``CHECK_MS``, since
others take them without telling it. The private keys of each KeyPackage (init and leaf
encryption keys) are kept sealed by its KeyPackageRef, to join by the Welcome that names it; a
one-time KeyPackage's keys are deleted once it was used to join.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sonet.core import canonical
from sonet.core.client_api import KeyPackagesPublished, PublishKeyPackages
from sonet.core.groups.credential import SUITE_ID, make_credential
from sonet.core.groups.state import leaf_capabilities
from sonet.core.mls.crypto import CipherSuite, cipher_suite
from sonet.core.mls.extensions import Lifetime
from sonet.core.mls.framing import MLSMessage, WireFormat
from sonet.core.mls.key_package import Credential, KeyPackage, LeafNode, LeafNodeSource

from ..connection import Connection
from ..replies import expect_reply
from ..state import DeviceState, Profile

__all__ = [
    "SUITE",
    "LOW",
    "TARGET",
    "CHECK_MS",
    "LIFETIME_S",
    "OwnKeyPackage",
    "signature_key",
    "new_key_package",
    "own_key_package",
    "maintain_key_packages",
]

SUITE: CipherSuite = cipher_suite(SUITE_ID)
LOW = 10
TARGET = 30
#: how often the device asks the node how many one-time KeyPackages it still holds
CHECK_MS = 3600 * 1000
#: a KeyPackage is valid this long from when it was made (and from an hour before: clocks differ)
LIFETIME_S = 90 * 24 * 3600
#: a new last-resort KeyPackage replaces the old one this often
LAST_RESORT_MS = 30 * 24 * 3600 * 1000

_SIGNATURE_KEY = "mls_signature_key"


@dataclass(frozen=True, kw_only=True)
class OwnKeyPackage:
    """One of this device's KeyPackages and its private keys."""

    key_package: KeyPackage
    init_priv: bytes = field(repr=False)
    encryption_priv: bytes = field(repr=False)

    def to_bytes(self) -> bytes:
        return canonical.dumps(
            {"key_package": self.key_package.to_bytes(), "init": self.init_priv, "encryption": self.encryption_priv}
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> OwnKeyPackage:
        value = canonical.loads(data)
        return cls(key_package=KeyPackage.from_bytes(value["key_package"]), init_priv=value["init"], encryption_priv=value["encryption"])

    def message(self) -> bytes:
        """The MLSMessage that publishes it."""
        return MLSMessage(WireFormat.KEY_PACKAGE, self.key_package).to_bytes()


def signature_key(state: DeviceState, rng: Callable[[int], bytes]) -> bytes:
    """This device's MLS signature private key, made (and kept) on first use."""
    with state.transaction():
        priv = state.get(_SIGNATURE_KEY)
        if priv is None:
            priv, _public = SUITE.signature_key_pair(rng)
            state.put(_SIGNATURE_KEY, priv)
    return priv


def own_key_package(state: DeviceState, profile: Profile, rng: Callable[[int], bytes], now: int) -> OwnKeyPackage:
    """A fresh KeyPackage of this device (not kept: for a group it creates itself)."""
    priv = signature_key(state, rng)
    public = SUITE.signature_public_key(priv)
    credential = make_credential(
        account=profile.address, device=profile.device_id, fingerprint=profile.identity.public.fingerprint,
        identity=profile.identity, signature_key=public,
    )  # fmt: skip
    encryption_priv, encryption_pub = SUITE.hpke_key_pair(rng)
    init_priv, init_pub = SUITE.hpke_key_pair(rng)
    seconds = now // 1000
    leaf = LeafNode(
        encryption_pub, public, Credential.basic(credential.to_identity()), leaf_capabilities(), LeafNodeSource.KEY_PACKAGE,
        Lifetime(max(0, seconds - 3600), seconds + LIFETIME_S),
    ).signed(SUITE, priv)  # fmt: skip
    key_package = KeyPackage(SUITE.id, init_pub, leaf).signed(SUITE, priv)
    return OwnKeyPackage(key_package=key_package, init_priv=init_priv, encryption_priv=encryption_priv)


def new_key_package(state: DeviceState, profile: Profile, rng: Callable[[int], bytes], now: int, *, last_resort: bool = False) -> bytes:
    """A new KeyPackage to publish (its MLSMessage), its private keys kept by its ref."""
    own = own_key_package(state, profile, rng, now)
    ref = own.key_package.ref(SUITE)
    with state.transaction():
        state.save_key_package_secret(ref, own.to_bytes(), created=now, last_resort=last_resort)
        if last_resort:
            state.drop_last_resort_key_packages(keep=ref)
    return own.message()


async def maintain_key_packages(
    conn: Connection, state: DeviceState, profile: Profile, rng: Callable[[int], bytes], now: int
) -> KeyPackagesPublished | None:
    """Upload what is missing or due (see the module docstring); None when nothing had to be
    done. The keys are kept before they are sent: a lost answer leaves unused keys, no gap."""
    left = state.get_int("key_packages_left", -1)
    checked_at = state.get_int("key_packages_checked_at", 0)
    renew_last_resort = now - state.get_int("key_packages_last_resort_at", 0) >= LAST_RESORT_MS
    if left >= LOW and not renew_last_resort and now - checked_at < CHECK_MS:
        return None
    wanted = TARGET - max(left, 0) if left < LOW else 0
    key_packages = tuple(new_key_package(state, profile, rng, now) for _ in range(wanted))
    last_resort = new_key_package(state, profile, rng, now, last_resort=True) if renew_last_resort else None
    reply = await conn.request(lambda n: PublishKeyPackages(request=n, key_packages=key_packages, last_resort=last_resort))
    reply = expect_reply(reply, KeyPackagesPublished)
    with state.transaction():
        state.put_int("key_packages_left", reply.left)
        state.put_int("key_packages_checked_at", now)
        if last_resort is not None:
            state.put_int("key_packages_last_resort_at", now)
    if reply.left < LOW and key_packages == () and last_resort is None:
        # the check found the node running low: top up now rather than on the next connection
        return await maintain_key_packages(conn, state, profile, rng, now)
    return reply
