"""The ``messages`` interop kind (test-vectors.md "Messages") over the file this module generates,
``tests/data/vectors/mls-generated/messages.json``, and damaged copies of its cases.

The IETF repository's messages.json is not among the repository's vectors, so the file is built
here, one case per cipher suite 1-7, from the structures inside the other IETF vector files
(welcome.json's Welcome, KeyPackage and the GroupSecrets and GroupInfo its Welcome decrypts to;
message-protection.json's Public/PrivateMessages, proposals and keys; treekem.json's ratchet
trees and UpdatePaths; psk_secret.json's PSK ids) and from objects built with our code (an
update LeafNode, a PublicMessage carrying application data, a Commit with proposals by value and
by reference and a path, signed with the vectors' keys). Everything is deterministic, so
regenerating gives the same bytes (``test_the_generated_file_is_reproducible``). To write it:

    .venv/bin/python -m tests.core.mls.test_messages_kind

then update its MANIFEST.tsv row (size and sha256).
"""

from __future__ import annotations

import copy
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sonet.core.mls.codec import DecodeError, Writer, decode_all
from sonet.core.mls.crypto import cipher_suite
from sonet.core.mls.extensions import (
    ApplicationId,
    Capabilities,
    Extension,
    ExtensionType,
    ExternalSender,
    ExternalSenders,
    RequiredCapabilities,
    write_extensions,
)
from sonet.core.mls.framing import (
    ContentType,
    FramedContent,
    MLSMessage,
    PublicMessage,
    Sender,
    WireFormat,
    membership_tag,
    sign_content,
)
from sonet.core.mls.interop import load_check, run_cases
from sonet.core.mls.interop.expect import VectorMismatch
from sonet.core.mls.interop.messages import FIELDS, PROPOSAL_FIELDS, check, reencode
from sonet.core.mls.key_package import Credential, KeyPackage, LeafNode, LeafNodeSource
from sonet.core.mls.key_schedule import GroupContext, welcome_key_nonce
from sonet.core.mls.messages import (
    Add,
    Commit,
    GroupSecrets,
    PathSecret,
    ProposalRef,
    UpdatePath,
    Welcome,
    read_proposal,
)
from sonet.core.mls.psk import PreSharedKeyID, ResumptionPSKUsage
from tests import vectors

GENERATED = "mls-generated/messages.json"
SUITES = range(1, 8)

# --- the generator ---------------------------------------------------------------------------


def _by_suite(name: str) -> dict[int, dict[str, Any]]:
    """The first case of each cipher suite in an IETF vector file."""
    cases: dict[int, dict[str, Any]] = {}
    for case in vectors.load_json(f"mls/{name}"):
        cases.setdefault(case["cipher_suite"], case)
    return cases


def _hex(container: Any, key: str | int) -> bytes:
    return bytes.fromhex(container[key])


def _mls_message_header(wire_format: WireFormat) -> bytes:
    w = Writer()
    w.u16(1)  # mls10
    w.u16(wire_format)
    return w.bytes()


def _without_proposal_type(proposal: bytes) -> bytes:
    """A bare proposal struct (what the vector's proposal fields hold) from an encoded Proposal."""
    return proposal[2:]


