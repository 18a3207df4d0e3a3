"""LeafNode and KeyPackage validity (core/mls/key_package/, RFC 9420 §7.3, §10.1) with real
suite-1 keys: a well-made KeyPackage passes, and each broken rule is refused with its own
error; the interop vectors' KeyPackages verify."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from sonet.core.errors import VerifyError
from sonet.core.mls.crypto import cipher_suite
from sonet.core.mls.extensions import Capabilities, Extension, Lifetime, RequiredCapabilities
from sonet.core.mls.key_package import (
    Credential,
    KeyPackage,
    LeafNode,
    LeafNodeSource,
    ValidationError,
    check_key_package,
    check_leaf_node,
)
from tests import vectors

CS = cipher_suite(1)


def rng_of(seed: int):  # type: ignore[no-untyped-def]
    return random.Random(seed).randbytes


def make(seed: int = 1, **leaf_changes: object) -> tuple[KeyPackage, bytes]:
    """A signed KeyPackage of suite 1 and its signature private key."""
    sig_priv, sig_pub = CS.signature_key_pair(rng_of(seed))
    _, enc_pub = CS.hpke_key_pair(rng_of(seed + 1000))
    _, init_pub = CS.hpke_key_pair(rng_of(seed + 2000))
    fields: dict[str, object] = dict(
        encryption_key=enc_pub,
        signature_key=sig_pub,
        credential=Credential.basic(b"member %d" % seed),
        capabilities=Capabilities(cipher_suites=(1,), extensions=(0xF0A0,), credentials=(1,)),
        leaf_node_source=LeafNodeSource.KEY_PACKAGE,
        lifetime=Lifetime(100, 200),
        extensions=(Extension(0xF0A0, b"app"),),
    )
    fields.update(leaf_changes)
    leaf = LeafNode(**fields).signed(CS, sig_priv)  # type: ignore[arg-type]
    return KeyPackage(1, init_pub, leaf).signed(CS, sig_priv), sig_priv


def test_a_well_made_key_package_passes() -> None:
    kp, _ = make()
    check_key_package(CS, kp, now=150)
    assert KeyPackage.from_bytes(kp.to_bytes()) == kp
    assert len(kp.ref(CS)) == CS.nh


def test_the_vector_key_packages_verify() -> None:
    for case in vectors.load_json("mls/welcome.json"):
        cs = cipher_suite(case["cipher_suite"])
        kp = KeyPackage.from_bytes(bytes.fromhex(case["key_package"])[4:])
        check_key_package(cs, kp)


def test_a_tampered_key_package_signature_is_refused() -> None:
    kp, _ = make()
    with pytest.raises(VerifyError, match="KeyPackage signature"):
        check_key_package(CS, replace(kp, init_key=CS.hpke_key_pair(rng_of(9))[1]))


def test_a_tampered_leaf_signature_is_refused() -> None:
    kp, sig_priv = make()
    leaf = replace(kp.leaf_node, credential=Credential.basic(b"mallory"))
    with pytest.raises(VerifyError, match="leaf node signature"):
        check_key_package(CS, KeyPackage(1, kp.init_key, leaf).signed(CS, sig_priv))


def test_the_init_key_must_differ_from_the_encryption_key() -> None:
    kp, sig_priv = make()
    same = KeyPackage(1, kp.leaf_node.encryption_key, kp.leaf_node).signed(CS, sig_priv)
    with pytest.raises(ValidationError, match="init key"):
        check_key_package(CS, same)


def test_a_key_package_of_another_suite_is_refused() -> None:
    kp, _ = make()
    with pytest.raises(ValidationError, match="cipher suite 1 in a group of suite 3"):
        check_key_package(cipher_suite(3), kp)


def test_a_leaf_outside_its_lifetime_is_refused() -> None:
    kp, _ = make()
    with pytest.raises(ValidationError, match="lifetime"):
        check_key_package(CS, kp, now=201)
    check_key_package(CS, kp, now=None)  # a received tree: not checked


def test_an_extension_the_capabilities_do_not_list_is_refused() -> None:
    kp, _ = make(extensions=(Extension(0xF0A1, b""),))
    with pytest.raises(ValidationError, match="extension type 61601"):
        check_key_package(CS, kp)


def test_the_own_credential_type_must_be_listed() -> None:
    kp, _ = make(capabilities=Capabilities(cipher_suites=(1,), extensions=(0xF0A0,), credentials=(2,)))
    with pytest.raises(ValidationError, match="own credential type 1"):
        check_key_package(CS, kp)


def test_the_groups_required_capabilities_must_be_met() -> None:
    kp, _ = make()
    check_key_package(CS, kp, required=RequiredCapabilities((0xF0A0,), (), (1,)))
    with pytest.raises(ValidationError, match="required proposal type 9"):
        check_key_package(CS, kp, required=RequiredCapabilities((), (9,)))


def test_keys_must_be_unique_among_members() -> None:
    kp, _ = make(1)
    other, _ = make(2)
    check_key_package(CS, kp, others=[other.leaf_node])
    with pytest.raises(ValidationError, match="signature key"):
        check_key_package(CS, kp, others=[replace(other.leaf_node, signature_key=kp.leaf_node.signature_key)])
    with pytest.raises(ValidationError, match="encryption key"):
        check_key_package(CS, kp, others=[replace(other.leaf_node, encryption_key=kp.leaf_node.encryption_key)])


def test_credential_types_must_be_supported_both_ways() -> None:
    kp, _ = make(1)
    x509_member, _ = make(2, credential=Credential.x509((b"der",)), capabilities=Capabilities(credentials=(1, 2), extensions=(0xF0A0,)))
    with pytest.raises(ValidationError, match="credential type 2 of a member"):
        check_key_package(CS, kp, others=[x509_member.leaf_node])
    x509_only, _ = make(3, credential=Credential.x509((b"der",)), capabilities=Capabilities(credentials=(2,), extensions=(0xF0A0,)))
    both, _ = make(4, capabilities=Capabilities(credentials=(1, 2), extensions=(0xF0A0,)))
    with pytest.raises(ValidationError, match="does not support the leaf node's credential type 1"):
        check_key_package(CS, both, others=[x509_only.leaf_node])


def test_a_leaf_from_the_wrong_source_is_refused() -> None:
    kp, sig_priv = make()
    with pytest.raises(ValidationError, match="source is key_package, expected update"):
        check_leaf_node(CS, kp.leaf_node, source=LeafNodeSource.UPDATE, group_id=b"g", leaf_index=0)


def test_an_update_leaf_signed_for_another_index_is_refused() -> None:
    kp, sig_priv = make()
    update = LeafNode(
        kp.leaf_node.encryption_key,
        kp.leaf_node.signature_key,
        kp.leaf_node.credential,
        kp.leaf_node.capabilities,
        LeafNodeSource.UPDATE,
    ).signed(CS, sig_priv, b"group", 3)
    check_leaf_node(CS, update, source=LeafNodeSource.UPDATE, group_id=b"group", leaf_index=3)
    with pytest.raises(VerifyError):
        check_leaf_node(CS, update, source=LeafNodeSource.UPDATE, group_id=b"group", leaf_index=4)
    with pytest.raises(VerifyError):
        check_leaf_node(CS, update, source=LeafNodeSource.UPDATE, group_id=b"other", leaf_index=3)
