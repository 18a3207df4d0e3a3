"""Welcoming new members (RFC 9420 §12.4.3) and joining by Welcome (§12.4.3.1).

The committer encrypts one GroupSecrets per added KeyPackage (the joiner secret, the path secret
of the lowest node it shares with the committer's path, the PSK ids) to its init key, and the
signed GroupInfo of the new epoch under the welcome key. The joiner trusts nothing it decoded:
the GroupInfo's signature by the signer's leaf, the whole tree (tree hash, leaves, parent
hashes), its own leaf in it, the path secret against the tree's public keys, and the
confirmation tag against the epoch secrets it derived are all checked before it is a member."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...errors import VerifyError
from ..extensions import Extension, ExtensionType, ExternalPub, find_extension
from ..framing import interim_transcript_hash, verify_confirmation_tag
from ..key_package import KeyPackage, ValidationError
from ..key_schedule import EpochSecrets, GroupContext, epoch_secrets_from_joiner, external_key_pair, welcome_secret
from ..messages import (
    EncryptedGroupSecrets,
    GroupInfo,
    GroupSecrets,
    PathSecret,
    Welcome,
    decrypt_group_info,
    decrypt_group_secrets,
    encrypt_group_info,
    encrypt_group_secrets,
)
from ..psk import PreSharedKeyID, PSKType, ResumptionPSKUsage, psk_secret
from ..secret_tree import SecretTree
from ..tree import RatchetTree, TreeKEMPrivate, validate_tree
from ..tree_math import common_ancestor, leaf_to_node
from .proposals import PSKLookup, required_capabilities
from .state import EpochState

if TYPE_CHECKING:
    from ...crypto.modes import Rng
    from ..crypto import CipherSuite

__all__ = ["make_group_info", "make_welcome", "join_welcome", "JoinedState", "resolve_psks", "verify_group_info"]


def resolve_psks(cs: CipherSuite, ids: Sequence[PreSharedKeyID], lookup: PSKLookup) -> bytes | None:
    """The psk_secret of ``ids`` (None: no PSK), refusing a PSK we do not have."""
    if not ids:
        return None
    pairs = []
    for psk_id in ids:
        value = lookup(psk_id)
        if value is None:
            raise ValidationError(f"the pre-shared key {psk_id!r} is unknown to this member")
        pairs.append((psk_id, value))
    return psk_secret(cs, pairs)


def make_group_info(
    cs: CipherSuite,
    *,
    context: GroupContext,
    tree: RatchetTree,
    confirmation_tag: bytes,
    signer: int,
    signature_priv: bytes,
    with_ratchet_tree: bool,
    external_secret: bytes | None = None,
) -> GroupInfo:
    """The signed GroupInfo of the epoch ``context`` (§12.4.3): with the ratchet_tree extension
    when asked, and with external_pub (the public key derived from the epoch's
    ``external_secret``, §8.3) when that is given, for joiners by external commit."""
    extensions: list[Extension] = []
    if external_secret is not None:
        extensions.append(Extension(ExtensionType.EXTERNAL_PUB, ExternalPub(external_key_pair(cs, external_secret)[1]).to_bytes()))
    if with_ratchet_tree:
        extensions.append(Extension(ExtensionType.RATCHET_TREE, tree.to_bytes()))
    return GroupInfo(context, tuple(extensions), confirmation_tag, signer).signed(cs, signature_priv)


def verify_group_info(cs: CipherSuite, info: GroupInfo, ratchet_tree: RatchetTree | None) -> RatchetTree:
    """The tree of a GroupInfo a joiner received (its ratchet_tree extension, else
    ``ratchet_tree``; both or neither is refused), once the GroupInfo's suite, its signature by
    the signer's leaf and the whole tree (§12.4.3.1: tree hash, leaves, parent hashes) check out."""
    context = info.group_context
    if context.cipher_suite != cs.id:
        raise ValidationError(f"a GroupInfo of cipher suite {context.cipher_suite}, not {cs.id}")
    carried = find_extension(info.extensions, ExtensionType.RATCHET_TREE)
    if carried is not None and ratchet_tree is not None:
        raise ValidationError("a ratchet tree was given and the GroupInfo carries one too")
    if carried is not None:
        tree = RatchetTree.from_bytes(cs, carried.extension_data)
    elif ratchet_tree is not None:
        tree = ratchet_tree.copy()
    else:
        raise ValidationError("the GroupInfo carries no ratchet tree and none was given")
    signer = tree.leaf(info.signer)
    if signer is None:
        raise ValidationError(f"the GroupInfo's signer, leaf {info.signer}, is not a member")
    if not info.verify_signature(cs, signer.signature_key):
        raise VerifyError("MLS: the GroupInfo signature does not verify")
    validate_tree(tree, context.group_id, tree_hash=context.tree_hash, required=required_capabilities(context.extensions))
    return tree


