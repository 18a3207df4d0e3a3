"""docs/security.md, Limits, "Message requests per mailbox": "50,000 mailboxes and 20,000
(sender, mailbox) pairs remembered (least recently used forgotten: it starts full again)".
tests/federation/test_message_requests.py counts the allowances; nothing held the memory: how
many keys a node's tables hold, and that a forgotten key starts with a full allowance."""

from __future__ import annotations

from sonet.core.crypto import CryptoMode, SigningKey
from sonet.federation.message_requests import MessageRequests, RequestAllowance
from sonet.federation.ratelimit import Rate
from sonet.node.app import storage_quota
from sonet.node.config import NodeConfig

NEVER = 1e-9  # no refill while the test runs
BOB, CAROL = ("bob@alpha.example", 1), ("carol@alpha.example", 1)


def test_a_nodes_tables_remember_50000_mailboxes_and_20000_senders() -> None:
    config = NodeConfig.from_dict({"name": "alpha.example", "listen": "127.0.0.1:0"})
    requests = MessageRequests.for_node(
        SigningKey.generate(CryptoMode.CLASSICAL, bytes), storage_quota(config), envelope_ttl_ms=config.envelope_ttl_ms
    )
    assert {limiter.max_keys for limiter in requests._mailbox} == {50_000}
    assert {limiter.max_keys for limiter in (*requests._device, *requests._peer)} == {20_000}


def test_a_forgotten_pair_or_mailbox_starts_full_again() -> None:
    allowance = RequestAllowance(
        per_device=Rate(per_second=NEVER, burst=2),
        per_device_bytes=Rate(per_second=NEVER, burst=1000),
        per_mailbox=Rate(per_second=NEVER, burst=3),
        per_mailbox_bytes=Rate(per_second=NEVER, burst=1000),
    )
    requests = MessageRequests(secret=b"s" * 32, allowance=allowance, mailbox_keys=2, sender_keys=2)
    for _ in range(2):
        assert requests.from_device("mallory", BOB, 10, now=0) is None
    assert requests.from_device("mallory", BOB, 10, now=0) == "this device sent too many message requests to bob@alpha.example device 1"
    # two other pairs are remembered since: mallory -> bob is forgotten and starts full again
    assert requests.from_device("erin", CAROL, 10, now=0) is None
    assert requests.from_device("frank", CAROL, 10, now=0) is None
    assert requests.from_device("mallory", BOB, 10, now=0) is None
    # bob's mailbox (3) is spent now; two other mailboxes remembered since: it starts full again
    assert requests.from_device("grace", BOB, 10, now=0) == "too many message requests are waiting for bob@alpha.example device 1"
    for mailbox in (("dave@alpha.example", 1), ("zoe@alpha.example", 1)):
        assert requests.from_device("heidi", mailbox, 10, now=0) is None
    assert requests.from_device("ivan", BOB, 10, now=0) is None
