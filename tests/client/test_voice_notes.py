"""Voice notes (client/attachments.py, core/attachment.py ``voice_ms``): a file message that
carries its length, 1:1 and in a group, shown as such by recv and history (text and --json);
``sonet send --file PATH --voice SECONDS``; a length out of range or --voice without --file is
refused before anything is uploaded; a forged length in a received file map is refused."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sonet.client.cli_groups import group_message_json, group_message_line
from sonet.client.sdk import Device
from sonet.core import canonical
from sonet.core.attachment import MAX_VOICE_MS, FileRef
from sonet.core.content import Content, decode_content, encode_content
from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from sonet.node.blobs import BLOBS_DIR
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, CAROL, run_cli

pytestmark = pytest.mark.usefixtures("few_prekeys")

Register = Callable[..., Awaitable[Device]]
REF = FileRef(
    node="alpha.test", blob=b"\x01" * 16, key=b"\x02" * 32, sha256=b"\x03" * 32, sealed_sha256=b"\x04" * 32,
    size=40_000, media_type="audio/ogg", name="memo.ogg", voice_ms=12_500,
)  # fmt: skip


def test_a_voice_note_round_trips_and_a_plain_file_has_no_length() -> None:
    content = Content.make_file(id=b"\x09" * 16, sent_at=5, file=REF)
    decoded = decode_content(encode_content(content))
    assert decoded.file == REF and decoded.file is not None and decoded.file.voice_ms == 12_500
    assert "voice_ms=12500" in repr(REF) and "0202" not in repr(REF)
    plain = FileRef(**{**REF.to_map(), "voice_ms": None})
    assert "voice_ms" not in plain.to_map()
    assert decode_content(encode_content(Content.make_file(id=b"\x09" * 16, sent_at=5, file=plain))).file == plain


@pytest.mark.parametrize("length", [0, -1, MAX_VOICE_MS + 1, "12", 1.5, True, None])
def test_a_forged_voice_length_is_refused(length: object) -> None:
    raw = canonical.dumps({"v": 1, "type": "file", "id": b"\x09" * 16, "sent_at": 5, "text": "", "file": {**REF.to_map(), "voice_ms": length}})
    with pytest.raises(RemoteProtocolError) as info:
        decode_content(raw)
    assert info.value.code == "content_malformed"
    with pytest.raises(LocalProtocolError):
        FileRef.from_map({**REF.to_map(), "voice_ms": length}, remote=False)


async def test_cli_voice_note_shows_as_such(alpha: RunningNode, register: Register, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    path = tmp_path / "memo.ogg"
    data = os.urandom(20_000)
    path.write_bytes(data)
    rc, [sent] = await run_cli(capsys, alice, "send", BOB, "--file", str(path), "--voice", "12.5", "listen")
    assert rc == 0 and (sent["type"], sent["name"], sent["voice_ms"]) == ("file", "memo.ogg", 12_500)
    rc, got = await run_cli(capsys, bob, "recv")
    (note,) = [m for m in got if m["id"] == sent["id"]]
    assert (note["type"], note["name"], note["voice_ms"], note["media_type"], note["text"]) == ("file", "memo.ogg", 12_500, "audio/ogg", "listen")
    rc, history = await run_cli(capsys, bob, "history", ALICE)
    assert [(h["type"], h["voice_ms"]) for h in history] == [("file", 12_500)]
    rc, lines = await run_cli(capsys, bob, "history", ALICE, json_out=False)
    assert "voice note 'memo.ogg' (0:13, 19.5 KiB): listen" in lines[0], lines
    out = tmp_path / "got"
    out.mkdir()
    rc, [saved] = await run_cli(capsys, bob, "download", sent["id"], "--out", str(out))
    assert rc == 0 and Path(saved["path"]).read_bytes() == data
    # a plain file has no voice_ms
    rc, [plain] = await run_cli(capsys, alice, "send", BOB, "--file", str(path))
    assert rc == 0 and "voice_ms" not in plain
    # refusals: one line each, nothing uploaded
    before = sorted((alpha.data_dir / BLOBS_DIR).iterdir())
    for bad in ("0", "-3", "abc", "nan", str(MAX_VOICE_MS // 1000 + 1)):
        rc, [error] = await run_cli(capsys, alice, "send", BOB, "--file", str(path), "--voice", bad)
        assert rc == 2 and error["error"]["code"] == "usage" and "voice" in error["error"]["message"], (bad, error)
    rc, [error] = await run_cli(capsys, alice, "send", BOB, "hello", "--voice", "3")
    assert rc == 2 and "--voice needs --file" in error["error"]["message"]
    assert sorted((alpha.data_dir / BLOBS_DIR).iterdir()) == before


async def test_sdk_voice_note_in_a_group_and_refusals(alpha: RunningNode, register: Register, tmp_path: Path) -> None:
    alice, bob, carol = [await register(alpha, name) for name in ("alice", "bob", "carol")]
    for device in (alice, bob, carol):
        await device.receive()
    await alice.group_create("band", [BOB, CAROL])
    await bob.receive()
    path = tmp_path / "riff.m4a"
    path.write_bytes(os.urandom(9000))
    sent = await alice.group_send_file("band", path, voice_ms=3_000)
    assert sent.voice_ms == 3_000
    got = next(m for m in (await bob.receive()).group_messages if m.id == sent.id)
    assert group_message_json(got)["voice_ms"] == 3_000
    assert "sent voice note 'riff.m4a' (0:03," in group_message_line(got)
    for bad in (0, MAX_VOICE_MS + 1):
        with pytest.raises(LocalProtocolError) as info:
            await alice.send_file(BOB, path, voice_ms=bad)
        assert info.value.code == "bad_input"
