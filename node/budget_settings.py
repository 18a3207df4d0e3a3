"""node.toml ``[budgets]``: the per-actor cost budgets and allowances, one field per key.

Each field is one key of the section: its default is today's value in the module that owns the
budget (so a node without the section behaves exactly as before), and its metadata the range
node/config.py checks it against (a whole number from low to high, or a number of the field's
type ``float`` more than low and at most high). The ``*_budget`` / ``*_rate`` properties turn
the numbers into what those modules take.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from sonet.core.cost_budget import Budget
from sonet.core.ratelimit import Rate
from sonet.federation import message_requests as mr
from sonet.federation.settings import FederationSettings

from sonet.core import limits

from . import client_limits as cl
from .cost_budget import CLIENT_BUDGET
from .group_budgets import GROUP_ALLOWANCE_FACTOR

__all__ = ["BudgetSettings", "BUDGET_KEYS"]

_BIG = 10**9
_BYTES = 1 << 40
_PEER = FederationSettings().lookup_budget
_PEER_GROUP_SUBMITS = FederationSettings().group_submit_rate


def _key(default: int | float, low: int | float, high: int | float) -> Any:
    return field(default=default, metadata={"range": (low, high)})


def _hourly(rate: Rate) -> int:
    """A bucket's hourly amount (its burst; it refills that much an hour)."""
    return int(rate.burst)


def _per_hour(amount: int) -> Rate:
    return Rate(per_second=amount / 3600, burst=amount)


def _daily(rate: Rate) -> int:
    """A message-request bucket's daily amount (its burst; it refills that much a day)."""
    return int(rate.burst)


