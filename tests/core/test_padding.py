"""Length padding (core.padding) and what it does to sealed boxes: texts of different lengths
in one bucket give envelope bodies of the same size; a malformed padding is refused."""

from __future__ import annotations

import pytest

from sonet.core import limits
from sonet.core.content import Content, encode_content
from sonet.core.errors import RemoteProtocolError
from sonet.core.padding import BLOCK, pad, padded_size, unpad
from sonet.core.sealed_sender import sealed_info, unseal

from .test_sealed_sender import box, certificate, raw_box, recipient


def test_padded_sizes_are_buckets_that_grow_with_the_length() -> None:
    sizes = [padded_size(n) for n in range(0, 300_000, 7)]
    assert all(s >= n for s, n in zip(sizes, range(0, 300_000, 7)))
    assert sizes == sorted(sizes)
    assert all(s % BLOCK == 0 for s in sizes)
    # Signal's 160-byte buckets for short bodies...
    assert {padded_size(n) for n in range(1, 161)} == {160}
    assert {padded_size(n) for n in range(161, 321)} == {320}
    # ...and Padmé for long ones: at most ~12 % more, and few distinct sizes
    for n in (10_000, 65_536 + 1, 200_000):
        assert n <= padded_size(n) <= n * 1.12 + BLOCK
    assert len({padded_size(n) for n in range(60_000, 70_000)}) < 12


@pytest.mark.parametrize("data", [b"", b"x", b"\x80", b"\x00\x00", b"t" * 159, b"t" * 160, bytes(range(256)) * 40])
def test_unpad_undoes_pad(data: bytes) -> None:
    padded = pad(data)
    assert len(padded) == padded_size(len(data) + 1)
    assert unpad(padded) == data


@pytest.mark.parametrize(
    "padded, why",
    [
        (b"", "no end marker"),
        (bytes(160), "no end marker"),
        (b"data" + bytes(156), "no end marker"),  # zeros but no marker
        (b"data\x80" + bytes(155) + b"\x01", "no end marker"),  # something after the zeros
        (b"data\x80" + bytes(100), "not 160"),  # short of its bucket
        (b"data\x80" + bytes(315), "not 160"),  # a bucket too far
        (b"data\x80", "not 160"),  # no padding at all
    ],
)
def test_unpad_refuses_malformed_padding(padded: bytes, why: str) -> None:
    with pytest.raises(RemoteProtocolError, match=why):
        unpad(padded)


def _text_message(text: str) -> bytes:
    # what a ratchet message of a text grows like: the content object itself (the ratchet adds
    # a fixed overhead per message)
    return encode_content(Content.make_text(id=bytes(limits.CONTENT_ID_LEN), sent_at=1, text=text))


def test_texts_of_different_lengths_in_one_bucket_give_the_same_envelope_size() -> None:
    short, longer = box(message=_text_message("hi")), box(message=_text_message("hello, how are you doing today?"))
    assert len(short) == len(longer)
    # one byte at a time: the size steps once per bucket, not once per character
    sizes = [len(box(message=_text_message("x" * n))) for n in range(0, 400)]
    assert len(set(sizes)) <= 4
    assert sizes[0] < sizes[-1]


def test_sender_addresses_of_different_lengths_give_the_same_envelope_size() -> None:
    # the certificate inside names the sender: its length must not show through the box either
    short = box(certificate=certificate(account="al@alpha.example"))
    longer = box(certificate=certificate(account="alexandra.longname@alpha.example"))
    assert len(short) == len(longer)


def test_a_box_with_malformed_padding_is_refused() -> None:
    key, fp = recipient()
    good = pad(b"\xa0")
    for plaintext in (good[:-1], good + b"\x00" * BLOCK, good[:-1] + b"\x01"):
        body = recipient()[0].public.seal(plaintext, sealed_info(fp))
        with pytest.raises(RemoteProtocolError, match="padding"):
            unseal(body, my_key=key, my_fp=fp)
    # the same bytes padded are opened (and refused only for what they hold)
    with pytest.raises(RemoteProtocolError, match="does not hold a map"):
        unseal(raw_box(b"\x01"), my_key=key, my_fp=fp)
