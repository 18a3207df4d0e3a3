"""A removed account's last key-directory leaf (its tombstone: empty identity key and device
list) is "unknown_account" on the device, whoever hands it out, not a key to decode: a node
refuses lookups of it (tests/node/test_admin_cli.py), and a device given one anyway by an
older node or a peer says so in one line instead of "malformed CBOR"."""

from __future__ import annotations

import pytest

from sonet.client.connection import NodeError
from sonet.client.directory import verify_account
from sonet.core.crypto import CryptoPolicy


def test_a_tombstone_is_an_unknown_account() -> None:
    with pytest.raises(NodeError) as refused:
        verify_account("dave@beta.example", b"", b"", [], CryptoPolicy())
    assert refused.value.code == "unknown_account"
    assert str(refused.value) == "dave@beta.example was removed from its node"
