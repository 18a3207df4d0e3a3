"""`sonet` commands against an in-process node, the way a new user runs them: a note to self
with no other device, `sent` learning receipts without `recv`, `send ADDR -`, removing the
device in use, Ctrl-C half-way through `register` and `send`, and --json as JSON Lines.

The CLI runs in a worker thread (it runs its own trio loop; the node runs in the test's)."""

from __future__ import annotations

import io
import json
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from sonet.client import cli
from sonet.client.sdk import Device
from sonet.client.state import DeviceState
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, HANG_S, link_device, texts

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)

Register = Callable[..., Awaitable[Device]]


async def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """``sonet ARGV`` in a worker thread: (exit status, stdout, stderr)."""
    rc = await trio.to_thread.run_sync(cli.main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def home(device: Device) -> str:
    return str(device.state.home)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_note_to_self_without_another_device_says_nobody_gets_it(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        rc, out, err = await run(capsys, "--home", home(alice), "send", ALICE, "note to self")
        assert (rc, out) == (1, "")
        assert err.splitlines() == [
            f"sonet: error: nothing sent: this is the only device of {ALICE}, and a note to self goes to your other devices "
            "(link one with `sonet link begin`)"
        ]
        rc, out, _ = await run(capsys, "--home", home(alice), "send", ALICE, "note to self", "--json")
        assert rc == 1 and json_lines(out) == [{"error": {"code": "no_other_device", "message": err.splitlines()[0][len("sonet: error: "):]}}]
        assert alice.state.sent_messages(5) == []  # nothing recorded as sent
        assert await alpha.pending(ALICE) == []

        # with a second device the note goes there
        laptop = Device(DeviceState(alice.state.home.parent / "alice-laptop"))
        await link_device(laptop, alice, alpha.url)
        rc, out, _ = await run(capsys, "--home", home(alice), "send", ALICE, "note to self", "--json")
        assert rc == 0 and json_lines(out)[0]["own_devices"] + json_lines(out)[0]["devices"] == 1
        assert texts(laptop, await laptop.receive()) == [(ALICE, "note to self")]


async def test_sent_learns_delivery_from_the_node_without_recv(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        rc, out, _ = await run(capsys, "--home", home(alice), "send", BOB, "hello", "--json")
        assert rc == 0
        msg_id = json_lines(out)[0]["id"]
        rc, out, _ = await run(capsys, "--home", home(alice), "sent", "--json")
        [row] = json_lines(out)
        assert (row["id"], row["state"], row["delivered_at"], row["refreshed"]) == (msg_id, "accepted", None, True)

        assert texts(bob, await bob.receive()) == [(ALICE, "hello")]  # bob's device sends a delivery receipt
        rc, out, err = await run(capsys, "--home", home(alice), "sent", "--json")
        [row] = json_lines(out)
        assert (rc, row["id"], row["state"], row["refreshed"]) == (0, msg_id, "delivered", True), err
        assert row["delivered_at"].endswith("Z") and row["sent_at"].endswith("Z")
        rc, out, _ = await run(capsys, "--home", home(alice), "sent")
        assert rc == 0 and f"-> {BOB}  delivered 20" in out

        # what `sent` fetched from the mailbox is still shown once by recv
        rc, out, _ = await run(capsys, "--home", home(alice), "recv", "--json")
        [receipt] = json_lines(out)
        assert (receipt["from"], receipt["type"], receipt["receipt"], receipt["ids"]) == (BOB, "receipt", "delivered", [msg_id])

        # a text waiting in the mailbox is kept for recv, and `sent` says it is there
        await bob.send_text(ALICE, "hi back")
        rc, out, err = await run(capsys, "--home", home(alice), "sent")
        assert rc == 0 and "sonet: 1 new message: `sonet recv` shows it" in err
        rc, out, _ = await run(capsys, "--home", home(alice), "recv", "--json")
        assert [(m["from"], m["text"]) for m in json_lines(out) if m["type"] == "text"] == [(BOB, "hi back")]


async def test_sent_without_the_node_shows_the_last_known_state_and_says_so(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(HANG_S):
        alice, _bob = await register(alpha, "alice"), await register(alpha, "bob")
        sent = await alice.send_text(BOB, "hello")
        alice.state.put("node_url", f"ws://127.0.0.1:{free_port()}".encode())  # the node is gone
        rc, out, err = await run(capsys, "--home", home(alice), "sent")
        assert rc == 0 and out.splitlines()[0].endswith(f"-> {BOB}  accepted  id {sent.id.hex()}"), out
        [warning] = [line for line in err.splitlines() if "last known state" in line]
        assert warning.startswith("sonet: warning: could not ask the node (cannot connect to ") and warning.endswith("); showing the last known state")
        rc, out, _ = await run(capsys, "--home", home(alice), "sent", "--json")
        assert rc == 0 and [(r["id"], r["state"], r["refreshed"]) for r in json_lines(out)] == [(sent.id.hex(), "accepted", False)]


async def test_a_send_while_the_home_node_is_down_says_nothing_was_sent(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ux12: it said only "cannot connect to ...: all attempts ... failed", leaving the user to
    wonder whether the text went or waits somewhere (a group text does wait on the device). When
    the connection ends after the text went to the node, the line says that it may have."""
    from sonet.client.connection import ConnectError

    with trio.fail_after(HANG_S):
        alice, _bob = await register(alpha, "alice"), await register(alpha, "bob")
        url = alice.state.profile().node_url
        alice.state.put("node_url", f"ws://127.0.0.1:{free_port()}".encode())  # the node is gone
        rc, out, err = await run(capsys, "--home", home(alice), "send", BOB, "hello")
        [line] = err.splitlines()
        assert (rc, out) == (1, "") and line.startswith("sonet: error: cannot connect to ") and line.endswith("; nothing was sent"), err
        rc, out, _ = await run(capsys, "--home", home(alice), "send", BOB, "hello", "--json")
        [error] = json_lines(out)
        assert rc == 1 and error["error"]["code"] == "unreachable" and error["error"]["message"].endswith("; nothing was sent"), error
        assert alice.state.all_sent_messages(5) == []

        alice.state.put("node_url", url.encode())  # back; the connection ends while the text is sent

        async def cut(*args: object, **kwargs: object) -> tuple[int, int]:
            raise ConnectError("the node at ws://alpha closed the connection (going away)")

        monkeypatch.setattr(Device, "_send_text_now", cut)
        rc, out, err = await run(capsys, "--home", home(alice), "send", BOB, "hello")
        assert (rc, out) == (1, "") and err.splitlines() == [
            "sonet: error: the node at ws://alpha closed the connection (going away); the connection ended while the message was being "
            f"sent: it may or may not reach {BOB}, and `sonet sent` does not list it; sending it again may deliver it twice"
        ], err


async def test_send_dash_reads_the_text_from_stdin(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        text = "two lines,\nthe second with ünïcode"
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode() + b"\n"), encoding="utf-8"))
        rc, _out, err = await run(capsys, "--home", home(alice), "send", BOB, "-")
        assert rc == 0, err
        assert texts(bob, await bob.receive()) == [(ALICE, text)]  # the newline `echo` adds is dropped, nothing else


async def test_removing_the_device_in_use_asks_first(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        laptop = Device(DeviceState(alice.state.home.parent / "alice-laptop"))
        laptop_id = await link_device(laptop, alice, alpha.url)

        def stdin(typed: str, *, tty: bool) -> None:
            stream = io.TextIOWrapper(io.BytesIO(typed.encode()), encoding="utf-8")
            monkeypatch.setattr(stream, "isatty", lambda: tty)
            monkeypatch.setattr(sys, "stdin", stream)

        # no terminal to ask on: refused without --yes
        stdin("", tty=False)
        rc, out, err = await run(capsys, "--home", home(laptop), "devices", "remove", str(laptop_id))
        assert (rc, out) == (1, "") and err.splitlines() == [
            f"sonet: error: device {laptop_id} is this device: removing it cuts it off {ALICE} for good; add --yes to confirm"
        ]
        stdin("", tty=False)
        rc, out, _ = await run(capsys, "--home", home(laptop), "devices", "remove", str(laptop_id), "--json")
        assert rc == 1 and json_lines(out)[0]["error"]["code"] == "not_confirmed"

        # asked on a terminal, a wrong answer removes nothing
        stdin("1\n", tty=True)
        rc, out, err = await run(capsys, "--home", home(laptop), "devices", "remove", str(laptop_id))
        # (on a terminal the typed answer and its newline come between the question and the error)
        assert rc == 1 and f"type {laptop_id} to remove it: " in err and err.endswith("sonet: error: not confirmed: nothing was removed\n")
        rc, out, _ = await run(capsys, "--home", home(alice), "devices", "--json")
        assert rc == 0 and [(d["id"], d["this_device"]) for d in json_lines(out)] == [(1, True), (laptop_id, False)]
        assert all(d["added_at"].endswith("Z") for d in json_lines(out))

        # another device of the account is removed without a question
        stdin("", tty=False)
        other = Device(DeviceState(alice.state.home.parent / "alice-tablet"))
        tablet_id = await link_device(other, alice, alpha.url)
        rc, out, err = await run(capsys, "--home", home(laptop), "devices", "remove", str(tablet_id))
        assert (rc, out.strip()) == (0, f"removed device {tablet_id}"), err

        # typing the id removes it
        note = await laptop.send_text(ALICE, "a note from the laptop")
        stdin(f"{laptop_id}\n", tty=True)
        rc, out, err = await run(capsys, "--home", home(laptop), "devices", "remove", str(laptop_id))
        assert rc == 0 and out.startswith(f"removed device {laptop_id} (this device: it can no longer use {ALICE}"), err
        rc, out, _ = await run(capsys, "--home", home(alice), "devices", "--json")
        assert [d["id"] for d in json_lines(out)] == [1]
        # the removed device can no longer ask the node, and still lists what it sent
        rc, out, err = await run(capsys, "--home", home(laptop), "sent", "--json")
        assert rc == 0 and [(r["id"], r["refreshed"]) for r in json_lines(out)] == [(note.id.hex(), False)]
        assert "could not ask the node (this device was removed from its account)" in err, err

        # --yes skips the question (here the node refuses: it is the account's last device)
        stdin("", tty=False)
        rc, out, err = await run(capsys, "--home", home(alice), "devices", "remove", "1", "--yes")
        assert rc == 1 and err.splitlines() == ["sonet: error: the last device of an account cannot be removed (last_device)"]


async def test_ctrl_c_during_register_after_the_node_created_the_account(
    alpha: RunningNode, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Interrupted between the node's answer and saving it: the device kept the request and
    its keys, and the same `register` again completes the same registration."""
    with trio.fail_after(HANG_S):
        token = await alpha.mint_invite()
        real_save = DeviceState.save_profile

        def interrupted(self: DeviceState, profile: object) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(DeviceState, "save_profile", interrupted)
        argv = ["--home", tmp_path / "carol", "register", f"carol@{alpha.config.name}", "--node", alpha.url, "--invite", token]
        rc, out, err = await run(capsys, *argv)
        assert (rc, out) == (130, "") and err.splitlines() == [
            "sonet: error: interrupted before this device saved the node's answer: it keeps the request and its keys; "
            "`sonet register` (no arguments needed) or any other command completes the same registration"
        ]
        monkeypatch.setattr(DeviceState, "save_profile", real_save)
        rc, out, err = await run(capsys, *argv)
        assert rc == 0 and out.startswith(f"registered carol@{alpha.config.name} (device 1)"), (out, err)
        assert "completing an interrupted registration of carol@" in err, err


async def test_ctrl_c_during_register_after_the_account_was_saved(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with trio.fail_after(HANG_S):
        real_register = Device.register

        async def interrupted(self: Device, *args: object, **kwargs: object) -> object:
            await real_register(self, *args, **kwargs)  # type: ignore[arg-type]
            raise KeyboardInterrupt

        monkeypatch.setattr(Device, "register", interrupted)
        carol = tmp_path / "carol"
        address = f"carol@{alpha.config.name}"
        rc, out, err = await run(capsys, "--home", carol, "register", address, "--node", alpha.url, "--invite", await alpha.mint_invite())
        assert (rc, out) == (130, "") and err.splitlines() == [
            f"sonet: error: interrupted after {address} was registered: this device holds its keys; the next `sonet recv` finishes the set-up"
        ]
        # and so it does: recv works, and the account can be written to
        monkeypatch.setattr(Device, "register", real_register)
        rc, _, err = await run(capsys, "--home", carol, "recv")
        assert rc == 0, err
        alice = await register(alpha, "alice")
        await alice.send_text(address, "welcome")
        rc, out, err = await run(capsys, "--home", carol, "recv", "--json")
        assert rc == 0 and [m["text"] for m in json_lines(out) if m["type"] == "text"] == ["welcome"], err


async def test_ctrl_c_during_send(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        real_send = Device.send_text

        async def before_the_node(self: Device, *args: object, **kwargs: object) -> object:
            raise KeyboardInterrupt

        monkeypatch.setattr(Device, "send_text", before_the_node)
        rc, out, err = await run(capsys, "--home", home(alice), "send", BOB, "hello?")
        assert (rc, out) == (130, "") and err.splitlines() == [
            f"sonet: error: interrupted before the node confirmed the message: it may or may not reach {BOB}, and `sonet sent` "
            "does not list it; sending it again may deliver it twice"
        ]

        async def after_the_node(self: Device, *args: object, **kwargs: object) -> object:
            await real_send(self, *args, **kwargs)  # type: ignore[arg-type]
            raise KeyboardInterrupt

        monkeypatch.setattr(Device, "send_text", after_the_node)
        rc, out, err = await run(capsys, "--home", home(alice), "send", BOB, "hello!")
        [m] = alice.state.sent_messages(5)
        assert (rc, out) == (130, "") and err.splitlines() == [
            f"sonet: error: interrupted after the message was recorded (id {m.id.hex()}): `sonet sent` shows it as accepted"
        ]
        assert texts(bob, await bob.receive()) == [(ALICE, "hello!")]


async def test_ctrl_c_during_send_file_says_what_was_uploaded_and_the_same_command_resumes(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`send --file` said only "interrupted"; now how far the upload came (the progress the node
    acknowledged), that nothing was sent, and that the same command resumes it, which it does."""
    with trio.fail_after(HANG_S * 2):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        report = tmp_path / "report.pdf"
        report.write_bytes(bytes(range(256)) * (5 * 4096))  # 5 MiB: 5 chunks
        real_send_file = Device.send_file

        async def cut_mid_upload(self: Device, *args: object, progress: Callable[[int, int], None], **kwargs: object) -> object:
            def cut(done: int, total: int) -> None:
                progress(done, total)
                if done >= 2 << 20:
                    raise KeyboardInterrupt

            return await real_send_file(self, *args, progress=cut, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Device, "send_file", cut_mid_upload)
        rc, out, err = await run(capsys, "--home", home(alice), "send", BOB, "--file", report, "the report")
        [line] = err.splitlines()
        assert (rc, out) == (130, "") and line.startswith("sonet: error: interrupted before report.pdf was uploaded whole (at least "), err
        assert line.endswith(" bytes on the node): nothing was sent; the same `sonet send --file` again resumes the upload"), err
        held = int(line.split(" (at least ")[1].split(" of ")[0])
        assert 2 << 20 <= held < 5 << 20, line
        assert alice.state.sent_messages(5) == []

        async def cut_after_upload(self: Device, *args: object, progress: Callable[[int, int], None], **kwargs: object) -> object:
            progress(10, 10)
            raise KeyboardInterrupt

        monkeypatch.setattr(Device, "send_file", cut_after_upload)
        rc, out, err = await run(capsys, "--home", home(alice), "send", BOB, "--file", report)
        assert (rc, out) == (130, "") and err.splitlines() == [
            "sonet: error: interrupted after report.pdf was uploaded, while its message was being sent: `sonet sent` shows it if it "
            "went; sending the same file again does not upload it again, but may deliver the message twice"
        ]

        seen: list[int] = []

        async def watched(self: Device, *args: object, progress: Callable[[int, int], None], **kwargs: object) -> object:
            def note(done: int, total: int) -> None:
                seen.append(done)
                progress(done, total)

            return await real_send_file(self, *args, progress=note, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Device, "send_file", watched)
        rc, out, err = await run(capsys, "--home", home(alice), "send", BOB, "--file", report, "the report", "--json")
        assert rc == 0 and json_lines(out)[0]["name"] == "report.pdf", err
        assert held <= seen[0] < 5 << 20  # resumed from what the node held (the chunks in flight may have landed too)
        got = (await bob.receive()).messages
        assert [(m.sender, m.type, m.fields["file"]["name"], m.fields["text"]) for m in got] == [(ALICE, "file", "report.pdf", "the report")]


def test_the_line_of_a_sent_file_names_and_sizes_it_as_recv_does() -> None:
    """Found by newbie10: `send --file` printed "sent file huge.bin (99000000 bytes)" where recv,
    history and the chat say "file 'huge.bin' (94.4 MiB)"."""
    from sonet.client.attachments import FileSendResult
    from sonet.client.cli_attachments import _sent_line

    sent = FileSendResult(id=b"\x01" * 16, conversation=BOB, is_group=False, state="sent", name="huge.bin", size=99_000_000, sha256=b"")
    assert _sent_line(sent, None) == f"sent file 'huge.bin' (94.4 MiB) to {BOB} (sent); id {'01' * 16}"
    voice = FileSendResult(
        id=b"\x02" * 16, conversation="ab" * 16, is_group=True, state="ordered", name="memo.ogg", size=2048, sha256=b"", voice_ms=12_500
    )
    assert _sent_line(voice, "") == f"sent voice note 'memo.ogg' (0:13, 2.0 KiB) to group {'ab' * 16} (ordered); id {'02' * 16}"


async def test_a_transfer_cut_by_the_node_going_away_says_what_is_kept_and_that_the_same_command_resumes(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Found by newbie10 (kill -9 of the home node mid-transfer): past its retries a download or
    an upload ended in "cannot connect ...: all attempts failed" alone, not saying that what came
    is kept and that the same command goes on from it."""
    from sonet.client.connection import ConnectError, NodeError

    class Cut(Exception):
        pass

    def cut_at(half: int, progress: Callable[[int, int], None]) -> Callable[[int, int], None]:
        def cut(done: int, total: int) -> None:
            progress(done, total)
            if done >= half:
                raise Cut

        return cut

    with trio.fail_after(HANG_S * 2):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        report = tmp_path / "report.pdf"
        report.write_bytes(bytes(range(256)) * (5 * 4096))  # 5 MiB: 5 chunks
        real_send_file, real_download = Device.send_file, Device.download
        gone = "cannot connect to ws://127.0.0.1:1/client: all attempts to connect to 127.0.0.1:1 failed"

        async def node_gone_mid_upload(self: Device, *args: object, progress: Callable[[int, int], None], **kwargs: object) -> object:
            try:
                return await real_send_file(self, *args, progress=cut_at(2 << 20, progress), **kwargs)  # type: ignore[arg-type]
            except Cut:
                raise ConnectError(gone) from None

        monkeypatch.setattr(Device, "send_file", node_gone_mid_upload)
        rc, out, err = await run(capsys, "--home", home(alice), "send", BOB, "--file", report)
        [line] = err.splitlines()
        assert (rc, out) == (1, "") and line.startswith(f"sonet: error: {gone}; report.pdf was not uploaded whole (at least "), err
        assert line.endswith(" bytes on the node): nothing was sent; the same `sonet send --file` again resumes the upload"), err
        assert alice.state.sent_messages(5) == []

        # gone once the whole file is up, while its message goes (docs10: a bare "cannot connect")
        def cut_when_whole(progress: Callable[[int, int], None]) -> Callable[[int, int], None]:
            def cut(done: int, total: int) -> None:
                progress(done, total)
                if done >= total:
                    raise Cut

            return cut

        async def node_gone_after_upload(self: Device, *args: object, progress: Callable[[int, int], None], **kwargs: object) -> object:
            try:
                return await real_send_file(self, *args, progress=cut_when_whole(progress), **kwargs)  # type: ignore[arg-type]
            except Cut:
                raise ConnectError(gone) from None

        monkeypatch.setattr(Device, "send_file", node_gone_after_upload)
        rc, out, err = await run(capsys, "--home", home(alice), "send", BOB, "--file", report)
        assert (rc, out, err) == (
            1, "",
            f"sonet: error: {gone}; after report.pdf was uploaded, while its message was being sent: `sonet sent` shows it if it"
            " went; sending the same file again does not upload it again, but may deliver the message twice\n",
        )  # fmt: skip
        monkeypatch.setattr(Device, "send_file", real_send_file)
        rc, out, err = await run(capsys, "--home", home(alice), "send", BOB, "--file", report, "--json")
        assert rc == 0 and json_lines(out)[0]["name"] == "report.pdf", err
        [sent] = [m for m in (await bob.receive()).messages if m.type == "file"]

        async def node_gone_mid_download(self: Device, *args: object, progress: Callable[[int, int], None], **kwargs: object) -> object:
            try:
                return await real_download(self, *args, progress=cut_at(2 << 20, progress), **kwargs)  # type: ignore[arg-type]
            except Cut:
                raise ConnectError(gone) from None

        out_dir = tmp_path / "bob"
        out_dir.mkdir()
        monkeypatch.setattr(Device, "download", node_gone_mid_download)
        rc, out, err = await run(capsys, "--home", home(bob), "download", sent.id.hex(), "--out", out_dir, "--json")
        [problem] = json_lines(out)
        message = problem["error"]["message"]
        assert (rc, err, problem["error"]["code"]) == (1, "", "unreachable") and message.startswith(f"{gone}; the download stopped ("), out
        assert message.endswith(f" bytes kept): `sonet download {sent.id.hex()}` again resumes it"), out
        kept, total = (int(n) for n in message.split("; the download stopped (")[1].split(" bytes kept")[0].split(" of "))
        assert 2 << 20 <= kept < total, out

        # a relay or the sender's node going away ends it at once (the home node answers unreachable): the same hint, for those codes only
        broke = "the link to beta.example broke: the peer closed the connection (connection lost)"
        for code, told in (("unreachable", True), ("unavailable", True), ("file_corrupt", False)):

            async def link_broke_mid_download(self: Device, *args: object, progress: Callable[[int, int], None], code: str = code, **kwargs: object) -> object:
                try:
                    return await real_download(self, *args, progress=cut_at(3 << 20, progress), **kwargs)  # type: ignore[arg-type]
                except Cut:
                    raise NodeError(code, broke) from None

            monkeypatch.setattr(Device, "download", link_broke_mid_download)
            rc, out, err = await run(capsys, "--home", home(bob), "download", sent.id.hex(), "--out", out_dir)
            [line] = err.splitlines()
            assert (rc, out) == (1, "") and line.startswith(f"sonet: error: {broke}"), err
            assert line.endswith(f" bytes kept): `sonet download {sent.id.hex()}` again resumes it ({code})") == told, err

        # Ctrl-C says the same
        async def ctrl_c_mid_download(self: Device, *args: object, progress: Callable[[int, int], None], **kwargs: object) -> object:
            progress(3 << 20, total)
            raise KeyboardInterrupt

        monkeypatch.setattr(Device, "download", ctrl_c_mid_download)
        rc, out, err = await run(capsys, "--home", home(bob), "download", sent.id.hex(), "--out", out_dir)
        assert (rc, out, err.splitlines()) == (130, "", [
            f"sonet: error: interrupted: the download stopped ({3 << 20} of {total} bytes kept): `sonet download {sent.id.hex()}` again resumes it"
        ])  # fmt: skip
        monkeypatch.setattr(Device, "download", real_download)
        rc, out, err = await run(capsys, "--home", home(bob), "download", sent.id.hex(), "--out", out_dir)
        assert rc == 0 and Path(out.strip()).read_bytes() == report.read_bytes(), err


async def test_every_listing_is_json_lines_with_iso_times(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await bob.send_text(ALICE, "one")
        await bob.send_text(ALICE, "two")
        for argv, count in [(["recv"], 2), (["devices"], 1), (["sent"], 0), (["alerts"], 0)]:
            rc, out, err = await run(capsys, "--home", home(alice), *argv, "--json")
            assert rc == 0, err
            rows = json_lines(out)
            assert len(rows) == count and all(isinstance(r, dict) for r in rows), out
            for row in rows:
                for key, value in row.items():
                    if key.endswith("_at") and value is not None:
                        assert value.endswith("Z") and value[10] == "T", (key, value)
        for argv in (["trust", BOB], ["typing", BOB], ["witness-quorum"], ["safety-number", BOB]):
            rc, out, err = await run(capsys, "--home", home(alice), *argv, "--json")
            assert rc == 0 and len(json_lines(out)) == 1, (argv, out, err)
        rc, out, _ = await run(capsys, "--home", home(alice), "lookup", BOB, "--json")
        [found] = json_lines(out)
        assert found["tree_head"]["signed_at"].endswith("Z") and found["entry"]["logged_at"].endswith("Z")
        rc, out, _ = await run(capsys, "--home", home(alice), "send", "nobody@alpha.example", "hi", "--json")
        assert rc == 1 and json_lines(out)[0]["error"]["code"] == "unknown_account"