class _FromWelcome:
    """welcome.json's case of one suite: its Welcome and KeyPackage, and the GroupSecrets and
    GroupInfo the Welcome decrypts to, as the IETF generator encoded them (never re-encoded)."""

    def __init__(self, cs_id: int) -> None:
        case = _by_suite("welcome.json")[cs_id]
        cs = cipher_suite(cs_id)
        self.mls_welcome, self.mls_key_package = _hex(case, "welcome"), _hex(case, "key_package")
        welcome = MLSMessage.from_bytes(self.mls_welcome).body
        key_package = MLSMessage.from_bytes(self.mls_key_package).body
        assert isinstance(welcome, Welcome) and isinstance(key_package, KeyPackage)
        self.welcome, self.key_package = welcome, key_package
        entry = welcome.secrets_for(key_package.ref(cs))
        assert entry is not None
        sealed = entry.encrypted_group_secrets
        self.group_secrets = cs.decrypt_with_label(
            _hex(case, "init_priv"), b"Welcome", welcome.encrypted_group_info, sealed.kem_output, sealed.ciphertext
        )
        joiner_secret = GroupSecrets.from_bytes(self.group_secrets).joiner_secret
        welcome_secret = cs.derive_secret(cs.extract(joiner_secret, bytes(cs.nh)), b"welcome")
        key, nonce = welcome_key_nonce(cs, welcome_secret)
        self.group_info = cs.open(key, nonce, b"", welcome.encrypted_group_info)


def _psk_ids(cs_id: int) -> tuple[PreSharedKeyID, PreSharedKeyID]:
    """An external PSK id from psk_secret.json and a resumption one (branch) of the same suite."""
    psk = next(c for c in vectors.load_json("mls/psk_secret.json") if c["cipher_suite"] == cs_id and c["psks"])["psks"][0]
    nonce = _hex(psk, "psk_nonce")
    external = PreSharedKeyID.external(_hex(psk, "psk_id"), nonce)
    resumption = PreSharedKeyID.resumption(ResumptionPSKUsage.BRANCH, b"sonet branch of " + bytes([cs_id]), 7 + cs_id, nonce)
    return external, resumption


def _credential(cs_id: int) -> Credential:
    return Credential.basic(b"sonet messages vector, suite %d" % cs_id)


def _update_leaf(cs_id: int, key_package: KeyPackage) -> LeafNode:
    """An update LeafNode signed with message-protection.json's key of the suite, bound to its group."""
    mp = _by_suite("message-protection.json")[cs_id]
    leaf = LeafNode(
        encryption_key=key_package.leaf_node.encryption_key,
        signature_key=_hex(mp, "signature_pub"),
        credential=_credential(cs_id),
        capabilities=Capabilities(versions=(1,), cipher_suites=(cs_id, 0x0A0A), extensions=(0xFF00,), proposals=(0x1A1A,), credentials=(1, 2)),
        leaf_node_source=LeafNodeSource.UPDATE,
        extensions=(Extension(0xFF00, b"an extension of a type nobody registered"),),
    )
    return leaf.signed(cipher_suite(cs_id), _hex(mp, "signature_priv"), _hex(mp, "group_id"), 1)


def _context(mp: dict[str, Any]) -> GroupContext:
    return GroupContext(mp["cipher_suite"], _hex(mp, "group_id"), mp["epoch"], _hex(mp, "tree_hash"), _hex(mp, "confirmed_transcript_hash"))


def _public_application(cs_id: int) -> bytes:
    """An application message sent as a PublicMessage (syntactically valid, refused by the
    framing rules on receipt), signed and tagged with message-protection.json's keys."""
    mp = _by_suite("message-protection.json")[cs_id]
    cs = cipher_suite(cs_id)
    content = FramedContent(_hex(mp, "group_id"), mp["epoch"], Sender.member(1), b"aad", ContentType.APPLICATION, _hex(mp, "application"))
    auth = sign_content(cs, _hex(mp, "signature_priv"), WireFormat.PUBLIC_MESSAGE, content, _context(mp))
    tag = membership_tag(cs, _hex(mp, "membership_key"), auth, _context(mp))
    return MLSMessage(WireFormat.PUBLIC_MESSAGE, PublicMessage(content, auth.auth, tag)).to_bytes()


