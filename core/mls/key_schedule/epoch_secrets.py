"""The epoch key schedule of RFC 9420 §8:

    joiner_secret = ExpandWithLabel(Extract(init_secret[n-1], commit_secret), "joiner", GroupContext[n], Nh)
    member_prk    = Extract(joiner_secret, psk_secret)
    welcome_secret = DeriveSecret(member_prk, "welcome")
    epoch_secret  = ExpandWithLabel(member_prk, "epoch", GroupContext[n], Nh)
    <secret>      = DeriveSecret(epoch_secret, <label>)    (table of §8, and init_secret[n])

A member that commits or processes a commit starts from init_secret[n-1] and commit_secret
(``derive_epoch_secrets``); a new member starts from the joiner_secret of its Welcome
(``epoch_secrets_from_joiner``). The epoch_secret and the intermediate PRK are not kept: only
what the epoch uses leaves this module.

Forward secrecy inside an epoch (§9.2): three of these secrets are consumed at the start of the
epoch and MUST be deleted then. The encryption_secret once the epoch's SecretTree is made from
it (the tree's ratchets delete each message key after use; the encryption_secret would derive
them all again); the joiner_secret and welcome_secret once the Welcome is made (a member that
joined by one has used them already). ``EpochSecrets.retained()`` is what the epoch keeps
after that: hold it for the epoch, and let the EpochSecrets go.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from ...errors import LocalProtocolError, RemoteProtocolError
from .group_context import GroupContext

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = ["EpochSecrets", "RetainedEpochSecrets", "derive_epoch_secrets", "epoch_secrets_from_joiner", "joiner_secret", "welcome_secret"]


@dataclass(frozen=True, slots=True, repr=False)
class RetainedEpochSecrets:
    """What an epoch keeps for its whole life (RFC 9420 §8, §9.2): every epoch secret except the
    encryption_secret, joiner_secret and welcome_secret, which are consumed at its start."""

    sender_data_secret: bytes
    exporter_secret: bytes
    external_secret: bytes
    confirmation_key: bytes
    membership_key: bytes
    resumption_psk: bytes
    epoch_authenticator: bytes
    #: the next epoch's key schedule starts from it
    init_secret: bytes

    def __repr__(self) -> str:  # never show key material
        return "RetainedEpochSecrets(<secret>)"


@dataclass(frozen=True, slots=True, repr=False)
class EpochSecrets:
    """Every secret of one epoch (RFC 9420 §8, table "Epoch-derived secrets"), plus the
    joiner and welcome secrets a committer puts in its Welcome and the next epoch's init_secret.
    Short-lived: make the SecretTree and the Welcome, then keep only ``retained()``."""

    joiner_secret: bytes
    welcome_secret: bytes
    sender_data_secret: bytes
    encryption_secret: bytes
    exporter_secret: bytes
    external_secret: bytes
    confirmation_key: bytes
    membership_key: bytes
    resumption_psk: bytes
    epoch_authenticator: bytes
    init_secret: bytes

    def __repr__(self) -> str:  # never show key material
        return "EpochSecrets(<secret>)"

    def retained(self) -> RetainedEpochSecrets:
        """The secrets the epoch keeps once the SecretTree and the Welcome are made (§9.2)."""
        return RetainedEpochSecrets(**{f.name: getattr(self, f.name) for f in fields(RetainedEpochSecrets)})


#: (field of EpochSecrets, DeriveSecret label) of the secrets derived from epoch_secret
_EPOCH_DERIVED = (
    ("sender_data_secret", b"sender data"),
    ("encryption_secret", b"encryption"),
    ("exporter_secret", b"exporter"),
    ("external_secret", b"external"),
    ("confirmation_key", b"confirm"),
    ("membership_key", b"membership"),
    ("resumption_psk", b"resumption"),
    ("epoch_authenticator", b"authentication"),
    ("init_secret", b"init"),
)
assert {name for name, _ in _EPOCH_DERIVED} | {"joiner_secret", "welcome_secret"} == {f.name for f in fields(EpochSecrets)}
#: consumed at the start of the epoch (§9.2): the only secrets RetainedEpochSecrets leaves out
CONSUMED_EPOCH_SECRETS = frozenset({"encryption_secret", "joiner_secret", "welcome_secret"})
assert {f.name for f in fields(RetainedEpochSecrets)} == {f.name for f in fields(EpochSecrets)} - CONSUMED_EPOCH_SECRETS


def _secret(cs: CipherSuite, value: bytes | None, what: str) -> bytes:
    """``value``, or the all-zero secret RFC 9420 uses when there is none; refuses a wrong length."""
    if value is None:
        return bytes(cs.nh)
    if len(value) != cs.nh:
        raise LocalProtocolError(f"MLS: {what} of {len(value)} bytes, the suite needs {cs.nh}")
    return value


def _context(cs: CipherSuite, group_context: GroupContext) -> bytes:
    if group_context.cipher_suite != cs.id:
        raise RemoteProtocolError(f"MLS: group context of cipher suite {group_context.cipher_suite}, not {cs.id}")
    return group_context.to_bytes()


def joiner_secret(
    cs: CipherSuite, init_secret: bytes, commit_secret: bytes | None, group_context: GroupContext
) -> bytes:
    """The joiner_secret of the epoch ``group_context`` describes. ``commit_secret`` None is a
    commit without a path (all-zero commit_secret)."""
    prk = cs.extract(_secret(cs, init_secret, "init_secret"), _secret(cs, commit_secret, "commit_secret"))
    return cs.expand_with_label(prk, b"joiner", _context(cs, group_context), cs.nh)


def _member_prk(cs: CipherSuite, joiner: bytes, psk_secret: bytes | None) -> bytes:
    return cs.extract(_secret(cs, joiner, "joiner_secret"), _secret(cs, psk_secret, "psk_secret"))


def welcome_secret(cs: CipherSuite, joiner: bytes, psk_secret: bytes | None) -> bytes:
    """The welcome_secret of a joiner_secret (and the PSKs' psk_secret, None: none): what a new
    member needs to open the GroupInfo, before it knows the GroupContext inside it."""
    return cs.derive_secret(_member_prk(cs, joiner, psk_secret), b"welcome")


def epoch_secrets_from_joiner(
    cs: CipherSuite, joiner: bytes, psk_secret: bytes | None, group_context: GroupContext
) -> EpochSecrets:
    """The epoch's secrets from its joiner_secret (a new member's starting point, from the
    Welcome's GroupSecrets). ``psk_secret`` None: no PSK (all-zero psk_secret)."""
    member_prk = _member_prk(cs, joiner, psk_secret)
    epoch_secret = cs.expand_with_label(member_prk, b"epoch", _context(cs, group_context), cs.nh)
    derived = {name: cs.derive_secret(epoch_secret, label) for name, label in _EPOCH_DERIVED}
    return EpochSecrets(joiner_secret=joiner, welcome_secret=cs.derive_secret(member_prk, b"welcome"), **derived)


def derive_epoch_secrets(
    cs: CipherSuite,
    init_secret: bytes,
    commit_secret: bytes | None,
    psk_secret: bytes | None,
    group_context: GroupContext,
) -> EpochSecrets:
    """The secrets of the epoch ``group_context`` describes (its epoch number, tree hash and
    confirmed transcript hash are the new epoch's), from the previous epoch's init_secret (a
    new group: a fresh random KDF.Nh-byte value), the commit's commit_secret and the PSKs'
    psk_secret."""
    joiner = joiner_secret(cs, init_secret, commit_secret, group_context)
    return epoch_secrets_from_joiner(cs, joiner, psk_secret, group_context)
