"""Kind ``transcript-hashes``: the case's AuthenticatedContent is a commit whose confirmation tag
is the MAC of ``confirmed_transcript_hash_after`` under ``confirmation_key``, and updating
``interim_transcript_hash_before`` with it gives both ``*_after`` hashes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..framing import AuthenticatedContent, ContentType, next_transcript_hashes, verify_confirmation_tag
from .expect import VectorMismatch, expect_equal, hex_field

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = ["check", "check_with"]


def check(case: dict[str, Any]) -> None:
    from ..crypto import cipher_suite

    check_with(cipher_suite(case["cipher_suite"]), case)


def check_with(suite: CipherSuite, case: dict[str, Any]) -> None:
    encoded = hex_field(case, "authenticated_content")
    auth = AuthenticatedContent.from_bytes(encoded)
    expect_equal("authenticated_content re-encoded", auth.to_bytes(), encoded)
    if auth.content.content_type is not ContentType.COMMIT or auth.auth.confirmation_tag is None:
        raise VectorMismatch(f"authenticated_content holds a {auth.content.content_type.name.lower()}, not a commit")
    confirmed_after = hex_field(case, "confirmed_transcript_hash_after")
    verify_confirmation_tag(suite, hex_field(case, "confirmation_key"), confirmed_after, auth.auth.confirmation_tag)
    confirmed, interim = next_transcript_hashes(suite, hex_field(case, "interim_transcript_hash_before"), auth)
    expect_equal("confirmed_transcript_hash_after", confirmed, confirmed_after)
    expect_equal("interim_transcript_hash_after", interim, hex_field(case, "interim_transcript_hash_after"))
