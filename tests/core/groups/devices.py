"""Simulated devices of Sonet accounts for the group tests: each has a device identity key (as
its device record holds it), an MLS signature key, a KeyPackage whose credential binds the two,
and its Group once it has one. ``new_group`` makes a group as a device's client does and
registers it with a HubGroup of the creator's home node."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from sonet.core.crypto import CryptoMode, SigningKey
from sonet.core.groups.credential import SUITE_ID, MemberCredential, make_credential
from sonet.core.groups.hub import HubGroup
from sonet.core.groups.items import GroupItem, ItemKind
from sonet.core.groups.state import GroupExtension, group_context_extensions, leaf_capabilities
from sonet.core.mls.crypto import CipherSuite, cipher_suite
from sonet.core.mls.extensions import Lifetime
from sonet.core.mls.framing import MLSMessage, WireFormat
from sonet.core.mls.group import Group, StagedCommit
from sonet.core.mls.key_package import Credential, KeyPackage, LeafNode, LeafNodeSource
from sonet.core.mls.messages import Add, Welcome

CS: CipherSuite = cipher_suite(SUITE_ID)
GROUP_ID = bytes(range(16))


@dataclass
class Device:
    account: str
    device: int
    rng: random.Random
    identity: SigningKey
    signature_priv: bytes
    signature_pub: bytes
    credential: MemberCredential
    key_package: KeyPackage = field(init=False)
    init_priv: bytes = field(init=False)
    encryption_priv: bytes = field(init=False)
    group: Group | None = None

    @classmethod
    def new(cls, account: str, device: int = 1, *, seed: int = 0, credential: MemberCredential | None = None) -> Device:
        rng = random.Random(f"{account}/{device}/{seed}")
        identity = SigningKey.generate(CryptoMode.CLASSICAL, rng.randbytes)
        sig_priv, sig_pub = CS.signature_key_pair(rng.randbytes)
        cred = credential or make_credential(
            account=account, device=device, fingerprint=identity.public.fingerprint, identity=identity, signature_key=sig_pub
        )
        made = cls(account, device, rng, identity, sig_priv, sig_pub, cred)
        made.fresh_key_package()
        return made

    @property
    def identity_public(self) -> bytes:
        return self.identity.public.to_bytes()

    @property
    def node(self) -> str:
        return self.account.split("@", 1)[1]

    def leaf(self, encryption_pub: bytes) -> LeafNode:
        return LeafNode(
            encryption_pub, self.signature_pub, Credential.basic(self.credential.to_identity()), leaf_capabilities(),
            LeafNodeSource.KEY_PACKAGE, Lifetime(0, 2**64 - 1),
        ).signed(CS, self.signature_priv)  # fmt: skip

    def fresh_key_package(self) -> KeyPackage:
        self.encryption_priv, enc_pub = CS.hpke_key_pair(self.rng.randbytes)
        self.init_priv, init_pub = CS.hpke_key_pair(self.rng.randbytes)
        self.key_package = KeyPackage(CS.id, init_pub, self.leaf(enc_pub)).signed(CS, self.signature_priv)
        return self.key_package

    @property
    def g(self) -> Group:
        assert self.group is not None
        return self.group

    def create(self, *, hub: str | None = None, admins: tuple[str, ...] | None = None) -> tuple[bytes, bytes]:
        """Create the group; the GroupInfo and ratchet tree for CreateGroup."""
        ext = GroupExtension(hub or self.node, admins or (self.account,))
        self.group = Group.create(
            CS, GROUP_ID, self.key_package.leaf_node, signature_priv=self.signature_priv, encryption_priv=self.encryption_priv,
            rng=self.rng.randbytes, extensions=group_context_extensions(ext),
        )  # fmt: skip
        info = self.g.group_info(with_ratchet_tree=False, external_pub=False)
        return MLSMessage(WireFormat.GROUP_INFO, info).to_bytes(), self.g.ratchet_tree_bytes()

    def join(self, welcome: bytes) -> None:
        self.group = Group.join(
            CS, MLSMessage.from_bytes(welcome), self.key_package, init_priv=self.init_priv,
            encryption_priv=self.encryption_priv, signature_priv=self.signature_priv,
        )  # fmt: skip


def submit(message: MLSMessage | bytes, *, epoch: int, welcome: Welcome | bytes | None = None, ref: int = 1) -> GroupItem:
    """A SUBMIT item as a device's home node queues it for the hub."""
    data = message if isinstance(message, bytes) else message.to_bytes()
    if isinstance(welcome, Welcome):
        welcome = MLSMessage(WireFormat.WELCOME, welcome).to_bytes()
    return GroupItem(
        kind=ItemKind.SUBMIT, ref=ref.to_bytes(16, "big"), group=GROUP_ID, epoch=epoch, seq=0, message=data,
        welcome=welcome or b"", members=(), outcome="", hub="",
    )  # fmt: skip


class Scenario:
    """A group of simulated devices and its hub, driven through the hub as the nodes would."""

    def __init__(self, creator: Device) -> None:
        self.devices: list[Device] = [creator]
        info, tree = creator.create()
        self.hub = HubGroup.create(node=creator.node, group=GROUP_ID, group_info=info, ratchet_tree=tree)
        self._refs = 0

    def ref(self) -> int:
        self._refs += 1
        return self._refs

    def members(self) -> list[Device]:
        return [d for d in self.devices if d.group is not None and d.group.active]

    def commit(self, committer: Device, **kwargs: object) -> tuple[StagedCommit, GroupItem]:
        staged, message, welcome = committer.g.commit(committer.rng.randbytes, **kwargs)  # type: ignore[arg-type]
        return staged, submit(message, epoch=committer.g.epoch, welcome=welcome, ref=self.ref())

    def apply_commit(self, committer: Device, staged: StagedCommit, item: GroupItem, joiners: list[Device] | None = None) -> None:
        """What the devices do with an ORDERED commit: the committer merges its own, the other
        members process and merge, joiners join by the Welcome."""
        for device in self.members():
            if device is committer:
                continue
            result = device.g.process(item.message)
            assert isinstance(result, StagedCommit)
            device.g.merge(result)
        committer.g.merge(staged)
        for joiner in joiners or []:
            joiner.join(item.welcome)
            self.devices.append(joiner)

    def add(self, committer: Device, *joiners: Device) -> GroupItem:
        """``committer`` adds ``joiners`` through the hub (which must take it)."""
        staged, item = self.commit(committer, proposals=[Add(j.key_package) for j in joiners])
        outcome = self.hub.order(item)
        assert outcome.code == "ok", outcome.code
        self.apply_commit(committer, staged, item, list(joiners))
        return item
