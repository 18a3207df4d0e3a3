"""Encrypted attachments through the SDK (issue 17 item 1; client/attachments.py): a file goes
encrypted to the node's blob store and as a ``file`` message to the recipient, 1:1 (and to the
sender's other device) and in a group; downloads check both digests and never overwrite; an
upload cut mid-way resumes from what the node holds; a tampered blob is refused with nothing
readable left; the node holds no plaintext."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from sonet.client import attachments
from sonet.client.cli_groups import group_message_json, group_message_line
from sonet.client.history import History
from sonet.client.sdk import Device
from sonet.core.blob_api import BLOB_CHUNK_BYTES
from sonet.core.errors import LocalProtocolError
from sonet.node.blobs import BLOBS_DIR
from tests.node.conftest import NodeParams, RunningNode

from .conftest import ALICE, BETA, BOB, CAROL, Clock, link_device, run_cli
from .loopback import Loopback

pytestmark = pytest.mark.usefixtures("few_prekeys")

Register = Callable[..., Awaitable[Device]]


def a_file(tmp_path: Path, name: str, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


async def refused(code: str, call: Awaitable[object]) -> None:
    with pytest.raises(LocalProtocolError) as info:
        await call
    assert info.value.code == code, info.value


def no_slice_of(data: bytes, files: dict[str, bytes]) -> None:
    """No 64-byte slice of ``data`` (sampled every 64 KiB) in any of ``files``."""
    for start in range(0, max(1, len(data) - 64), 64 * 1024):
        piece = data[start : start + 64]
        assert not any(piece in content for content in files.values()), start


async def test_one_to_one_file_round_trip(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], tmp_path: Path
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    alice2 = make_device("alice2")
    await link_device(alice2, alice, alpha.url)
    await alice.receive()
    path, data = a_file(tmp_path, "holiday photos.tar", 3 * BLOB_CHUNK_BYTES + 999)
    seen: list[tuple[int, int]] = []
    sent = await alice.send_file(BOB, path, "the photos", progress=lambda done, total: seen.append((done, total)))
    assert (sent.name, sent.size, sent.sha256, sent.state, sent.is_group) == (path.name, len(data), hashlib.sha256(data).digest(), "accepted", False)
    assert seen[-1][0] == seen[-1][1] > len(data)  # ciphertext: the plaintext and a tag per 64 KiB
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)

    result = await bob.receive()
    got = next(m for m in result.messages if m.id == sent.id)
    assert got.type == "file" and got.fields["text"] == "the photos" and got.fields["file"]["name"] == path.name
    out = tmp_path / "bob"
    out.mkdir()
    saved = Path(await bob.download(sent.id, out))
    assert saved == out / path.name and saved.read_bytes() == data
    again = Path(await bob.download(sent.id, out))  # never overwrites
    assert again == out / "holiday photos (1).tar" and again.read_bytes() == data
    assert sorted(p.name for p in out.iterdir()) == ["holiday photos (1).tar", "holiday photos.tar"]  # no leftovers

    # alice's other device got the sync copy and can download it too; history shows the file
    await alice2.receive()
    out2 = tmp_path / "alice2"
    out2.mkdir()
    assert Path(await alice2.download(sent.id, out2)).read_bytes() == data
    for device, peer in ((bob, ALICE), (alice, BOB), (alice2, BOB)):
        item = next(i for i in History(device.state).messages(peer) if i.id == sent.id)
        assert (item.type, item.text) == ("file", "the photos")

    # the node holds only ciphertext; its blob record never names the key
    no_slice_of(data, alpha.file_contents())
    key = bytes.fromhex(got.fields["file"]["key"])
    assert not any(key in content or key.hex().encode() in content for content in alpha.file_contents().values())

    # a reply and a reaction work on a file message like on a text
    await bob.reply(sent.id, "nice")
    await bob.react(sent.id, "👍")


async def test_refusals(alpha: RunningNode, register: Register, tmp_path: Path) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    text = await alice.send_text(BOB, "not a file")
    await bob.receive()
    await refused("not_a_file", bob.download(text.id, tmp_path))
    await refused("unknown_message", bob.download(os.urandom(16), tmp_path))
    await refused("bad_input", alice.send_file(BOB, tmp_path / "missing.bin"))
    await refused("bad_input", alice.send_file(BOB, tmp_path))  # a folder
    path, _ = a_file(tmp_path, "x.bin", 10)
    await refused("bad_input", alice.send_file(BOB, path, "x" * 70_000))


async def test_a_tampered_blob_is_refused_and_nothing_readable_is_left(alpha: RunningNode, register: Register, tmp_path: Path) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    path, data = a_file(tmp_path, "doc.pdf", 200_000)
    sent = await alice.send_file(BOB, path)
    await bob.receive()
    blob = next((alpha.data_dir / BLOBS_DIR).glob("*.blob"))
    tampered = bytearray(blob.read_bytes())
    tampered[100_000] ^= 1
    blob.write_bytes(bytes(tampered))
    out = tmp_path / "out"
    out.mkdir()
    await refused("file_corrupt", bob.download(sent.id, out))
    assert list(out.iterdir()) == []


async def test_an_upload_cut_mid_way_resumes_where_the_node_stopped(
    alpha: RunningNode, register: Register, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    path, data = a_file(tmp_path, "big.bin", 12 * BLOB_CHUNK_BYTES)
    puts: list[int] = []
    real = attachments.Attachments._send_chunks

    async def cut_after_two(self, conn, path_, upload, stored, total, progress):  # noqa: ANN001, ANN202
        puts.append(stored)
        if len(puts) == 1:  # the first connection: two chunks, then the "process" stops
            def stop(done: int, total_: int) -> None:
                if done >= 2 * BLOB_CHUNK_BYTES:
                    raise KeyboardInterrupt
            return await real(self, conn, path_, upload, stored, total, stop)
        return await real(self, conn, path_, upload, stored, total, progress)

    monkeypatch.setattr(attachments.Attachments, "_send_chunks", cut_after_two)
    with pytest.raises(KeyboardInterrupt):
        await alice.send_file(BOB, path)
    sent = await alice.send_file(BOB, path)  # the same file again: the same upload goes on
    # the second run started from what the node held: at least the two acknowledged chunks (a
    # further one may have been on its way: several go at once), not the whole file. Once in a
    # while such a chunk lands only after the new connection asked how much the node holds: its
    # first chunk is then refused and it asks again (the next test), a third call further on
    resumed = puts[1:]
    assert puts[0] == 0 and len(resumed) in (1, 2) and resumed == sorted(resumed), puts
    assert all(2 * BLOB_CHUNK_BYTES <= at <= (2 + attachments.PUTS_IN_FLIGHT) * BLOB_CHUNK_BYTES for at in resumed), puts
    assert len(list((alpha.data_dir / BLOBS_DIR).glob("*.blob"))) == 1
    await bob.receive()
    assert Path(await bob.download(sent.id, tmp_path)).read_bytes() == data
    assert alice.state.get(f"upload/{path.resolve()}") is None  # forgotten once sent


async def test_an_upload_told_too_little_by_the_node_asks_again_and_goes_on(
    alpha: RunningNode, register: Register, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race of a cut upload: a chunk of the cut connection lands after the new one asked how
    much the node holds, so its first chunk is refused ("send from there"): it asks again."""
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    path, data = a_file(tmp_path, "big.bin", 6 * BLOB_CHUNK_BYTES)
    real_start, real_send = attachments.Attachments._where_to_start, attachments.Attachments._send_chunks
    starts: list[int] = []

    async def stop_after_three(self, conn, path_, upload, stored, total, progress):  # noqa: ANN001, ANN202
        if not starts or starts == [0]:  # the first connection: three chunks, then the "process" stops
            def stop(done: int, total_: int) -> None:
                if done >= 3 * BLOB_CHUNK_BYTES:
                    raise KeyboardInterrupt
            return await real_send(self, conn, path_, upload, stored, total, stop)
        return await real_send(self, conn, path_, upload, stored, total, progress)

    async def stale_once(self, conn, path_, upload, node, total):  # noqa: ANN001, ANN202
        held = await real_start(self, conn, path_, upload, node, total)
        told = held - BLOB_CHUNK_BYTES if len(starts) == 1 else held  # the second run is told a chunk too few
        starts.append(told)
        return told

    monkeypatch.setattr(attachments.Attachments, "_send_chunks", stop_after_three)
    monkeypatch.setattr(attachments.Attachments, "_where_to_start", stale_once)
    with pytest.raises(KeyboardInterrupt):
        await alice.send_file(BOB, path)
    sent = await alice.send_file(BOB, path)
    # told one chunk too few, refused, asked again: from what the node really held
    assert len(starts) == 3 and starts[0] == 0 and starts[2] == starts[1] + BLOB_CHUNK_BYTES
    await bob.receive()
    assert Path(await bob.download(sent.id, tmp_path)).read_bytes() == data


