"""The ``file`` content type (core/content.py, core/attachment.py): round trip, its sync copy, and
strict refusals of malformed, oversized and forged file maps."""

from __future__ import annotations

import pytest

from sonet.core import canonical
from sonet.core.attachment import FileRef, media_type_of
from sonet.core.content import FILE, Content, decode_content, encode_content
from sonet.core.errors import LocalProtocolError, RemoteProtocolError

REF = FileRef(
    node="alpha.test", blob=b"\x01" * 16, key=b"\x02" * 32, sha256=b"\x03" * 32, sealed_sha256=b"\x04" * 32,
    size=5_000_000, media_type="application/pdf", name="report.pdf",
)  # fmt: skip
ID = b"\x09" * 16


def raw_with(**changes: object) -> bytes:
    value = {"v": 1, "type": "file", "id": ID, "sent_at": 5, "text": "", "file": {**REF.to_map(), **changes}}
    return canonical.dumps(value)


def test_round_trip_and_sync_copy() -> None:
    content = Content.make_file(id=ID, sent_at=5, file=REF, text="the report")
    decoded = decode_content(encode_content(content))
    assert decoded == content and decoded.type == FILE and decoded.file == REF
    sync = decode_content(encode_content(Content.make_sync_of(content, to="bob@alpha.test")))
    assert sync.message() == content


def test_the_key_never_shows_in_repr() -> None:
    assert "02020202" not in repr(REF) and "\\x02" not in repr(REF)


@pytest.mark.parametrize(
    "changes, why",
    [
        ({"blob": b"\x01" * 15}, "blob id"),
        ({"key": b"\x02" * 31}, "file key"),
        ({"sha256": b""}, "SHA-256"),
        ({"size": -1}, "size"),
        ({"size": 2**62}, "size"),
        ({"size": "5"}, "must be int"),
        ({"name": "../../etc/passwd"}, "directory part"),
        ({"name": "a\\b"}, "directory part"),
        ({"name": ".."}, "directory part"),
        ({"name": ""}, "file name"),
        ({"name": "x" * 256}, "file name"),
        ({"name": "evil\u202egpj.exe"}, "control or formatting"),
        ({"name": "a\nb"}, "control or formatting"),
        ({"media_type": "Text/HTML"}, "media_type"),
        ({"media_type": "nonsense"}, "media_type"),
        ({"node": "Alpha.Test"}, "normal form"),
        ({"node": "not a node"}, "file"),
        ({"extra": 1}, "exactly the fields"),
    ],
)
def test_malformed_file_maps_are_refused(changes: dict, why: str) -> None:
    with pytest.raises(RemoteProtocolError, match=why) as info:
        decode_content(raw_with(**changes))
    assert info.value.code == "content_malformed"


def test_missing_file_or_caption_and_oversized_caption_are_refused() -> None:
    for value in (
        {"v": 1, "type": "file", "id": ID, "sent_at": 5, "text": ""},
        {"v": 1, "type": "file", "id": ID, "sent_at": 5, "file": REF.to_map()},
        {"v": 1, "type": "file", "id": ID, "sent_at": 5, "text": "", "file": [1]},
        {"v": 1, "type": "file", "id": ID, "sent_at": 5, "text": "x" * 70_000, "file": REF.to_map()},
    ):
        with pytest.raises(RemoteProtocolError) as info:
            decode_content(canonical.dumps(value))
        assert info.value.code == "content_malformed"


def test_encoding_an_invalid_file_is_a_local_error() -> None:
    bad = FileRef(**{**REF.to_map(), "name": "a/b"})
    with pytest.raises(LocalProtocolError):
        encode_content(Content.make_file(id=ID, sent_at=5, file=bad))


def test_guessed_media_types_are_normalised_or_dropped() -> None:
    assert media_type_of("Image/PNG") == "image/png"
    assert media_type_of("application/vnd.openxmlformats-officedocument.wordprocessingml.document").startswith("application/vnd.")
    assert media_type_of("text/plain; charset=utf-8") == ""
    assert media_type_of("x" * 200 + "/y") == ""