def _commit(cs_id: int, key_package: KeyPackage) -> bytes:
    """message-protection.json's PSK proposal by value, its proposal_pub by reference, an Add by
    value, and treekem.json's first UpdatePath of the suite."""
    mp = _by_suite("message-protection.json")[cs_id]
    cs = cipher_suite(cs_id)
    psk_proposal = Commit.from_bytes(_hex(mp, "commit")).proposals[0]
    proposal_pub = MLSMessage.from_bytes(_hex(mp, "proposal_pub")).body
    assert isinstance(proposal_pub, PublicMessage)
    ref = ProposalRef(cs.make_proposal_ref(proposal_pub.authenticated_content().to_bytes()))
    path = UpdatePath.from_bytes(_hex(_by_suite("treekem.json")[cs_id]["update_paths"][0], "update_path"))
    return Commit((psk_proposal, ref, Add(key_package)), path).to_bytes()


def _reinit(cs_id: int, group_id: bytes) -> bytes:
    """ReInit as RFC 9420 §12.1.5 writes it: group_id, version, cipher_suite, extensions."""
    w = Writer()
    w.opaque(b"reinit of " + group_id)
    w.u16(1)
    w.u16(cs_id)
    write_extensions(w, [Extension(ExtensionType.REQUIRED_CAPABILITIES, RequiredCapabilities((0xFF00,), (0x1A1A,), (1,)).to_bytes())])
    return w.bytes()


def _group_context_extensions(cs_id: int) -> bytes:
    mp = _by_suite("message-protection.json")[cs_id]
    senders = ExternalSenders((ExternalSender(_hex(mp, "signature_pub"), _credential(cs_id)),))
    w = Writer()
    write_extensions(
        w,
        [
            Extension(ExtensionType.APPLICATION_ID, ApplicationId(b"sonet").to_bytes()),
            Extension(ExtensionType.EXTERNAL_SENDERS, senders.to_bytes()),
            Extension(0xFF01, b""),
        ],
    )
    return w.bytes()


def _group_secrets(cs_id: int, from_welcome: bytes) -> bytes:
    """Suite 1: the Welcome's own GroupSecrets; the others: its joiner secret with a path secret
    (treekem.json's) and both kinds of PSK id."""
    if cs_id == 1:
        return from_welcome
    path_secret = _hex(_by_suite("treekem.json")[cs_id]["update_paths"][0]["path_secrets"], -1)
    joiner_secret = GroupSecrets.from_bytes(from_welcome).joiner_secret
    return GroupSecrets(joiner_secret, PathSecret(path_secret), _psk_ids(cs_id)).to_bytes()


def build_case(cs_id: int) -> dict[str, str]:
    mp = _by_suite("message-protection.json")[cs_id]
    w = _FromWelcome(cs_id)
    private = ("application_priv", "proposal_priv", "commit_priv")[cs_id % 3]
    external, resumption = _psk_ids(cs_id)
    fields = {
        "mls_welcome": w.mls_welcome,
        "mls_group_info": _mls_message_header(WireFormat.GROUP_INFO) + w.group_info,
        "mls_key_package": w.mls_key_package,
        "ratchet_tree": _hex(_by_suite("treekem.json")[cs_id], "ratchet_tree"),
        "group_secrets": _group_secrets(cs_id, w.group_secrets),
        "add_proposal": w.mls_key_package[4:],  # the KeyPackage after the MLSMessage header
        "update_proposal": _update_leaf(cs_id, w.key_package).to_bytes(),
        "remove_proposal": _without_proposal_type(_hex(mp, "proposal")),
        "pre_shared_key_proposal": (external if cs_id % 2 else resumption).to_bytes(),
        "re_init_proposal": _reinit(cs_id, _hex(mp, "group_id")),
        "external_init_proposal": _opaque(w.welcome.secrets[0].encrypted_group_secrets.kem_output),
        "group_context_extensions_proposal": _group_context_extensions(cs_id),
        "commit": _commit(cs_id, w.key_package),
        "public_message_application": _public_application(cs_id),
        "public_message_proposal": _hex(mp, "proposal_pub"),
        "public_message_commit": _hex(mp, "commit_pub"),
        "private_message": _hex(mp, private),
    }
    assert list(fields) == list(FIELDS)
    return {"cipher_suite": cs_id, **{k: v.hex() for k, v in fields.items()}}  # type: ignore[dict-item]