async def test_a_download_cut_mid_way_resumes(alpha: RunningNode, register: Register, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    path, data = a_file(tmp_path, "big.bin", 3 * BLOB_CHUNK_BYTES)
    sent = await alice.send_file(BOB, path)
    await bob.receive()
    out = tmp_path / "out"
    out.mkdir()

    def stop(done: int, total: int) -> None:
        if done >= BLOB_CHUNK_BYTES:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await bob.download(sent.id, out, progress=stop)
    (part,) = out.iterdir()
    assert part.stat().st_size == BLOB_CHUNK_BYTES and part.name.startswith(".")
    seen: list[int] = []
    saved = Path(await bob.download(sent.id, out, progress=lambda done, total: seen.append(done)))
    assert seen[0] == BLOB_CHUNK_BYTES and saved.read_bytes() == data
    assert [p.name for p in out.iterdir()] == ["big.bin"]


async def test_a_download_over_the_devices_byte_budget_waits_and_goes_on(
    start_node: Callable[..., Awaitable[RunningNode]], node_params: NodeParams, clock: Clock, register: Register, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the node serves this device one chunk, then one per 0.1 s of its clock: each refusal says
    # when to try again, and the download waits that long and goes on from what it has
    import trio

    from sonet.federation.ratelimit import Rate
    from sonet.node.client_limits import ClientLimits

    node_params.client_limits = ClientLimits(local_blob_bytes=Rate(per_second=10 * BLOB_CHUNK_BYTES, burst=BLOB_CHUNK_BYTES))
    alpha = await start_node()
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    path, data = a_file(tmp_path, "big.bin", 4 * BLOB_CHUNK_BYTES)
    sent = await alice.send_file(BOB, path)
    await bob.receive()
    out = tmp_path / "out"
    out.mkdir()
    waits: list[float] = []
    said = attachments._retry_after_s
    monkeypatch.setattr(attachments, "_retry_after_s", lambda message: waits.append(said(message)) or waits[-1])

    async def time_passes() -> None:  # the node's clock, in step with the real one
        while True:
            await trio.sleep(0.01)
            clock.advance(10)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(time_passes)
            saved = Path(await bob.download(sent.id, out))
            nursery.cancel_scope.cancel()
    assert saved.read_bytes() == data
    assert len(waits) >= 2 and all(0 < w <= 0.2 for w in waits), waits  # each "try again in 0.1 s" waited


async def test_a_file_in_a_group(alpha: RunningNode, register: Register, tmp_path: Path) -> None:
    alice, bob, carol = [await register(alpha, name) for name in ("alice", "bob", "carol")]
    for device in (alice, bob, carol):
        await device.receive()
    view = await alice.group_create("hikers", [BOB, CAROL])
    await bob.receive()
    await carol.receive()
    path, data = a_file(tmp_path, "route.gpx", 70_000)
    sent = await alice.group_send_file("hikers", path, "the route")
    assert (sent.is_group, sent.conversation) == (True, view.id)
    for device in (bob, carol):
        result = await device.receive()
        got = next(m for m in result.group_messages if m.id == sent.id)
        assert got.type == "file"
        shown = group_message_json(got)
        assert (shown["type"], shown["name"], shown["size"], shown["text"]) == ("file", "route.gpx", len(data), "the route")
        assert "sent file 'route.gpx'" in group_message_line(got)
        out = tmp_path / device.state.profile().address
        out.mkdir()
        assert Path(await device.download(sent.id, out)).read_bytes() == data


async def test_cli_send_file_recv_and_download(alpha: RunningNode, register: Register, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    path, data = a_file(tmp_path, "report.pdf", 3 * 1024 * 1024 + 5)
    rc, [sent] = await run_cli(capsys, alice, "send", BOB, "--file", str(path), "the report")
    assert rc == 0 and (sent["type"], sent["name"], sent["size"], sent["sha256"]) == ("file", "report.pdf", len(data), hashlib.sha256(data).hexdigest())
    rc, got = await run_cli(capsys, bob, "recv")
    (file_msg,) = [m for m in got if m["id"] == sent["id"]]
    assert (file_msg["type"], file_msg["name"], file_msg["size"], file_msg["sha256"], file_msg["text"]) == (
        "file", "report.pdf", len(data), sent["sha256"], "the report"
    )
    assert "key" not in json.dumps(file_msg)  # the key is never printed
    out = tmp_path / "downloads"
    out.mkdir()
    rc, [saved] = await run_cli(capsys, bob, "download", sent["id"], "--out", str(out))
    assert rc == 0 and Path(saved["path"]).read_bytes() == data
    # piped (not a terminal): the saved path alone on stdout, no progress bar
    rc, lines = await run_cli(capsys, bob, "download", sent["id"], "--out", str(out), json_out=False)
    assert rc == 0 and lines == [str(out / "report (1).pdf")]
    rc, history = await run_cli(capsys, bob, "history", ALICE)
    assert [(h["type"], h["text"], h["name"], h["size"], h["sha256"]) for h in history] == [
        ("file", "the report", "report.pdf", len(data), sent["sha256"])
    ]
    assert "key" not in json.dumps(history)
    rc, lines = await run_cli(capsys, bob, "history", ALICE, json_out=False)
    assert rc == 0 and "file 'report.pdf' (3.0 MiB): the report" in lines[0], lines
    # refusals are one line with their code
    rc, [error] = await run_cli(capsys, bob, "download", "not-an-id")
    assert rc == 2 and error["error"]["code"] == "usage"  # an argument not of its form (ux12: bad_input, exit 1)
    rc, [error] = await run_cli(capsys, alice, "send", BOB)  # neither TEXT nor --file
    assert rc == 2 and error["error"]["code"] == "usage"
    rc, [error] = await run_cli(capsys, alice, "send", BOB, "--file", str(tmp_path / "nope"))
    assert rc == 1 and error["error"]["code"] == "bad_input"


async def test_a_file_from_another_node_downloads_through_the_home_node(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register, tmp_path: Path
) -> None:
    alpha, beta = alpha_beta
    alice, bob = await register(alpha, "alice"), await register(beta, "bob")
    path, data = a_file(tmp_path, "minutes.txt", BLOB_CHUNK_BYTES + 10)
    sent = await alice.send_file(f"bob@{BETA}", path, "from the meeting")
    assert sent.state == "sent"
    await loopback.flush()
    await bob.receive()
    out = tmp_path / "bob"
    out.mkdir()
    assert Path(await bob.download(sent.id, out)).read_bytes() == data
    assert ("beta.example", "BlobGet", "alpha.example") in loopback.calls
    assert not list((beta.data_dir / BLOBS_DIR).iterdir())  # beta passed it on, kept nothing


def test_the_chat_app_shows_a_file_by_its_name_size_and_caption() -> None:
    from rich.console import Console

    from sonet.client.chat.widgets import MessageRow
    from sonet.client.history import HistoryItem

    item = HistoryItem(
        id=b"\x01" * 16, conversation=ALICE, sender=ALICE, mine=False, at=0, type="file", text="the photos", state="received", note="",
        file={"name": "trip.tar", "size": 3 * 1024 * 1024, "sha256": "00" * 32, "media_type": "", "key": "11" * 32},
    )  # fmt: skip
    console = Console(width=100, record=True)
    console.print(MessageRow(item, BOB).content)
    shown = console.export_text()
    assert "file 'trip.tar' (3.0 MiB): the photos" in shown and "11" * 8 not in shown


def test_the_progress_bar_shows_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse
    import sys

    from sonet.client.cli_attachments import progress_bar

    with progress_bar(argparse.Namespace(json=False), "sending x") as (progress, _say):
        assert progress is None  # piped (pytest captures stderr): quiet
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with progress_bar(argparse.Namespace(json=True), "sending x") as (progress, _say):
        assert progress is None  # --json: quiet
    with progress_bar(argparse.Namespace(json=False), "sending x") as (progress, _say):
        assert progress is not None
        progress(5 * 1024 * 1024, 10 * 1024 * 1024)
        progress(10 * 1024 * 1024, 10 * 1024 * 1024)
    out, err = capsys.readouterr()
    assert out == "" and "sending x" in err


def away_twice(device: Device, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``device``'s next two connections fail as a node that is away: the calls, in order."""
    from contextlib import asynccontextmanager

    from sonet.client.connection import ConnectError

    calls: list[str] = []
    real = Device._connect

    @asynccontextmanager
    async def flaky(self: Device, profile, **kwargs):  # noqa: ANN001, ANN202
        calls.append("connect")
        if self is device and calls.count("connect") <= 2:
            raise ConnectError("cannot connect to ws://127.0.0.1:9: connection refused")
        async with real(self, profile, **kwargs) as conn:
            yield conn

    monkeypatch.setattr(Device, "_connect", flaky)
    return calls


async def test_a_transfer_says_when_it_waits_for_the_node(
    alpha: RunningNode, register: Register, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ux11: a bar stood still without a word while the node was away."""
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    path, data = a_file(tmp_path, "big.bin", 2 * BLOB_CHUNK_BYTES)
    calls = away_twice(alice, monkeypatch)
    sent = await alice.send_file(
        BOB, path, progress=lambda done, total: calls.append(f"{done}/{total}"), say=lambda line: calls.append(f"say {line}")
    )
    said = [c for c in calls if c.startswith("say ")]
    assert said == ["say waiting for alpha.example (cannot connect to ws://127.0.0.1:9: connection refused): dialling it again for up to 27 s"]
    assert calls.index(said[0]) < calls.index("connect", calls.index(said[0])) and calls[-1] != said[0]  # said once, then it went on
    assert sent.state == "accepted"
    await bob.receive()
    calls = away_twice(bob, monkeypatch)
    (tmp_path / "got").mkdir()
    saved = await bob.download(sent.id, tmp_path / "got", say=lambda line: calls.append(f"say {line}"))
    assert [c for c in calls if c.startswith("say ")] == said and Path(saved).read_bytes() == data


async def test_the_upload_bar_shows_the_files_size_from_the_start(
    alpha: RunningNode, register: Register, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ux11: it said "0/? bytes" until the first chunk went, while the file is read through
    (its digests) and the node is dialled."""
    import sys

    from sonet.client import cli

    alice = await register(alpha, "alice")
    path, _data = a_file(tmp_path, "big.bin", 5_000_000)  # 4.8 MiB, sealed a little more

    async def stopped(*args: object, **kwargs: object) -> None:  # before any progress is reported
        raise KeyboardInterrupt

    monkeypatch.setattr(Device, "send_file", stopped)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    rc = await trio.to_thread.run_sync(lambda: cli.main(["--home", str(alice.state.home), "send", BOB, "--file", str(path)]))
    err = capsys.readouterr().err
    assert rc == 130 and "sending big.bin" in err and "0.0/4.8 MiB" in err and "/?" not in err, err  # (MiB, as recv says sizes)


async def test_the_download_bar_names_the_file(
    alpha: RunningNode, register: Register, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ux11: it said "downloading" alone."""
    import sys

    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    path, _data = a_file(tmp_path, "minutes [draft].txt", 1000)  # a name rich would read as markup
    sent = await alice.send_file(BOB, path)
    await bob.receive()
    out = tmp_path / "out"
    out.mkdir()
    from sonet.client import cli

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    rc = await trio.to_thread.run_sync(lambda: cli.main(["--home", str(bob.state.home), "download", sent.id.hex(), "--out", str(out)]))
    err = capsys.readouterr().err
    assert rc == 0 and "downloading minutes [draft].txt" in err
    assert "/?" not in err  # (newbie11: its size was unknown until the first chunk came)


async def test_a_file_to_a_node_that_is_down_waits_and_goes_by_itself(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register, tmp_path: Path
) -> None:
    alpha, beta = alpha_beta
    alice, bob = await register(alpha, "alice"), await register(beta, "bob")
    path, data = a_file(tmp_path, "plan.txt", 5000)
    loopback.down[BETA] = ("unreachable", f"cannot reach {BETA}: connection refused")
    sent = await alice.send_file(f"bob@{BETA}", path, "the plan")
    assert (sent.state, sent.code) == ("pending", "unreachable") and alice.state.pending_count() == 1
    assert alice.state.get(f"upload/{path.resolve()}") is None  # uploaded: only the message waits
    del loopback.down[BETA]
    await alice.receive()  # any command that connects sends what waits
    assert alice.state.pending_count() == 0
    await loopback.flush()
    got = next(m for m in (await bob.receive()).messages if m.id == sent.id)
    assert got.type == "file" and got.fields["text"] == "the plan"
    out = tmp_path / "bob"
    out.mkdir()
    assert Path(await bob.download(sent.id, out)).read_bytes() == data


async def test_a_file_that_comes_after_its_delete_for_everyone_is_erased_on_arrival(alpha: RunningNode, register: Register) -> None:
    """The delete and the message travel separately (the sender's other device may write the
    delete): whichever comes first, the file message's key and name are not kept."""
    from sonet.core.attachment import FileRef
    from sonet.core.content import Content, encode_content
    from sonet.core.address import parse_address
    from sonet.core.envelope import Kind

    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")

    async def send_raw(content: Content) -> None:
        profile = alice.state.profile()
        async with alice._connect(profile) as conn:
            await alice._deliver(conn, profile, parse_address(BOB), encode_content(content), None, content.id, Kind.SEALED)

    file_id, now = alice._rng(16), alice._clock()
    ref = FileRef(node=alpha.config.name, blob=alice._rng(16), key=alice._rng(32), sha256=bytes(32), sealed_sha256=bytes(32),
                  size=10, media_type="text/plain", name="secret.txt")  # fmt: skip
    await send_raw(Content.make_delete(id=alice._rng(16), sent_at=now + 5, refers_to=file_id))
    await send_raw(Content.make_file(id=file_id, sent_at=now, file=ref, text="read me"))
    await bob.receive()
    found = bob.state.find_message(file_id, ALICE)
    assert found is not None and bob.state.message_text(found) == {}
    [item] = [i for i in History(bob.state).messages(ALICE) if i.id == file_id]
    assert item.deleted
