"""MLS message structures (core/mls/messages/, core/mls/extensions/): the encodings of the
interop vectors round-trip byte for byte, unknown extension/proposal/credential types are kept,
and malformed input (a reserved or unknown fixed-set value, a duplicate extension, trailing
bytes; random and mutated bytes, with hypothesis) is refused with DecodeError."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sonet.core.mls.codec import DecodeError, Reader, Writer, decode_all
from sonet.core.mls.extensions import (
    Capabilities,
    Extension,
    ExternalPub,
    ExternalSender,
    ExternalSenders,
    Lifetime,
    RequiredCapabilities,
    read_extensions,
    write_extensions,
)
from sonet.core.mls.key_package import Credential, CredentialType, KeyPackage, LeafNode, LeafNodeSource
from sonet.core.mls.messages import (
    Add,
    Commit,
    EncryptedGroupSecrets,
    ExternalInit,
    GroupContextExtensions,
    GroupInfo,
    GroupSecrets,
    HPKECiphertext,
    PathSecret,
    PreSharedKey,
    ProposalRef,
    ReInit,
    Remove,
    UnknownProposal,
    Update,
    UpdatePath,
    UpdatePathNode,
    Welcome,
    read_proposal,
    read_proposal_or_ref,
)
from sonet.core.mls.key_schedule.group_context import GroupContext
from sonet.core.mls.psk.psk_id import PreSharedKeyID, ResumptionPSKUsage
from sonet.core.mls.tree import decode_tree_nodes, encode_tree_nodes
from tests.vectors import load_json

WIRE_WELCOME = 3
WIRE_KEY_PACKAGE = 5


def strip_mls_message(data: bytes, wire_format: int) -> bytes:
    """The body of an MLSMessage (version mls10, then the wire format)."""
    assert data[:2] == b"\x00\x01" and int.from_bytes(data[2:4], "big") == wire_format
    return data[4:]


def leaf(source: LeafNodeSource = LeafNodeSource.UPDATE, **kw: object) -> LeafNode:
    fields: dict[str, object] = dict(
        encryption_key=b"E" * 32,
        signature_key=b"S" * 32,
        credential=Credential.basic(b"alice"),
        capabilities=Capabilities(versions=(1,), cipher_suites=(1,), extensions=(0xF0A0,), proposals=(), credentials=(1,)),
        leaf_node_source=source,
        lifetime=Lifetime(1, 2) if source == LeafNodeSource.KEY_PACKAGE else None,
        parent_hash=b"P" * 32 if source == LeafNodeSource.COMMIT else b"",
        extensions=(Extension(0xF0A0, b"x"),),
        signature=b"sig",
    )
    fields.update(kw)
    return LeafNode(**fields)  # type: ignore[arg-type]


def test_vector_proposals_round_trip() -> None:
    kinds = set()
    for case in load_json("mls/tree-operations.json"):
        data = bytes.fromhex(case["proposal"])
        proposal = decode_all(data, read_proposal)
        kinds.add(type(proposal))
        assert proposal.to_bytes() == data
    assert kinds == {Add, Update, Remove}


def test_vector_key_packages_and_welcomes_round_trip() -> None:
    for case in load_json("mls/welcome.json"):
        kp_bytes = strip_mls_message(bytes.fromhex(case["key_package"]), WIRE_KEY_PACKAGE)
        kp = KeyPackage.from_bytes(kp_bytes)
        assert kp.cipher_suite == case["cipher_suite"]
        assert kp.leaf_node.leaf_node_source == LeafNodeSource.KEY_PACKAGE
        assert kp.to_bytes() == kp_bytes
        welcome_bytes = strip_mls_message(bytes.fromhex(case["welcome"]), WIRE_WELCOME)
        welcome = Welcome.from_bytes(welcome_bytes)
        assert welcome.cipher_suite == case["cipher_suite"]
        assert welcome.to_bytes() == welcome_bytes


@pytest.mark.parametrize(
    "proposal",
    [
        Remove(7),
        Update(leaf()),
        PreSharedKey(PreSharedKeyID.external(b"id", b"n" * 32)),
        PreSharedKey(PreSharedKeyID.resumption(ResumptionPSKUsage.REINIT, b"g", 3, b"n" * 32)),
        ReInit(b"group", 1, 3, (Extension(9, b"z"),)),
        ExternalInit(b"kem"),
        GroupContextExtensions((Extension(3, RequiredCapabilities((), (), (1,)).to_bytes()),)),
        UnknownProposal(0x0A0A, b"grease content"),
    ],
)
def test_every_proposal_type_round_trips(proposal: object) -> None:
    data = proposal.to_bytes()  # type: ignore[attr-defined]
    assert decode_all(data, read_proposal) == proposal
    assert type(proposal).from_bytes(data) == proposal  # type: ignore[attr-defined]


def test_reading_a_proposal_as_the_wrong_class_is_refused() -> None:
    with pytest.raises(DecodeError, match="Add was expected"):
        Add.from_bytes(Remove(1).to_bytes())


def test_proposal_type_zero_is_refused() -> None:
    with pytest.raises(DecodeError, match="reserved"):
        decode_all(b"\x00\x00\x00", read_proposal)


def test_commit_with_proposals_by_value_and_reference_and_a_path_round_trips() -> None:
    path = UpdatePath(leaf(LeafNodeSource.COMMIT), (UpdatePathNode(b"pk", (HPKECiphertext(b"kem", b"ct"),)),))
    commit = Commit((Remove(2), ProposalRef(b"r" * 32)), path)
    assert Commit.from_bytes(commit.to_bytes()) == commit
    empty = Commit()
    assert empty.to_bytes() == b"\x00\x00"
    assert Commit.from_bytes(b"\x00\x00") == empty


def test_proposal_or_ref_with_an_unknown_tag_is_refused() -> None:
    with pytest.raises(DecodeError, match="ProposalOrRef type 3"):
        decode_all(b"\x03\x00", read_proposal_or_ref)


def test_group_secrets_welcome_and_group_info_round_trip() -> None:
    secrets = GroupSecrets(b"j" * 32, PathSecret(b"p" * 32), (PreSharedKeyID.external(b"id", b"n" * 32),))
    assert GroupSecrets.from_bytes(secrets.to_bytes()) == secrets
    assert GroupSecrets.from_bytes(GroupSecrets(b"j").to_bytes()) == GroupSecrets(b"j")
    welcome = Welcome(1, (EncryptedGroupSecrets(b"ref", HPKECiphertext(b"k", b"c")),), b"info")
    assert Welcome.from_bytes(welcome.to_bytes()) == welcome
    assert welcome.secrets_for(b"ref") == welcome.secrets[0]
    assert welcome.secrets_for(b"other") is None
    context = GroupContext(1, b"g", 4, b"t" * 32, b"c" * 32, (Extension(4, ExternalPub(b"pub").to_bytes()),))
    info = GroupInfo(context, (Extension(2, b"\x00"),), b"tag", 3, b"sig")
    assert GroupInfo.from_bytes(info.to_bytes()) == info
    with pytest.raises(DecodeError, match="trailing"):
        GroupInfo.from_bytes(info.to_bytes() + b"\x00")


def test_a_duplicate_extension_type_is_refused_and_unknown_ones_are_kept() -> None:
    w = Writer()
    write_extensions(w, [Extension(0xFFFF, b"a"), Extension(2, b"b")])
    assert read_extensions(Reader(w.bytes())) == (Extension(0xFFFF, b"a"), Extension(2, b"b"))
    w = Writer()
    write_extensions(w, [Extension(5, b"a"), Extension(5, b"b")])
    with pytest.raises(DecodeError, match="extension type 5 appears twice"):
        read_extensions(Reader(w.bytes()))


def test_credentials_of_every_kind_round_trip() -> None:
    for credential in (Credential.basic(b"bob"), Credential.x509((b"leaf-der", b"ca-der")), Credential(0xBEEF, identity=b"other")):
        assert Credential.from_bytes(credential.to_bytes()) == credential
    assert Credential.x509((b"a",)).credential_type == CredentialType.X509


def test_external_senders_round_trip() -> None:
    senders = ExternalSenders((ExternalSender(b"key", Credential.basic(b"ds")),))
    assert ExternalSenders.from_bytes(senders.to_bytes()) == senders


def test_leaf_nodes_of_every_source_round_trip() -> None:
    for source in LeafNodeSource:
        node = leaf(source)
        assert LeafNode.from_bytes(node.to_bytes()) == node


def test_a_leaf_node_source_out_of_the_fixed_set_is_refused() -> None:
    data = bytearray(leaf(LeafNodeSource.UPDATE).to_bytes())
    position = data.index(b"\x02\x04\xf0\xa0")  # source 2, then the extensions vector (4 bytes)
    data[position] = 9
    with pytest.raises(DecodeError, match="leaf node source 9"):
        LeafNode.from_bytes(bytes(data))


def test_a_key_package_of_another_protocol_version_is_refused() -> None:
    kp = KeyPackage(1, b"init", leaf(LeafNodeSource.KEY_PACKAGE), (), b"sig")
    data = kp.to_bytes()
    assert KeyPackage.from_bytes(data) == kp
    with pytest.raises(DecodeError, match="protocol version 2"):
        KeyPackage.from_bytes(b"\x00\x02" + data[2:])


def test_a_leaf_has_a_lifetime_exactly_when_it_comes_from_a_key_package() -> None:
    with pytest.raises(ValueError):
        leaf(LeafNodeSource.UPDATE, lifetime=Lifetime(0, 1))
    with pytest.raises(ValueError):
        leaf(LeafNodeSource.KEY_PACKAGE, lifetime=None)


def test_leaf_tbs_binds_group_and_index_for_update_and_commit_leaves_only() -> None:
    kp_leaf = leaf(LeafNodeSource.KEY_PACKAGE)
    assert kp_leaf.tbs() == kp_leaf.tbs(b"g", 1)
    update = leaf(LeafNodeSource.UPDATE)
    assert update.tbs(b"g", 1) != update.tbs(b"g", 2) != update.tbs(b"h", 2)
    with pytest.raises(ValueError):
        update.tbs()


def test_required_capabilities_name_what_a_member_lacks() -> None:
    caps = Capabilities(extensions=(0xF0A0,), proposals=(0x0B0B,), credentials=(1,))
    assert RequiredCapabilities((0xF0A0, 2), (0x0B0B, 1), (1,)).missing_in(caps) is None
    assert RequiredCapabilities((0xF0A1,)).missing_in(caps) == "extension type 61601"
    assert RequiredCapabilities((), (0x0C0C,)).missing_in(caps) == "proposal type 3084"
    assert RequiredCapabilities((), (), (2,)).missing_in(caps) == "credential type 2"


# hostile input: any bytes either decode to a structure that re-encodes to exactly those bytes,
# or are refused with DecodeError (never another exception)

DECODERS: dict[str, tuple[Callable[[bytes], Any], Callable[[Any], bytes]]] = {
    "KeyPackage": (KeyPackage.from_bytes, lambda v: v.to_bytes()),
    "LeafNode": (LeafNode.from_bytes, lambda v: v.to_bytes()),
    "Proposal": (lambda d: decode_all(d, read_proposal), lambda v: v.to_bytes()),
    "Commit": (Commit.from_bytes, lambda v: v.to_bytes()),
    "UpdatePath": (UpdatePath.from_bytes, lambda v: v.to_bytes()),
    "Welcome": (Welcome.from_bytes, lambda v: v.to_bytes()),
    "GroupSecrets": (GroupSecrets.from_bytes, lambda v: v.to_bytes()),
    "GroupInfo": (GroupInfo.from_bytes, lambda v: v.to_bytes()),
    "ratchet tree": (decode_tree_nodes, encode_tree_nodes),
}


def _seeds() -> list[bytes]:
    """Valid encodings to mutate: the vectors' key packages, welcomes, proposals and trees."""
    seeds = [bytes.fromhex(c["proposal"]) for c in load_json("mls/tree-operations.json")]
    seeds += [bytes.fromhex(c["tree_before"]) for c in load_json("mls/tree-operations.json")]
    case = load_json("mls/welcome.json")[0]
    seeds += [bytes.fromhex(case["key_package"])[4:], bytes.fromhex(case["welcome"])[4:]]
    return seeds


SEEDS = _seeds()


def _decodes_canonically_or_is_refused(data: bytes) -> None:
    for name, (decode, encode) in DECODERS.items():
        try:
            value = decode(data)
        except DecodeError:
            continue
        assert encode(value) == data, name


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_refused_or_round_trip(data: bytes) -> None:
    _decodes_canonically_or_is_refused(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SEEDS), st.integers(min_value=0), st.integers(min_value=0, max_value=255), st.integers(min_value=0, max_value=3))
def test_mutated_encodings_are_refused_or_round_trip(seed: bytes, where: int, value: int, how: int) -> None:
    i = where % len(seed)
    if how == 0:
        data = seed[:i] + bytes([value]) + seed[i + 1 :]
    elif how == 1:
        data = seed[:i]
    elif how == 2:
        data = seed[:i] + bytes([value]) + seed[i:]
    else:
        data = seed[:i] + seed[i + 1 :]
    _decodes_canonically_or_is_refused(data)
