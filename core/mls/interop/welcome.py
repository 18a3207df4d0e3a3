"""Kind ``welcome``: find the key package's entry in the Welcome, decrypt its GroupSecrets with
``init_priv`` and the GroupInfo with the welcome secret of the joiner secret (no PSKs), verify
the GroupInfo's signature with ``signer_pub``, and its confirmation tag with the confirmation
key of the epoch that joiner secret starts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import VerifyError
from ..crypto import cipher_suite
from ..framing import MLSMessage, WireFormat, verify_confirmation_tag
from ..key_package import KeyPackage
from ..key_schedule import epoch_secrets_from_joiner, welcome_secret
from ..messages import Welcome, decrypt_group_info, decrypt_group_secrets
from .expect import VectorMismatch, expect_equal, hex_field

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = ["check"]


def _body(data: bytes, wire_format: WireFormat) -> object:
    message = MLSMessage.from_bytes(data)
    if message.wire_format != wire_format:
        raise VectorMismatch(f"an MLSMessage of wire format {message.wire_format.name.lower()}, expected {wire_format.name.lower()}")
    return message.body


def check(case: dict[str, Any]) -> None:
    cs = cipher_suite(case["cipher_suite"])
    key_package = _body(hex_field(case, "key_package"), WireFormat.KEY_PACKAGE)
    welcome = _body(hex_field(case, "welcome"), WireFormat.WELCOME)
    assert isinstance(key_package, KeyPackage) and isinstance(welcome, Welcome)
    secrets = decrypt_group_secrets(cs, welcome, key_package.ref(cs), hex_field(case, "init_priv"))
    if secrets.psks:
        raise VectorMismatch("the GroupSecrets name PSKs; the kind has none")
    secret = welcome_secret(cs, secrets.joiner_secret, None)
    info = decrypt_group_info(cs, secret, welcome.encrypted_group_info)
    if not info.verify_signature(cs, hex_field(case, "signer_pub")):
        raise VerifyError("MLS: the GroupInfo signature does not verify")
    epoch = epoch_secrets_from_joiner(cs, secrets.joiner_secret, None, info.group_context)
    expect_equal("welcome secret", epoch.welcome_secret, secret)
    verify_confirmation_tag(cs, epoch.confirmation_key, info.group_context.confirmed_transcript_hash, info.confirmation_tag)