def _opaque(data: bytes) -> bytes:
    w = Writer()
    w.opaque(data)
    return w.bytes()


def build_cases() -> list[dict[str, str]]:
    return [build_case(cs_id) for cs_id in SUITES]


def render(cases: list[dict[str, str]]) -> bytes:
    return (json.dumps(cases, indent=2) + "\n").encode()


# --- the tests -------------------------------------------------------------------------------


def _cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = vectors.load_json(GENERATED)
    return cases


def test_the_generated_file_is_reproducible() -> None:
    assert vectors.path(GENERATED).read_bytes() == render(build_cases())


@pytest.mark.parametrize("field", list(FIELDS))
def test_every_field_of_every_case_encodes_again_to_its_bytes(field: str) -> None:
    for case in _cases():
        data = bytes.fromhex(case[field])
        assert reencode(field, data) == data, (case["cipher_suite"], field)


def test_the_kind_passes_the_generated_file() -> None:
    check = load_check("messages")
    assert check is globals()["check"]
    result = run_cases(check, _cases())
    if result.failures:
        raise VectorMismatch(f"{result.failed} of {len(_cases())} cases failed: {result.failures[0][1]}")
    assert result.passed == len(SUITES)


def test_the_cases_hold_what_their_names_say() -> None:
    """Not only syntax: the constructed parts are the real thing (signatures verify, the commit
    carries a path and a reference), so the file exercises what it claims to."""
    for case in _cases():
        cs = cipher_suite(case["cipher_suite"])
        mp = _by_suite("message-protection.json")[case["cipher_suite"]]
        update = LeafNode.from_bytes(bytes.fromhex(case["update_proposal"]))
        assert update.verify_signature(cs, _hex(mp, "group_id"), 1)
        commit = Commit.from_bytes(bytes.fromhex(case["commit"]))
        assert commit.path is not None and any(isinstance(p, ProposalRef) for p in commit.proposals)
        public = MLSMessage.from_bytes(bytes.fromhex(case["public_message_application"])).body
        assert isinstance(public, PublicMessage) and public.content.content_type is ContentType.APPLICATION
        group_secrets = GroupSecrets.from_bytes(bytes.fromhex(case["group_secrets"]))
        assert (group_secrets.path_secret is None) == (case["cipher_suite"] == 1)


# Damaged copies: each must make the kind fail, with the field named.


def _damaged(field: str, change: Callable[[bytes], bytes]) -> dict[str, Any]:
    case = copy.deepcopy(_cases()[0])
    case[field] = change(bytes.fromhex(case[field])).hex()
    return case


def _failures(case: dict[str, Any]) -> set[str]:
    """The failing fields of ``case``, as the kind names them ("field: why")."""
    try:
        check(case)
    except VectorMismatch as e:
        return set(str(e).split("; "))
    return set()


def _fails(case: dict[str, Any], field: str, match: str) -> None:
    """The damaged ``field`` fails, with a reason matching ``match``, and nothing else does."""
    failures = _failures(case)
    assert len(failures) == 1, failures
    (reason,) = failures
    assert reason.startswith(f"{field}") and re.search(match, reason), reason


@pytest.mark.parametrize("field", list(FIELDS))
def test_a_trailing_byte_is_refused(field: str) -> None:
    _fails(_damaged(field, lambda b: b + b"\x00"), field, "trailing bytes")


@pytest.mark.parametrize("field", list(FIELDS))
def test_a_missing_last_byte_is_refused(field: str) -> None:
    _fails(_damaged(field, lambda b: b[:-1]), field, "truncated|runs past the end|trailing")