def make_welcome(
    cs: CipherSuite,
    *,
    context: GroupContext,
    tree: RatchetTree,
    secrets: EpochSecrets,
    confirmation_tag: bytes,
    signer: int,
    signature_priv: bytes,
    added: Sequence[tuple[int, KeyPackage]],
    path_secrets: dict[int, bytes],
    psks: Sequence[PreSharedKeyID],
    with_ratchet_tree: bool,
    rng: Rng,
) -> Welcome:
    """The Welcome of the members ``added`` (leaf index, KeyPackage) to the epoch ``context``;
    ``path_secrets`` node -> path secret of the committer's path (empty without a path)."""
    info = make_group_info(
        cs, context=context, tree=tree, confirmation_tag=confirmation_tag, signer=signer, signature_priv=signature_priv,
        with_ratchet_tree=with_ratchet_tree,
    )  # fmt: skip
    encrypted_info = encrypt_group_info(cs, secrets.welcome_secret, info)
    entries = []
    for leaf_index, key_package in added:
        path_secret = None
        if path_secrets:
            ancestor = common_ancestor(leaf_to_node(signer), leaf_to_node(leaf_index))
            path_secret = PathSecret(path_secrets[ancestor])
        group_secrets = GroupSecrets(secrets.joiner_secret, path_secret, tuple(psks))
        sealed = encrypt_group_secrets(cs, key_package.init_key, encrypted_info, group_secrets, rng)
        entries.append(EncryptedGroupSecrets(key_package.ref(cs), sealed))
    return Welcome(cs.id, tuple(entries), encrypted_info)


def _path_keys(cs: CipherSuite, tree: RatchetTree, me: int, signer: int, path_secret: bytes) -> dict[int, bytes]:
    """node -> path secret for the nodes of the signer's filtered direct path from the one it
    shares with us up to the root."""
    ancestor = common_ancestor(leaf_to_node(me), leaf_to_node(signer))
    nodes = [p for p, _ in tree.filtered_direct_path(signer)]
    if ancestor not in nodes:
        raise ValidationError("the Welcome's path secret is for a node that is not on the committer's path")
    out = {}
    secret = path_secret
    for p in nodes[nodes.index(ancestor) :]:
        out[p] = secret
        secret = cs.derive_secret(secret, b"path")
    return out


def _check_resumption_usage(psks: Sequence[PreSharedKeyID], usage: ResumptionPSKUsage) -> None:
    special = [p.usage for p in psks if p.psktype == PSKType.RESUMPTION and p.usage != ResumptionPSKUsage.APPLICATION]
    if len(special) > 1:
        raise ValidationError("a Welcome with more than one resumption PSK of usage reinit or branch")
    found = special[0] if special else ResumptionPSKUsage.APPLICATION
    if found == usage:
        return
    if usage is ResumptionPSKUsage.APPLICATION:
        raise ValidationError(
            f"a Welcome with a resumption PSK of usage {found.name.lower()}: join it through the old group (join_{found.name.lower()})"
        )
    raise ValidationError(f"a Welcome without the resumption PSK of usage {usage.name.lower()} a {usage.name.lower()} needs")


class JoinedState:
    """What ``join_welcome`` establishes: the epoch (with our leaf index), the GroupInfo and
    the PSK ids of the GroupSecrets."""

    def __init__(self, state: EpochState, group_info: GroupInfo, psks: tuple[PreSharedKeyID, ...]) -> None:
        self.state = state
        self.group_info = group_info
        self.psks = psks


def join_welcome(
    cs: CipherSuite,
    welcome: Welcome,
    key_package: KeyPackage,
    *,
    init_priv: bytes,
    encryption_priv: bytes,
    psk_lookup: PSKLookup,
    ratchet_tree: RatchetTree | None = None,
    usage: ResumptionPSKUsage = ResumptionPSKUsage.APPLICATION,
) -> JoinedState:
    """Join the group ``welcome`` invites ``key_package`` to (§12.4.3.1); ValidationError,
    VerifyError or DecryptError for anything that does not check out. ``usage`` reinit or
    branch: the Welcome must carry exactly one resumption PSK of that usage and start epoch 1
    (§11.2, §11.3); application: it must carry none of either."""
    if key_package.cipher_suite != cs.id:
        raise ValidationError(f"KeyPackage of cipher suite {key_package.cipher_suite}, not {cs.id}")
    group_secrets = decrypt_group_secrets(cs, welcome, key_package.ref(cs), init_priv)
    _check_resumption_usage(group_secrets.psks, usage)
    psk = resolve_psks(cs, group_secrets.psks, psk_lookup)
    secret = welcome_secret(cs, group_secrets.joiner_secret, psk)
    info = decrypt_group_info(cs, secret, welcome.encrypted_group_info)
    context = info.group_context
    if usage is not ResumptionPSKUsage.APPLICATION and context.epoch != 1:
        raise ValidationError(f"a Welcome of a {usage.name.lower()} into epoch {context.epoch}, not 1")
    tree = verify_group_info(cs, info, ratchet_tree)

    me = next((i for i, leaf in tree.leaves() if leaf == key_package.leaf_node), None)
    if me is None:
        raise ValidationError("the Welcome's tree holds no leaf of this KeyPackage")
    path_secrets: dict[int, bytes] = {}
    if group_secrets.path_secret is not None:
        path_secrets = _path_keys(cs, tree, me, info.signer, group_secrets.path_secret.path_secret)
    private = TreeKEMPrivate.from_secrets(cs, me, encryption_priv, path_secrets)
    private.check_against(tree)

    secrets = epoch_secrets_from_joiner(cs, group_secrets.joiner_secret, psk, context)
    verify_confirmation_tag(cs, secrets.confirmation_key, context.confirmed_transcript_hash, info.confirmation_tag)
    state = EpochState(
        context=context,
        tree=tree,
        secrets=secrets.retained(),
        secret_tree=SecretTree(cs, secrets.encryption_secret, tree.n_leaves),
        interim_transcript_hash=interim_transcript_hash(cs, context.confirmed_transcript_hash, info.confirmation_tag),
        private=private,
        confirmation_tag=info.confirmation_tag,
    )
    return JoinedState(state, info, group_secrets.psks)
