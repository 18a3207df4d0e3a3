"""Targets for what devices hand each other through the nodes: sealed-sender boxes and their
sender certificates, device lists, account identity keys, device records and provisioning
payloads.

Boxes are HPKE ciphertexts, so random bytes only ever reach the decryption; the ``-content``
targets seal their input to the recipient first, as any sender can, to fuzz what is inside.
"""

from __future__ import annotations

from sonet.core import canonical
from sonet.core.certs import SenderCertificate, certificate_node, verify_certificate
from sonet.core.crypto import CryptoMode, VerifyKey
from sonet.core.device import DeviceRecord, verify_device_record
from sonet.core.device_list import DeviceList, decode_account_identity, verify_device_list
from sonet.core.errors import RemoteProtocolError
from sonet.core.provisioning import INFO_PREFIX, Provisioning, open_provisioning, seal_provisioning
from sonet.core.padding import pad
from sonet.core.sealed_sender import OpenedSealed, Unsealed, open_sealed, seal, sealed_info, unseal

from . import material as m
from .target import Finding, Target, register

__all__: list[str] = []

_CERT_CODES = frozenset(
    {
        "certificate_malformed",
        "certificate_forged",
        "certificate_mismatch",
        "certificate_expired",
        "certificate_not_yet_valid",
        "certificate_too_long",
    }
)


def _my_fp() -> str:
    return m.device_key().public.fingerprint


def _node_keys(name: str) -> VerifyKey | None:
    return m.node_key().public if name == m.NODE else None


def _unseal(data: bytes) -> Unsealed:
    return unseal(data, my_key=m.recipient(), my_fp=_my_fp())


def _open_sealed(plaintext: bytes) -> OpenedSealed:
    box = m.recipient().public.seal(pad(plaintext), sealed_info(_my_fp()))
    return open_sealed(box, my_key=m.recipient(), my_fp=_my_fp(), node_keys=_node_keys, now=m.NOW)


def _sealed_seeds() -> list[bytes]:
    return [
        seal(certificate=m.certificate(), message=msg, msg_type=t, to_key=m.recipient().public, recipient_fp=_my_fp())
        for msg, t in [(b"ratchet message", 1), (b"", 0)]
    ]


def _inner_seeds() -> list[bytes]:
    return [canonical.dumps({"v": 1, "cert": m.certificate(), "msg": b"ratchet message", "type": 2})]


def _certificate(data: bytes) -> SenderCertificate:
    certificate_node(data)  # what a device reads first, to find the key to verify with
    return verify_certificate(data, node_key=m.node_key().public, node=m.NODE, now=m.NOW)


def _device_list(data: bytes) -> DeviceList:
    listed = verify_device_list(data, account_key=m.account_key().public, account=m.ACCOUNT)
    if list(listed.devices) != sorted(set(listed.devices)):
        raise Finding("a verified device list is not sorted and unique")
    return listed


def _identity(data: bytes) -> VerifyKey:
    key = decode_account_identity(data, policy=m.POLICY)
    if key.to_bytes() != data:
        raise Finding("an identity key decoded from bytes that are not its encoding")
    return key


def _record(data: bytes) -> DeviceRecord:
    return verify_device_record(data, policy=m.POLICY, account=m.ACCOUNT)


def _open_provisioning(data: bytes) -> Provisioning:
    return open_provisioning(data, key=m.link_key(), slot=m.SLOT)


def _open_provisioning_plaintext(plaintext: bytes) -> Provisioning:
    box = m.link_key().public.seal(plaintext, INFO_PREFIX + m.SLOT)
    return _open_provisioning(box)


def _provisioning() -> Provisioning:
    return Provisioning(
        account=m.ACCOUNT,
        account_key=m.account_key().private_bytes(),
        node_url="ws://127.0.0.1:7480",
        node_fingerprint=m.node_key().public.fingerprint,
        device_list_version=1,
    )


def _provisioning_plaintext() -> bytes:
    p = _provisioning()
    return canonical.dumps(
        {
            "v": 1,
            "account": p.account,
            "account_key": p.account_key,
            "node_url": p.node_url,
            "node_fingerprint": p.node_fingerprint,
            "device_list_version": p.device_list_version,
        }
    )


_PROVISIONING_CODES = frozenset({"provisioning_malformed", "decrypt_failed"})

for target in [
    Target(
        name="sealed-box",
        summary="core/sealed_sender unseal: an envelope body as the recipient device opens it",
        decode=_unseal,
        errors=(RemoteProtocolError,),
        returns=Unsealed,
        seeds=_sealed_seeds,
    ),
    Target(
        name="sealed-content",
        summary="core/sealed_sender open_sealed: the plaintext of a box sealed to the device",
        decode=_open_sealed,
        errors=(RemoteProtocolError,),
        returns=OpenedSealed,
        seeds=_inner_seeds,
        codec="cbor",
    ),
    Target(
        name="certificate",
        summary="core/certs certificate_node and verify_certificate: a sender certificate",
        decode=_certificate,
        errors=(RemoteProtocolError,),
        codes=_CERT_CODES,
        returns=SenderCertificate,
        seeds=lambda: [m.certificate()],
        codec="cbor",
    ),
    Target(
        name="device-list",
        summary="core/device_list verify_device_list: an account's signed device list",
        decode=_device_list,
        errors=(RemoteProtocolError,),
        codes=frozenset({"device_list_malformed", "device_list_forged", "device_list_mismatch"}),
        returns=DeviceList,
        seeds=lambda: [m.device_list()],
        codec="cbor",
    ),
    Target(
        name="identity-key",
        summary="core/device_list decode_account_identity: a public identity key",
        decode=_identity,
        errors=(RemoteProtocolError,),
        returns=VerifyKey,
        seeds=lambda: [m.account_key().public.to_bytes(), m.signing_key("pq", CryptoMode.PQ).public.to_bytes()],
        codec="cbor",
    ),
    Target(
        name="device-record",
        summary="core/device verify_device_record: a device's self-signed record (Register)",
        decode=_record,
        errors=(RemoteProtocolError,),
        returns=DeviceRecord,
        seeds=lambda: [m.device_record()],
        codec="cbor",
    ),
    Target(
        name="provisioning-box",
        summary="core/provisioning open_provisioning: a LinkOffer payload as the new device opens it",
        decode=_open_provisioning,
        errors=(RemoteProtocolError,),
        codes=_PROVISIONING_CODES,
        returns=Provisioning,
        seeds=lambda: [seal_provisioning(_provisioning(), to=m.link_key().public, slot=m.SLOT)],
    ),
    Target(
        name="provisioning-content",
        summary="core/provisioning open_provisioning: the plaintext of a payload sealed to the new device",
        decode=_open_provisioning_plaintext,
        errors=(RemoteProtocolError,),
        codes=_PROVISIONING_CODES,
        returns=Provisioning,
        seeds=lambda: [_provisioning_plaintext()],
        codec="cbor",
    ),
]:
    register(target)
