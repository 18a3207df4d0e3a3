"""Targets for every MLS decoder (core/mls/, RFC 9420): each reads one structure from the whole
input and must either refuse it with DecodeError (code mls_malformed) or give a value that
encodes back to exactly the input (the codec is canonical: minimal varints, fixed-set enums,
unknown extension/proposal/credential types kept as they came). An encoder that refuses what the
decoder accepted, a different re-encoding, or any other exception is a finding.

Seeds are the encodings inside the IETF interop vectors and the generated messages.json
(tests/data/vectors/, read through the checking loader), suites 1 and 2 only: every structure
appears there, and the ones of the other suites differ only in key sizes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from sonet.core.mls.codec import Writer, decode_all
from sonet.core.mls.extensions import (
    ApplicationId,
    Capabilities,
    ExternalPub,
    ExternalSenders,
    Lifetime,
    RequiredCapabilities,
    read_extensions,
    write_extensions,
)
from sonet.core.mls.framing import (
    AuthenticatedContent,
    ContentType,
    FramedContentAuthData,
    MLSMessage,
    PrivateMessage,
    PrivateMessageContent,
    PublicMessage,
    SenderData,
)
from sonet.core.mls.interop.messages import PROPOSAL_FIELDS
from sonet.core.mls.key_package import Credential, KeyPackage, LeafNode
from sonet.core.mls.key_schedule import GroupContext
from sonet.core.mls.messages import (
    Commit,
    GroupInfo,
    GroupSecrets,
    UpdatePath,
    Welcome,
    read_proposal,
)
from sonet.core.mls.psk import PreSharedKeyID
from sonet.core.mls.tree import decode_tree_nodes, encode_tree_nodes

from .target import Finding, Target, Unusable, register

__all__ = ["MLS_TARGETS", "canonical_decode"]

#: the seeds' cipher suites
_SUITES = (1, 2)
_HEADER = 4  # an MLSMessage's version and wire format, in front of its body


def canonical_decode(decode: Callable[[bytes], Any], encode: Callable[[Any], bytes], data: bytes) -> Any:
    """``decode(data)``, which must encode back to ``data``."""
    value = decode(data)
    try:
        again = encode(value)
    except LocalProtocolError as exc:
        raise Finding(f"the encoder refuses what the decoder accepted: {exc}") from None
    if again != data:
        raise Finding(f"decoded and encoded again, {data.hex()} became {again.hex()}")
    return value


# Seeds -------------------------------------------------------------------------------------


@functools.cache
def _ietf(name: str) -> list[dict[str, Any]]:
    from tests import vectors  # the checking loader; fuzz runs from the repository's top

    return [c for c in vectors.load_json(name) if c.get("cipher_suite") in _SUITES]


def _field(name: str, key: str, skip: int = 0) -> list[bytes]:
    return [bytes.fromhex(c[key])[skip:] for c in _ietf(name)]


def _messages(key: str, skip: int = 0) -> list[bytes]:
    return _field("mls-generated/messages.json", key, skip)


def _proposal_seeds() -> list[bytes]:
    seeds = _field("mls/message-protection.json", "proposal") + _field("mls/tree-operations.json", "proposal")
    for key, proposal_type in PROPOSAL_FIELDS.items():
        seeds += [int(proposal_type).to_bytes(2, "big") + body for body in _messages(key)]
    return seeds


def _private_contents() -> list[bytes]:
    """A content-type byte, then a PrivateMessageContent of that type (with zero padding)."""
    auth = FramedContentAuthData(bytes(range(64)))
    commit_auth = FramedContentAuthData(bytes(range(64)), bytes(32))
    seeds = [
        PrivateMessageContent(ContentType.APPLICATION, b"hello", auth, 3),
        *(PrivateMessageContent(ContentType.PROPOSAL, p, auth, 0) for p in _field("mls/message-protection.json", "proposal")),
        *(PrivateMessageContent(ContentType.COMMIT, c, commit_auth, 7) for c in _messages("commit")),
    ]
    return [bytes([s.content_type]) + s.to_bytes() for s in seeds]


def _private_content(data: bytes) -> PrivateMessageContent:
    if not data or data[0] not in ContentType._value2member_map_:
        raise Unusable()  # the selector is ours, not the decoder's input
    content_type = ContentType(data[0])
    value = PrivateMessageContent.from_bytes(data[1:], content_type)
    if value.to_bytes() != data[1:]:
        raise Finding(f"PrivateMessageContent {data.hex()} encodes back as {value.to_bytes().hex()}")
    return value


def _group_contexts() -> list[bytes]:
    infos = [GroupInfo.from_bytes(g) for g in _messages("mls_group_info", _HEADER)]
    extensions = decode_all(_messages("group_context_extensions_proposal")[0], read_extensions)
    return [i.group_context.to_bytes() for i in infos] + [GroupContext(1, b"group", 2**64 - 1, bytes(32), bytes(32), extensions).to_bytes()]


def _psk_ids() -> list[bytes]:
    secrets = [GroupSecrets.from_bytes(g) for g in _messages("group_secrets")]
    return [p.to_bytes() for s in secrets for p in s.psks] + _messages("pre_shared_key_proposal")


def _extension_lists() -> list[bytes]:
    w = Writer()
    write_extensions(w, [])
    return [w.bytes(), *_messages("group_context_extensions_proposal")]


#: the structures carried inside extensions and leaves, by a selector byte in front
_PAYLOADS: tuple[type[Any], ...] = (Capabilities, Lifetime, RequiredCapabilities, ExternalSenders, ExternalPub, ApplicationId, Credential)


def _payload(data: bytes) -> Any:
    if not data or data[0] >= len(_PAYLOADS):
        raise Unusable()
    cls = _PAYLOADS[data[0]]
    return canonical_decode(cls.from_bytes, lambda v: v.to_bytes(), data[1:])


def _payload_seeds() -> list[bytes]:
    leaves = [KeyPackage.from_bytes(k).leaf_node for k in _messages("mls_key_package", _HEADER)]
    gce = decode_all(_messages("group_context_extensions_proposal")[0], read_extensions)
    objects: list[Any] = [
        *(leaf.capabilities for leaf in leaves),
        *(leaf.lifetime for leaf in leaves if leaf.lifetime is not None),
        RequiredCapabilities((0xFF00, 3), (0x1A1A,), (1, 2)),
        ExternalPub(bytes(range(32))),
        *(leaf.credential for leaf in leaves),
        Credential.x509((b"cert one", b"", b"cert three")),
        Credential(0xF00D, identity=b"an unknown credential type"),
    ]
    seeds = [bytes([_PAYLOADS.index(type(o))]) + o.to_bytes() for o in objects]
    seeds += [bytes([_PAYLOADS.index(ExternalSenders if e.extension_type == 5 else ApplicationId)]) + e.extension_data for e in gce if e.extension_type in (1, 5)]
    return seeds


# Targets -----------------------------------------------------------------------------------


def _struct(name: str, cls: type[Any], summary: str, seeds: Callable[[], Iterable[bytes]]) -> Target:
    return Target(
        name=name,
        summary=summary,
        decode=functools.partial(canonical_decode, cls.from_bytes, lambda v: v.to_bytes()),
        errors=(RemoteProtocolError,),
        codes=frozenset({"mls_malformed"}),
        returns=cls,
        seeds=seeds,
    )


def _function(name: str, summary: str, decode: Callable[[bytes], Any], encode: Callable[[Any], bytes], seeds: Callable[[], Iterable[bytes]]) -> Target:
    return Target(
        name=name,
        summary=summary,
        decode=functools.partial(canonical_decode, decode, encode),
        errors=(RemoteProtocolError,),
        codes=frozenset({"mls_malformed"}),
        seeds=seeds,
    )


def _encode_extensions(extensions: Any) -> bytes:
    w = Writer()
    write_extensions(w, extensions)
    return w.bytes()


MLS_TARGETS: list[Target] = [
    _struct(
        "mls-message",
        MLSMessage,
        "core/mls/framing MLSMessage: Public/PrivateMessage, Welcome, GroupInfo, KeyPackage bodies",
        lambda: [s for k in ("mls_welcome", "mls_group_info", "mls_key_package", "public_message_application", "public_message_proposal", "public_message_commit", "private_message") for s in _messages(k)],
    ),
    _struct("mls-key-package", KeyPackage, "core/mls/key_package KeyPackage", lambda: _messages("mls_key_package", _HEADER)),
    _struct(
        "mls-leaf-node",
        LeafNode,
        "core/mls/key_package LeafNode (every source, credential, capabilities, extensions)",
        lambda: _messages("update_proposal") + [KeyPackage.from_bytes(k).leaf_node.to_bytes() for k in _messages("mls_key_package", _HEADER)],
    ),
    _function(
        "mls-ratchet-tree",
        "core/mls/tree ratchet_tree extension encoding (optional<Node> list, truncated form only)",
        decode_tree_nodes,
        encode_tree_nodes,
        lambda: _messages("ratchet_tree") + [bytes.fromhex(c["tree"]) for c in _ietf("mls/tree-validation.json")[:4]],
    ),
    _struct("mls-welcome", Welcome, "core/mls/messages Welcome", lambda: _messages("mls_welcome", _HEADER)),
    _struct("mls-group-info", GroupInfo, "core/mls/messages GroupInfo", lambda: _messages("mls_group_info", _HEADER)),
    _struct("mls-group-secrets", GroupSecrets, "core/mls/messages GroupSecrets (decrypted from a Welcome)", lambda: _messages("group_secrets")),
    _function(
        "mls-proposal",
        "core/mls/messages read_proposal: the seven proposal types and unknown ones",
        lambda data: decode_all(data, read_proposal),
        lambda v: v.to_bytes(),
        _proposal_seeds,
    ),
    _struct("mls-commit", Commit, "core/mls/messages Commit (proposals by value and by reference, UpdatePath)", lambda: _messages("commit") + _field("mls/message-protection.json", "commit")),
    _struct(
        "mls-update-path",
        UpdatePath,
        "core/mls/messages UpdatePath",
        lambda: [bytes.fromhex(p["update_path"]) for c in _ietf("mls/treekem.json")[:2] for p in c["update_paths"][:2]],
    ),
    _struct("mls-public-message", PublicMessage, "core/mls/framing PublicMessage", lambda: [s for k in ("public_message_application", "public_message_proposal", "public_message_commit") for s in _messages(k, _HEADER)]),
    _struct("mls-private-message", PrivateMessage, "core/mls/framing PrivateMessage (the encrypted envelope)", lambda: _messages("private_message", _HEADER)),
    Target(
        name="mls-private-content",
        summary="core/mls/framing PrivateMessageContent (a content-type byte, then the decrypted content)",
        decode=_private_content,
        errors=(RemoteProtocolError,),
        codes=frozenset({"mls_malformed"}),
        returns=PrivateMessageContent,
        seeds=_private_contents,
    ),
    _struct("mls-authenticated-content", AuthenticatedContent, "core/mls/framing AuthenticatedContent", lambda: _field("mls/transcript-hashes.json", "authenticated_content")),
    _struct("mls-sender-data", SenderData, "core/mls/framing SenderData (decrypted)", lambda: [SenderData(1, 2**32 - 1, b"\x00\x01\x02\x03").to_bytes()]),
    _struct("mls-group-context", GroupContext, "core/mls/key_schedule GroupContext", _group_contexts),
    _struct("mls-psk-id", PreSharedKeyID, "core/mls/psk PreSharedKeyID (external and resumption)", _psk_ids),
    _function("mls-extensions", "core/mls/extensions read_extensions (a type twice refused)", lambda data: decode_all(data, read_extensions), _encode_extensions, _extension_lists),
    Target(
        name="mls-extension-payloads",
        summary="core/mls/extensions payloads and Credential (a selector byte, then Capabilities/Lifetime/...)",
        decode=_payload,
        errors=(RemoteProtocolError,),
        codes=frozenset({"mls_malformed"}),
        seeds=_payload_seeds,
    ),
]

for _target in MLS_TARGETS:
    register(_target)
