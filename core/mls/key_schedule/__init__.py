"""The epoch key schedule of RFC 9420 §8: the GroupContext, the epoch's secrets from the
previous init_secret, the commit_secret and the psk_secret (``EpochSecrets``), the exporter,
the external init key pair, and the keys derived from the sender-data and welcome secrets."""

from .epoch_secrets import (
    EpochSecrets,
    RetainedEpochSecrets,
    derive_epoch_secrets,
    epoch_secrets_from_joiner,
    joiner_secret,
    welcome_secret,
)
from .exporter import MAX_EXPORT_LENGTH, mls_exporter
from .external import external_key_pair
from .group_context import MLS10, GroupContext
from .sender_data import sender_data_key_nonce
from .welcome import welcome_key_nonce

__all__ = [
    "EpochSecrets",
    "GroupContext",
    "MAX_EXPORT_LENGTH",
    "MLS10",
    "RetainedEpochSecrets",
    "derive_epoch_secrets",
    "epoch_secrets_from_joiner",
    "external_key_pair",
    "joiner_secret",
    "welcome_secret",
    "mls_exporter",
    "sender_data_key_nonce",
    "welcome_key_nonce",
]
