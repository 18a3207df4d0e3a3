"""Kind ``psk-secret``: the psk_secret chained from 0..n external PSKs (id, nonce, value)."""

from __future__ import annotations

from typing import Any

from ..crypto import cipher_suite
from ..psk import PreSharedKeyID, psk_secret
from .expect import expect_equal, hex_field

__all__ = ["check"]


def check(case: dict[str, Any]) -> None:
    cs = cipher_suite(case["cipher_suite"])
    psks = [
        (PreSharedKeyID.external(hex_field(p, "psk_id"), hex_field(p, "psk_nonce")), hex_field(p, "psk"))
        for p in case["psks"]
    ]
    expect_equal("psk_secret", psk_secret(cs, psks), hex_field(case, "psk_secret"))
