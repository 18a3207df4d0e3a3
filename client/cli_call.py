"""``sonet call ADDRESS | answer CALL_ID | ice CALL_ID CANDIDATE | hangup CALL_ID | reject
CALL_ID | list`` (issue 17 item 6): call signalling from the command line, on client/calls.py.
There is no media engine: the session description is the user's text (``--sdp`` or
``--sdp-file``; without them a description with no media), carried end to end encrypted; what
the peer sent back is in ``recv`` and in ``call list --json`` (``remote_sdp``, ``candidates``).
The calls are kept on the device, so each step may be a process of its own."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sonet.cli_output import iso_ms
from sonet.core.call import CONNECTED, ENDED, MAX_SDP_BYTES, CallTimeouts, why_ended
from sonet.core.errors import LocalProtocolError

from .cli_errors import positive

if TYPE_CHECKING:  # trio and the SDK are imported by the commands that run: `sonet --help` starts fast
    from .cli_groups import Shell
    from .state_call import KeptCall

__all__ = ["add_call_command", "call_json"]

_USAGE = "sonet call ADDRESS | answer CALL_ID | ice CALL_ID CANDIDATE | hangup CALL_ID | reject CALL_ID | list"
#: action -> the words it takes after its name
_ACTIONS = {"answer": ("CALL_ID",), "ice": ("CALL_ID", "CANDIDATE"), "hangup": ("CALL_ID",), "reject": ("CALL_ID",), "list": ()}


def call_json(kept: KeptCall, me: str) -> dict[str, Any]:
    """``from`` (the caller) and ``to`` (the callee), as recv and history name a 1:1
    conversation's sides; ``me``: this device's account."""
    from .calls import call_phase

    c = kept.call
    caller, callee = (me, c.peer) if kept.direction == "outgoing" else (c.peer, me)
    return {
        "id": c.id.hex(), "from": caller, "to": callee, "direction": kept.direction, "state": call_phase(c), "reason": c.reason,
        "started_at": iso_ms(kept.started_at), "answered_at": iso_ms(kept.answered_at), "ended_at": iso_ms(kept.ended_at),
        "remote_sdp": c.remote_sdp, "candidates": list(kept.candidates),
    }  # fmt: skip


def call_line(kept: KeptCall) -> str:
    c = kept.call
    who = f"to {c.peer}" if kept.direction == "outgoing" else f"from {c.peer}"
    if c.state == ENDED:
        how = f"ended{why_ended(c.reason)} at {iso_ms(kept.ended_at)}"
    elif c.state == CONNECTED:
        how = f"active since {iso_ms(kept.answered_at)}"
    else:
        how = f"ringing since {iso_ms(kept.started_at)}"
    return f"{c.id.hex()} {kept.direction} {who}: {how}"


def _sdp(args: argparse.Namespace) -> str:
    """The session description the user gave (at most MAX_SDP_BYTES), or one without media."""
    from .calls import NO_MEDIA_SDP

    if args.sdp_file is not None:
        try:
            with Path(args.sdp_file).expanduser().open("rb") as f:
                raw = f.read(MAX_SDP_BYTES + 1)
        except OSError as exc:
            raise LocalProtocolError(f"cannot read {args.sdp_file}: {exc.strerror or exc}", code="bad_input") from None
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise LocalProtocolError(f"{args.sdp_file} is not UTF-8 text", code="bad_input") from None
    else:
        text = args.sdp if args.sdp is not None else NO_MEDIA_SDP
    if not 0 < len(text.encode()) <= MAX_SDP_BYTES:
        raise LocalProtocolError(f"a session description is 1..{MAX_SDP_BYTES} bytes", code="bad_input")
    return text


def _words(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[str, list[str]]:
    """(action, its words); "call" with the address for ``sonet call ADDRESS``."""
    first, rest = args.words[0], list(args.words[1:])
    if first not in _ACTIONS:
        if "@" not in first:
            parser.error(f"{first!r} is neither an address (user@node) nor one of {', '.join(_ACTIONS)}: {_USAGE}")
        if rest:
            parser.error(f"`sonet call ADDRESS` takes one address (got {len(args.words)} words): {_USAGE}")
        return "call", [first]
    wanted = _ACTIONS[first]
    if len(rest) != len(wanted):
        parser.error(f"`sonet call {first}` takes {' '.join(wanted) or 'nothing more'}: {_USAGE}")
    if (args.sdp is not None or args.sdp_file is not None) and first != "answer":
        parser.error("--sdp and --sdp-file go with `sonet call ADDRESS` and `sonet call answer`")
    return first, rest


def cmd_call(args: argparse.Namespace, shell: Shell, parser: argparse.ArgumentParser) -> None:
    import trio

    from .calls import parse_call_id

    action, words = _words(args, parser)
    timeouts = CallTimeouts()
    if action == "list":
        device = shell.device(args)
        calls = device.calls(limit=args.limit)
        for kept in calls:
            shell.show(args, call_json(kept, device.state.profile().address), call_line(kept))
        if not calls and not args.json:
            print("no calls on this device", flush=True)
        return
    if action == "call":
        sdp = _sdp(args)
        device = shell.device(args)
        kept = trio.run(lambda: device.call(words[0], sdp))
        line = f"calling {kept.call.peer} (rings for {timeouts.ring_ms // 1000} s); call id {kept.call.id.hex()}"
        shell.show(args, call_json(kept, device.state.profile().address), line)
        return
    try:  # an id that is not one is a usage error, as a MESSAGE_ID's is (client/cli_gestures.py)
        call_id = parse_call_id(words[0])
    except LocalProtocolError as exc:
        parser.error(str(exc))
    device = shell.device(args)
    if action == "answer":
        sdp = _sdp(args)
        kept = trio.run(lambda: device.answer_call(call_id, sdp))
        line = f"answered call {call_id.hex()} from {kept.call.peer}"
    elif action == "ice":
        kept = trio.run(lambda: device.send_call_candidate(call_id, words[1]))
        line = f"sent a candidate for call {call_id.hex()} to {kept.call.peer}"
    elif action == "hangup":
        kept = trio.run(lambda: device.hang_up(call_id))
        line = f"hung up call {call_id.hex()} with {kept.call.peer}{why_ended(kept.call.reason)}"
    else:
        kept = trio.run(lambda: device.reject_call(call_id))
        line = f"rejected call {call_id.hex()} from {kept.call.peer}"
    shell.show(args, call_json(kept, device.state.profile().address), line)


def add_call_command(sub: argparse._SubParsersAction, shell: Shell) -> None:
    """``sonet call`` under the command line's subparsers (client/cli.py build_parser)."""
    p = sub.add_parser(
        "call", help="call signalling: call, answer, ice, hangup, reject, list",
        usage=f"{_USAGE} [--sdp TEXT | --sdp-file PATH] [--limit N] [--json]",
        description="Signalling only (there is no media engine): `sonet call ADDRESS` rings the contact's devices and prints "
        "the call id; `answer CALL_ID`, `ice CALL_ID CANDIDATE`, `hangup CALL_ID` (cancelled while it rings, ended once "
        "answered), `reject CALL_ID` (an incoming call); `list` shows the calls this device knows: ringing, active or ended "
        "(with why: ended, declined, cancelled, timeout, missed, failed). A call rings 60 s. Session descriptions and "
        "candidates are opaque text carried end to end encrypted; `recv` shows what the peer sends.",
    )  # fmt: skip
    p.add_argument("words", nargs="+", metavar="ADDRESS|ACTION", help="an address to call, or answer|ice|hangup|reject|list and its arguments")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--sdp", metavar="TEXT", help=f"your session description (offer or answer; at most {MAX_SDP_BYTES} bytes; default: one with no media)")
    how.add_argument("--sdp-file", metavar="PATH", help="read the session description from this file")
    p.add_argument("--limit", type=positive, default=20, metavar="N", help="list: how many calls, newest first (default 20)")
    p.add_argument(
        "--json", action="store_true",
        help="one JSON object per call: id, from (the caller), to (the callee), direction (outgoing|incoming), "
        "state (ringing|active|ended), reason, "
        "started_at, answered_at, ended_at, remote_sdp, candidates",
    )  # fmt: skip
    p.set_defaults(fn=lambda args: cmd_call(args, shell, p))
