"""``sonet send ADDRESS|GROUP --file PATH [TEXT]`` and ``sonet download MESSAGE_ID [--out DIR]``
(issue 17 item 1); the work is client/attachments.py. A progress bar (rich) on a terminal's
stderr, none when stderr is not a terminal or with --json; a line on stderr either way when the
home node goes away and the transfer waits for it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sonet.cli_output import terminal_safe
from sonet.core.limits import MAX_VOICE_MS

if TYPE_CHECKING:  # trio and the SDK are imported by the commands that run: `sonet --help` starts fast
    from .attachments import FileSendResult, Progress, Say
    from .cli_groups import Shell

__all__ = ["send_file_command", "add_download_command", "add_voice_option", "file_sent_json", "progress_bar", "caption_after_options"]


def _voice_seconds(text: str) -> int:
    """``--voice SECONDS`` as ms (a usage error unless 0 < SECONDS <= the longest voice note)."""
    try:
        if not text.isascii():  # float() takes other scripts' digits too
            raise ValueError(text)
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    ms = round(seconds * 1000) if seconds == seconds else 0  # NaN: refused below
    if not 0 < ms <= MAX_VOICE_MS:
        raise argparse.ArgumentTypeError(f"a voice note lasts more than 0 and at most {MAX_VOICE_MS // 1000} seconds")
    return ms


def add_voice_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--voice", metavar="SECONDS", type=_voice_seconds, dest="voice_ms",
        help="with --file: it is a voice note (a recording) this many seconds long; recv and history show it as one",
    )  # fmt: skip


def caption_after_options(p: argparse.ArgumentParser) -> None:
    """Let ``sonet send ADDRESS --file PATH TEXT`` take TEXT after the option: argparse fills an
    optional positional at the first run of positionals, so this parser parses intermixed; and
    refuse a send with neither TEXT nor --file as the usage error it is."""
    plain = p.parse_known_args
    inside = False

    def parse_known_args(args: Any = None, namespace: Any = None) -> Any:
        nonlocal inside
        if inside:  # parse_known_intermixed_args calls it back: the plain one then
            return plain(args, namespace)
        inside = True
        try:
            parsed, rest = p.parse_known_intermixed_args(args, namespace)
        finally:
            inside = False
        if parsed.text is None and parsed.file is None:  # TEXT is optional only with --file
            p.error("the following arguments are required: TEXT (or --file PATH)")
        if getattr(parsed, "voice_ms", None) is not None and parsed.file is None:
            p.error("--voice needs --file PATH (the recording)")
        return parsed, rest

    p.parse_known_args = parse_known_args  # type: ignore[method-assign]


def _say(line: str) -> None:
    print(f"sonet: {terminal_safe(line)}", file=sys.stderr, flush=True)


@contextmanager
def progress_bar(args: argparse.Namespace, what: str, total: int | None = None) -> Iterator[tuple[Progress | None, Say]]:
    """A rich progress bar on stderr when it is a terminal (and not --json), else None; and how
    to say a line (the node is away: the bar stands still) above it, or alone on stderr.
    ``total``: the bytes to move when known before the first progress (none is reported while
    an upload reads its file through)."""
    if getattr(args, "json", False) or not sys.stderr.isatty():
        yield None, _say
        return
    from rich.progress import BarColumn, DownloadColumn, Progress as Bar, TextColumn, TimeRemainingColumn, TransferSpeedColumn
    from rich.console import Console

    with Bar(
        # a received file's name is the sender's text: shown as it is, never read as markup
        # MiB, as the result line and recv say sizes
        TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(binary_units=True), TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True), transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(terminal_safe(what), total=total)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        def say(line: str) -> None:
            # one line, however narrow the terminal (the terminal wraps it, rich does not)
            bar.console.print(f"sonet: {terminal_safe(line)}", markup=False, highlight=False, soft_wrap=True)

        yield update, say


def file_sent_json(r: FileSendResult, group_name: str | None) -> dict[str, Any]:
    """``group_name``: the group's (client/cli_groups.py group_name_of); None for 1:1."""
    from .cli_groups import conversation_json

    out: dict[str, Any] = {
        "id": r.id.hex(), "type": "file", "name": r.name, "size": r.size, "sha256": r.sha256.hex(), "state": r.state,
        "code": r.code, "message": r.message,
    }  # fmt: skip
    if r.voice_ms is not None:
        out["voice_ms"] = r.voice_ms
    out.update(conversation_json(r.conversation, group_name))
    if not r.is_group:
        out.update(devices=r.devices, accepted_by=r.accepted_by or None)
    return out


def _sent_line(r: FileSendResult, group_name: str | None) -> str:
    """Named and sized as `recv` and `history` show it: ``file 'a.pdf' (2.1 MiB)``."""
    from .cli_groups import conversation_label
    from .file_fields import file_summary

    where = conversation_label(r.conversation, group_name)
    state = f"{r.state}: {r.message}" if r.message else r.state
    voice = {} if r.voice_ms is None else {"voice_ms": r.voice_ms}
    return f"sent {file_summary({'file': {'name': r.name, 'size': r.size, **voice}})} to {where} ({state}); id {r.id.hex()}"


