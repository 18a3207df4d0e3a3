"""Kind ``passive-client``: join by the case's Welcome (with its ratchet tree when the Welcome
carries none, and its external PSKs), check the epoch authenticator, then for each epoch process
its proposals and its commit through ``Group`` (sonet.core.mls.group), merge, and check that
epoch's authenticator. The case's private keys must be those of its KeyPackage."""

from __future__ import annotations

from typing import Any

from ..crypto import cipher_suite
from ..framing import MLSMessage, WireFormat
from ..group import Group, QueuedProposal, StagedCommit
from ..key_package import KeyPackage
from .expect import VectorMismatch, expect_equal, hex_field

__all__ = ["check"]

def check(case: dict[str, Any]) -> None:
    cs = cipher_suite(case["cipher_suite"])
    message = MLSMessage.from_bytes(hex_field(case, "key_package"))
    if not isinstance(message.body, KeyPackage):
        raise VectorMismatch(f"key_package: an MLSMessage of wire format {message.wire_format.name.lower()}")
    key_package = message.body
    signature_priv = hex_field(case, "signature_priv")
    # suite 5's P-521 keys come without their leading zero bytes: rfc9180 reads those too
    encryption_priv = hex_field(case, "encryption_priv")
    init_priv = hex_field(case, "init_priv")
    expect_equal("signature key", cs.signature_public_key(signature_priv), key_package.leaf_node.signature_key)
    expect_equal("encryption key", cs.hpke_private_key(encryption_priv).public.raw, key_package.leaf_node.encryption_key)
    expect_equal("init key", cs.hpke_private_key(init_priv).public.raw, key_package.init_key)
    psks = {bytes.fromhex(p["psk_id"]): bytes.fromhex(p["psk"]) for p in case["external_psks"]}
    tree = case.get("ratchet_tree")
    welcome = MLSMessage.from_bytes(hex_field(case, "welcome"))
    if welcome.wire_format is not WireFormat.WELCOME:
        raise VectorMismatch(f"welcome: an MLSMessage of wire format {welcome.wire_format.name.lower()}")
    group = Group.join(
        cs, welcome, key_package, init_priv=init_priv, encryption_priv=encryption_priv, signature_priv=signature_priv,
        ratchet_tree=bytes.fromhex(tree) if tree is not None else None, external_psks=psks,
    )  # fmt: skip
    expect_equal("initial epoch authenticator", group.epoch_authenticator, hex_field(case, "initial_epoch_authenticator"))
    for number, epoch in enumerate(case["epochs"], start=1):
        for proposal in epoch["proposals"]:
            if not isinstance(group.process(bytes.fromhex(proposal)), QueuedProposal):
                raise VectorMismatch(f"epoch {number}: a message of the proposals is not a proposal")
        staged = group.process(hex_field(epoch, "commit"))
        if not isinstance(staged, StagedCommit):
            raise VectorMismatch(f"epoch {number}: the commit is not a commit")
        group.merge(staged)
        expect_equal(f"epoch {number}: epoch authenticator", group.epoch_authenticator, hex_field(epoch, "epoch_authenticator"))