@dataclass(frozen=True, kw_only=True)
class BudgetSettings:
    # expensive requests of one device (FetchLeaves, FetchConsistency, FetchHead, FetchDevices,
    # FetchBundles, PublishPrekeys; node/cost_budget.py): count, and bytes of their answers
    device_requests_per_second: float = _key(float(CLIENT_BUDGET.requests.per_second), 0, _BIG)
    device_requests_burst: int = _key(int(CLIENT_BUDGET.requests.burst), 1, _BIG)
    device_bytes_per_second: int = _key(int(CLIENT_BUDGET.bytes.per_second), 1, _BYTES)
    device_bytes_burst: int = _key(int(CLIENT_BUDGET.bytes.burst), 1, _BYTES)
    # lookups at other nodes that one device's requests send out (node/client_limits.py)
    device_lookups_per_second: float = _key(float(cl.LOOKUPS.per_second), 0, _BIG)
    device_lookups_burst: int = _key(int(cl.LOOKUPS.burst), 1, _BIG)
    # bytes of other nodes' attachments (BlobGet) that one device's downloads fetch (node/client_limits.py)
    device_remote_blob_bytes_per_second: int = _key(int(cl.REMOTE_BLOB_BYTES.per_second), 1, _BYTES)
    device_remote_blob_bytes_burst: int = _key(int(cl.REMOTE_BLOB_BYTES.burst), 1, _BYTES)
    # lookups of one peer node (federation/inbound.py): count, and bytes of their answers
    peer_requests_per_second: float = _key(float(_PEER.requests.per_second), 0, _BIG)
    peer_requests_burst: int = _key(int(_PEER.requests.burst), 1, _BIG)
    peer_bytes_per_second: int = _key(int(_PEER.bytes.per_second), 1, _BYTES)
    peer_bytes_burst: int = _key(int(_PEER.bytes.burst), 1, _BYTES)
    # group submissions (SUBMIT items) this node takes as a hub from one node (federation/inbound.py)
    peer_group_submits_per_second: float = _key(float(_PEER_GROUP_SUBMITS.per_second), 0, _BIG)
    peer_group_submits_burst: int = _key(int(_PEER_GROUP_SUBMITS.burst), 1, _BIG)
    # Register / LinkComplete reaching the signature checks, per source address and connection
    registrations_per_address_per_second: float = _key(float(cl.REGISTRATIONS_PER_ADDRESS.per_second), 0, _BIG)
    registrations_per_address_burst: int = _key(int(cl.REGISTRATIONS_PER_ADDRESS.burst), 1, _BIG)
    registration_checks_per_second: float = _key(float(cl.REGISTRATION_CHECKS_PER_ADDRESS.per_second), 0, _BIG)
    registration_checks_burst: int = _key(int(cl.REGISTRATION_CHECKS_PER_ADDRESS.burst), 1, _BIG)
    registrations_per_connection: int = _key(cl.REGISTRATIONS_PER_CONNECTION, 1, 1000)
    # message requests (federation/message_requests.py): a day's worth, refilled over the day
    message_requests_per_device_per_day: int = _key(_daily(mr.PER_DEVICE), 1, _BIG)
    message_request_bytes_per_device_per_day: int = _key(_daily(mr.PER_DEVICE_BYTES), 1, _BYTES)
    message_requests_per_peer_per_day: int = _key(_daily(mr.PER_PEER), 1, _BIG)
    message_request_bytes_per_peer_per_day: int = _key(_daily(mr.PER_PEER_BYTES), 1, _BYTES)
    # ... at most this many waiting for one mailbox at once (and a quarter of its quota)
    message_requests_per_mailbox: int = _key(mr.MAILBOX_BURST, 1, _BIG)
    message_request_bytes_per_mailbox: int = _key(mr.MAILBOX_BURST_BYTES, 1, _BYTES)
    # groups (node/client_limits.py, node/group_budgets.py): GroupSubmit per device and per
    # account, CreateGroup an hour per device and per account, and the group items one device
    # mailbox holds apart from its [mailbox] quota (keep them above it: docs/groups.md)
    group_submits_per_second: float = _key(float(cl.GROUP_SUBMITS.per_second), 0, _BIG)
    group_submits_burst: int = _key(int(cl.GROUP_SUBMITS.burst), 1, _BIG)
    account_group_submits_per_second: float = _key(float(cl.GROUP_SUBMITS_PER_ACCOUNT.per_second), 0, _BIG)
    account_group_submits_burst: int = _key(int(cl.GROUP_SUBMITS_PER_ACCOUNT.burst), 1, _BIG)
    group_creates_per_hour: int = _key(_hourly(cl.GROUP_CREATES), 1, _BIG)
    account_group_creates_per_hour: int = _key(_hourly(cl.GROUP_CREATES_PER_ACCOUNT), 1, _BIG)
    group_items_per_device: int = _key(GROUP_ALLOWANCE_FACTOR * limits.DEFAULT_MAILBOX_MAX_ENVELOPES, 1, _BIG)
    group_bytes_per_device: int = _key(GROUP_ALLOWANCE_FACTOR * limits.DEFAULT_MAILBOX_MAX_BYTES, 1 << 20, _BYTES)

    @property
    def device_budget(self) -> Budget:
        return Budget(
            requests=Rate(per_second=self.device_requests_per_second, burst=self.device_requests_burst),
            bytes=Rate(per_second=self.device_bytes_per_second, burst=self.device_bytes_burst),
        )

    @property
    def peer_budget(self) -> Budget:
        return Budget(
            requests=Rate(per_second=self.peer_requests_per_second, burst=self.peer_requests_burst),
            bytes=Rate(per_second=self.peer_bytes_per_second, burst=self.peer_bytes_burst),
        )

    @property
    def peer_group_submit_rate(self) -> Rate:
        return Rate(per_second=self.peer_group_submits_per_second, burst=self.peer_group_submits_burst)

    def client_limits(self) -> cl.ClientLimits:
        """The node's per-device limits, these budgets in them (the other rates: the defaults)."""
        return cl.ClientLimits(
            lookups=Rate(per_second=self.device_lookups_per_second, burst=self.device_lookups_burst),
            remote_blob_bytes=Rate(per_second=self.device_remote_blob_bytes_per_second, burst=self.device_remote_blob_bytes_burst),
            registrations_per_address=Rate(
                per_second=self.registrations_per_address_per_second, burst=self.registrations_per_address_burst
            ),
            registration_checks_per_address=Rate(
                per_second=self.registration_checks_per_second, burst=self.registration_checks_burst
            ),
            registrations_per_connection=self.registrations_per_connection,
            group_submits=Rate(per_second=self.group_submits_per_second, burst=self.group_submits_burst),
            group_submits_per_account=Rate(per_second=self.account_group_submits_per_second, burst=self.account_group_submits_burst),
            group_creates=_per_hour(self.group_creates_per_hour),
            group_creates_per_account=_per_hour(self.account_group_creates_per_hour),
        )

    @property
    def message_requests(self) -> mr.RequestCaps:
        return mr.RequestCaps(
            per_device=self.message_requests_per_device_per_day,
            per_device_bytes=self.message_request_bytes_per_device_per_day,
            per_peer=self.message_requests_per_peer_per_day,
            per_peer_bytes=self.message_request_bytes_per_peer_per_day,
            mailbox=self.message_requests_per_mailbox,
            mailbox_bytes=self.message_request_bytes_per_mailbox,
        )


#: the section's keys, in order, with their defaults and ranges
BUDGET_KEYS: tuple[tuple[str, int | float, tuple[int | float, int | float]], ...] = tuple(
    (f.name, f.default, f.metadata["range"]) for f in fields(BudgetSettings)  # type: ignore[misc]
)