def send_file_command(args: argparse.Namespace, shell: Shell, text: str, *, group: bool) -> None:
    """``sonet send TARGET --file PATH [TEXT]``: TEXT is the caption."""
    import trio

    from sonet.core.crypto import CryptoMode

    from .cli_groups import group_name_of
    from .connection import ConnectError

    device = shell.device(args)
    path = Path(args.file)
    held: list[int] = []  # the node's last word on the upload: [bytes it holds, of total]
    shell.on_interrupt(args, lambda: _send_file_interrupted(path.name, held))
    with progress_bar(args, f"sending {path.name}", _sealed_size(path)) as (bar, say):

        def progress(done: int, total: int) -> None:
            held[:] = [done, total]
            if bar is not None:
                bar(done, total)

        voice_ms = getattr(args, "voice_ms", None)
        try:
            if group:
                result = trio.run(lambda: device.group_send_file(args.address, path, text, progress=progress, voice_ms=voice_ms, say=say))
            else:
                mode = CryptoMode(args.crypto_mode) if getattr(args, "crypto_mode", None) else None
                result = trio.run(lambda: device.send_file(args.address, path, text, progress=progress, voice_ms=voice_ms, say=say, mode=mode))
        except ConnectError as exc:  # the node stayed away past the retries: say what is kept
            if not held:
                raise
            if held[0] >= held[1]:  # uploaded whole: only the message is left
                raise ConnectError(f"{exc}; {_uploaded_not_sent(path.name)}", code=exc.code) from None
            raise ConnectError(f"{exc}; {_not_uploaded(path.name, held)}", code=exc.code) from None
    name = group_name_of(device, result.conversation, result.is_group)
    shell.show(args, file_sent_json(result, name), _sent_line(result, name))


def _sealed_size(path: Path) -> int | None:
    """The bytes an upload of ``path`` moves (the file sealed), for its bar from the start;
    None when it cannot be read (the upload says why)."""
    from sonet.core.crypto.stream import sealed_size

    try:
        return sealed_size(path.stat().st_size)
    except OSError:
        return None


def _send_file_interrupted(name: str, held: list[int]) -> str:
    """The message goes only once the node holds the whole file (client/attachments.py), and
    the upload is kept on the device until the message is recorded."""
    if not held or held[0] < held[1]:
        return f"interrupted before {name} was uploaded whole{_on_node(held)}: {_RESUME_UPLOAD}"
    return f"interrupted {_uploaded_not_sent(name)}"


def _uploaded_not_sent(name: str) -> str:
    # (the connection may have ended after the node took the message, before its answer came)
    return (
        f"after {name} was uploaded, while its message was being sent: `sonet sent` shows it if it went; "
        "sending the same file again does not upload it again, but may deliver the message twice"
    )


_RESUME_UPLOAD = "nothing was sent; the same `sonet send --file` again resumes the upload"


def _on_node(held: list[int]) -> str:
    return f" (at least {held[0]} of {held[1]} bytes on the node)" if held else ""  # chunks in flight may have landed too


def _not_uploaded(name: str, held: list[int]) -> str:
    return f"{name} was not uploaded whole{_on_node(held)}: {_RESUME_UPLOAD}"


def cmd_download(args: argparse.Namespace, shell: Shell) -> None:
    import trio

    from .cli_gestures import message_id_arg
    from .connection import ConnectError, NodeError

    msg_id = message_id_arg(args.message_id, "sonet download MESSAGE_ID [--out DIR] [--thumbnail]")
    device = shell.device(args)
    if args.thumbnail:  # what the message carries: nothing to fetch
        saved = trio.run(lambda: device.save_thumbnail(msg_id, Path(args.out)))
        shell.show(args, {"id": msg_id.hex(), "path": str(saved), "thumbnail": True}, str(saved))
        return
    got: list[int] = []  # the last progress: [bytes in the part file, of total]
    shell.on_interrupt(args, lambda: f"interrupted: {_download_stopped(msg_id, got)}")
    ref = device.file_of(msg_id)  # refused here as download would refuse it
    with progress_bar(args, f"downloading {ref.name}", total=ref.size) as (bar, say):

        def progress(done: int, total: int) -> None:
            got[:] = [done, total]
            if bar is not None:
                bar(done, total)

        try:
            saved = trio.run(lambda: device.download(msg_id, Path(args.out), progress=progress, say=say))
        except ConnectError as exc:  # the node stayed away past the retries: what came is kept
            if not got:
                raise
            raise ConnectError(f"{exc}; {_download_stopped(msg_id, got)}", code=exc.code) from None
        except NodeError as exc:  # the sender's node or a relay is away now (a link broke): the same
            if not got or exc.code not in ("unreachable", "unavailable"):
                raise
            raise NodeError(exc.code, f"{exc}; {_download_stopped(msg_id, got)}") from None
    shell.show(args, {"id": msg_id.hex(), "path": str(saved)}, str(saved))


def _download_stopped(msg_id: bytes, got: list[int]) -> str:
    """What came is kept in a part file beside the destination (client/attachments.py)."""
    kept = f" ({got[0]} of {got[1]} bytes kept)" if got else ""
    return f"the download stopped{kept}: `sonet download {msg_id.hex()}` again resumes it"


def add_download_command(sub: argparse._SubParsersAction, shell: Shell, directory: Callable[[str], str] = str) -> None:
    p = sub.add_parser(
        "download", help="download and decrypt a received file",
        description="Download the file of MESSAGE_ID (a file message `recv` or `history` shows) through the home node, check "
        "its digests, decrypt it and save it under its name in DIR (never overwriting: `name (1).ext`); prints the saved path. "
        "A download that stops is resumed by the same command.",
    )  # fmt: skip
    p.add_argument("message_id", metavar="MESSAGE_ID", help="the file message's id (32 hex digits)")
    p.add_argument("--out", metavar="DIR", default=".", type=directory, help="the folder to save it in (default: the current one)")
    p.add_argument(
        "--thumbnail", action="store_true",
        help="save only the image's thumbnail its message carries (NAME.thumbnail.jpg; nothing is downloaded)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="one JSON object: id, path")
    p.set_defaults(fn=lambda args: cmd_download(args, shell))