@pytest.mark.parametrize(
    ("field", "other"),
    [
        ("mls_welcome", "mls_group_info"),
        ("mls_group_info", "mls_key_package"),
        ("mls_key_package", "private_message"),
        ("private_message", "public_message_commit"),
        ("public_message_application", "public_message_proposal"),
        ("public_message_proposal", "public_message_commit"),
        ("public_message_commit", "public_message_application"),
    ],
)
def test_a_message_of_another_wire_format_or_content_type_is_refused(field: str, other: str) -> None:
    case = copy.deepcopy(_cases()[0])
    case[field] = case[other]
    _fails(case, field, "wire format|content type")


def _set(at: int, value: int) -> Callable[[bytes], bytes]:
    return lambda b: b[:at] + bytes([value]) + b[at + 1 :]


def _varint_size(first: int) -> int:
    return 1 << (first >> 6)


def _with_trailing_blank(tree: bytes) -> bytes:
    """The ratchet_tree with a blank node appended inside its vector: not the truncated form."""
    w = Writer()
    w.opaque(decode_all(tree, lambda r: r.raw(r.varint())) + b"\x00")
    return w.bytes()


def _private_content_type(value: int) -> Callable[[bytes], bytes]:
    """The PrivateMessage's content type (after the header, group_id and epoch) set to ``value``."""

    def change(b: bytes) -> bytes:
        size = _varint_size(b[4])
        group_id_length = int.from_bytes(bytes([b[4] & 0x3F]) + b[5 : 4 + size], "big")
        return _set(4 + size + group_id_length + 8, value)(b)

    return change


@pytest.mark.parametrize(
    ("field", "change", "match"),
    [
        ("mls_welcome", _set(1, 2), "protocol version 2"),
        ("mls_key_package", _set(3, 9), "wire format 9"),
        ("mls_group_info", _set(5, 2), "protocol version 2"),  # the GroupContext's version
        ("group_secrets", lambda b: bytes([b[0] + 1]) + b[1:], "runs past the end|truncated|trailing"),  # joiner_secret length
        ("ratchet_tree", _with_trailing_blank, "ends with a blank node"),
        ("pre_shared_key_proposal", _set(0, 3), "unknown PSK type 3"),
        ("commit", lambda b: _set(_varint_size(b[0]), 3)(b), "ProposalOrRef type 3"),
        ("private_message", _private_content_type(0), "content type 0"),
        ("remove_proposal", lambda b: b + b"\x00", "trailing"),  # a Remove is 4 bytes
    ],
)
def test_one_changed_byte_is_refused(field: str, change: Callable[[bytes], bytes], match: str) -> None:
    _fails(_damaged(field, change), field, match)


def test_a_missing_field_is_refused() -> None:
    case = copy.deepcopy(_cases()[0])
    del case["commit"]
    with pytest.raises(VectorMismatch, match="has no commit"):
        check(case)


def test_a_decoder_that_loses_bytes_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison is not vacuous: an encoding that differs from the vector's fails."""
    monkeypatch.setitem(FIELDS, "commit", lambda data: data[:-1])
    _fails(copy.deepcopy(_cases()[0]), "commit", "encoded again: got")


def test_a_proposal_field_holds_the_bare_struct() -> None:
    """With the proposal type in front, the Add no longer decodes as an Add."""
    case = _cases()[0]
    assert decode_all(b"\x00\x01" + bytes.fromhex(case["add_proposal"]), read_proposal) == Add(
        KeyPackage.from_bytes(bytes.fromhex(case["add_proposal"]))
    )
    with pytest.raises(DecodeError):
        reencode("add_proposal", b"\x00\x01" + bytes.fromhex(case["add_proposal"]))
    assert set(PROPOSAL_FIELDS) < set(FIELDS)


if __name__ == "__main__":
    target = Path(vectors.VECTORS_DIR / GENERATED)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(render(build_cases()))
    print(f"wrote {target} ({target.stat().st_size} bytes); update its MANIFEST.tsv row", file=sys.stderr)
