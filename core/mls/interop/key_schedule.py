"""Kind ``key-schedule``: the GroupContext and every secret of each epoch in turn, from the
previous epoch's init_secret, the commit_secret and the psk_secret; the epoch's external_pub
and one MLS-Exporter output (its label is the UTF-8 of the vector's string, its context hex)."""

from __future__ import annotations

from typing import Any

from ..crypto import cipher_suite
from ..key_schedule import GroupContext, derive_epoch_secrets, external_key_pair, mls_exporter
from .expect import expect_equal, hex_field

__all__ = ["check", "EPOCH_FIELDS"]

#: the EpochSecrets fields the vectors give, under the same names
EPOCH_FIELDS = (
    "joiner_secret",
    "welcome_secret",
    "init_secret",
    "sender_data_secret",
    "encryption_secret",
    "exporter_secret",
    "epoch_authenticator",
    "external_secret",
    "confirmation_key",
    "membership_key",
    "resumption_psk",
)


def check(case: dict[str, Any]) -> None:
    cs = cipher_suite(case["cipher_suite"])
    group_id = hex_field(case, "group_id")
    init_secret = hex_field(case, "initial_init_secret")
    for epoch, e in enumerate(case["epochs"]):
        context = GroupContext(
            cipher_suite=case["cipher_suite"],
            group_id=group_id,
            epoch=epoch,
            tree_hash=hex_field(e, "tree_hash"),
            confirmed_transcript_hash=hex_field(e, "confirmed_transcript_hash"),
        )
        encoded = context.to_bytes()
        expect_equal(f"epoch {epoch} group_context", encoded, hex_field(e, "group_context"))
        expect_equal(f"epoch {epoch} group_context decoded", GroupContext.from_bytes(encoded), context)
        secrets = derive_epoch_secrets(
            cs, init_secret, hex_field(e, "commit_secret"), hex_field(e, "psk_secret"), context
        )
        for name in EPOCH_FIELDS:
            expect_equal(f"epoch {epoch} {name}", getattr(secrets, name), hex_field(e, name))
        _, external_pub = external_key_pair(cs, secrets.external_secret)
        expect_equal(f"epoch {epoch} external_pub", external_pub, hex_field(e, "external_pub"))
        exporter = e["exporter"]
        exported = mls_exporter(
            cs, secrets.exporter_secret, exporter["label"].encode(), hex_field(exporter, "context"), exporter["length"]
        )
        expect_equal(f"epoch {epoch} exporter secret", exported, hex_field(exporter, "secret"))
        init_secret = secrets.init_secret
