"""Member credentials (core/groups/credential.py): the identity encoding round-trips and is
strict, the binding verifies with the device's identity key and signature key only."""

from __future__ import annotations

import dataclasses

import pytest

from sonet.core import canonical
from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from sonet.core.groups.credential import MemberCredential, leaf_member, make_credential, verify_binding
from sonet.core.mls.key_package import Credential

from .devices import Device


@pytest.fixture(scope="module")
def alice() -> Device:
    return Device.new("alice@alpha", 3)


def test_identity_round_trips(alice: Device) -> None:
    cred = alice.credential
    assert (cred.account, cred.device, cred.fingerprint) == ("alice@alpha", 3, alice.identity.public.fingerprint)
    assert MemberCredential.from_identity(cred.to_identity()) == cred
    assert canonical.loads(cred.to_identity())["v"] == 1


def test_the_binding_verifies_with_the_device_record_key_and_the_leaf_key(alice: Device) -> None:
    verify_binding(alice.credential, identity_public=alice.identity_public, signature_key=alice.signature_pub)
    assert leaf_member(alice.key_package.leaf_node) == alice.credential


def test_a_binding_to_another_signature_key_or_identity_key_is_refused(alice: Device) -> None:
    other = Device.new("mallory@beta")
    with pytest.raises(RemoteProtocolError) as exc:
        verify_binding(alice.credential, identity_public=alice.identity_public, signature_key=other.signature_pub)
    assert exc.value.code == "group_credential"
    with pytest.raises(RemoteProtocolError) as exc:  # another device's key: its fingerprint differs
        verify_binding(alice.credential, identity_public=other.identity_public, signature_key=alice.signature_pub)
    assert exc.value.code == "group_credential"
    with pytest.raises(RemoteProtocolError) as exc:
        verify_binding(alice.credential, identity_public=b"\xa0", signature_key=alice.signature_pub)
    assert exc.value.code == "group_credential"


@pytest.mark.parametrize(
    "change",
    [{"account": "bob@alpha"}, {"device": 4}, {"binding": bytes(64)}],
)
def test_a_credential_claiming_other_fields_does_not_verify(alice: Device, change: dict[str, object]) -> None:
    forged = dataclasses.replace(alice.credential, **change)  # type: ignore[arg-type]
    with pytest.raises(RemoteProtocolError) as exc:
        verify_binding(forged, identity_public=alice.identity_public, signature_key=alice.signature_pub)
    assert exc.value.code == "group_credential"


def _identity(**fields: object) -> bytes:
    base: dict[str, object] = {"v": 1, "account": "alice@alpha", "device": 1, "fingerprint": "a" * 32, "binding": bytes(64)}
    base.update(fields)
    return canonical.dumps({k: v for k, v in base.items() if v is not None})


@pytest.mark.parametrize(
    "data",
    [
        _identity(v=2),
        _identity(account="Alice@alpha"),
        _identity(account="alice"),
        _identity(device=0),
        _identity(device=2**31),
        _identity(device="1"),
        _identity(fingerprint="A" * 32),
        _identity(fingerprint="a" * 31),
        _identity(binding=b""),
        _identity(binding=bytes(5000)),
        _identity(binding=None),
        _identity(extra=1),
        _identity()[:-1],
        _identity() + b"\x00",
        b"",
        b"\xff",
    ],
)
def test_malformed_identities_are_refused_in_one_line(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        MemberCredential.from_identity(data)
    assert exc.value.code == "group_malformed" and "\n" not in str(exc.value)


def test_a_non_canonical_identity_is_refused() -> None:
    import cbor2

    data = cbor2.dumps({"v": 1, "account": "alice@alpha", "device": 1, "fingerprint": "a" * 32, "binding": bytes(64)})
    assert data != _identity()  # not sorted canonically
    with pytest.raises(RemoteProtocolError) as exc:
        MemberCredential.from_identity(data)
    assert exc.value.code == "group_malformed"


def test_leaf_member_refuses_other_credential_types(alice: Device) -> None:
    leaf = alice.key_package.leaf_node.with_changes(credential=Credential.x509((b"cert",)))
    with pytest.raises(RemoteProtocolError) as exc:
        leaf_member(leaf)
    assert exc.value.code == "group_malformed"
    basic_junk = alice.key_package.leaf_node.with_changes(credential=Credential.basic(b"alice"))
    with pytest.raises(RemoteProtocolError):
        leaf_member(basic_junk)


def test_making_a_credential_checks_its_own_fields(alice: Device) -> None:
    with pytest.raises(LocalProtocolError):  # the fingerprint of another key
        make_credential(account="alice@alpha", device=1, fingerprint="a" * 32, identity=alice.identity, signature_key=alice.signature_pub)
    with pytest.raises(LocalProtocolError):
        make_credential(
            account="not an address", device=1, fingerprint=alice.identity.public.fingerprint, identity=alice.identity,
            signature_key=alice.signature_pub,
        )  # fmt: skip
    with pytest.raises(LocalProtocolError):
        MemberCredential("alice@alpha", 0, "a" * 32, bytes(64)).to_identity()


def test_hybrid_identity_keys_bind_too() -> None:
    import random

    from sonet.core.crypto import CryptoMode, SigningKey

    identity = SigningKey.generate(CryptoMode.HYBRID, random.Random(1).randbytes)
    cred = make_credential(account="dora@gamma", device=2, fingerprint=identity.public.fingerprint, identity=identity, signature_key=b"k" * 32)
    assert MemberCredential.from_identity(cred.to_identity()) == cred
    verify_binding(cred, identity_public=identity.public.to_bytes(), signature_key=b"k" * 32)
