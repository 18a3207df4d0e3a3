"""``sonet-node audit show|verify --data DIR``: read the audit log, and check its chain and signed
head (node/audit.py). Both only read; both work while the node runs."""

from __future__ import annotations

import argparse
import json
from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sonet.cli_output import emit, terminal_safe

if TYPE_CHECKING:
    from .audit_chain import Entry

# each command imports what it needs when it runs: building `sonet-node`'s parser imports none

__all__ = ["add_audit_commands"]


def _data(args: argparse.Namespace) -> Path:
    from .data_dir import require_directory

    data = Path(args.data).expanduser()
    require_directory(data)
    return data


def cmd_audit_show(args: argparse.Namespace) -> None:
    from .audit import iter_entries

    stream = iter_entries(_data(args))
    entries: Iterable[Entry]
    if args.since is not None:
        entries = islice((e for e in stream if e.seq > args.since), args.limit)
    elif args.limit is not None:
        entries = deque(stream, maxlen=args.limit)  # the newest N, without holding the rest
    else:
        entries = stream
    shown = 0
    for e in entries:
        shown += 1
        if args.json:
            emit({"seq": e.seq, "at": e.at, "kind": e.kind, "fields": e.fields, "hash": e.hash})
        else:
            print(terminal_safe(f"{e.seq} {_text(e.at)} {_text(e.kind)}" + "".join(f" {_text(k)}={_text(v)}" for k, v in e.fields.items())))
    if not shown and not args.json:
        print("no audit entries" + (f" after seq {args.since}" if args.since is not None else ""))


def _text(value: Any) -> str:
    """A field for a text line: a plain word as it is, anything else as JSON (a newline or a
    tab in a field must not start what looks like another entry)."""
    plain = isinstance(value, str) and value.isprintable() and value and " " not in value
    return value if plain else json.dumps(value, ensure_ascii=False)


def cmd_audit_verify(args: argparse.Namespace) -> None:
    from .audit import LOG_FILE, Broken, verify
    from .identity import load_node_key

    data = _data(args)
    key = load_node_key(data)
    try:
        result = verify(data, key.public)
    except Broken as exc:
        raise Broken(exc.what, f"{data / LOG_FILE} does not verify: {exc}", seq=exc.seq, line=exc.line) from None
    head = result.head
    if args.json:
        emit({
            "ok": True,
            "entries": result.count,
            "head_seq": head.seq if head else 0,
            "signed_at": head.signed_at if head else None,
            "fingerprint": key.public.fingerprint,
        })
    elif head is None:
        print("ok: the audit log is empty")
    else:
        print(f"ok: {result.count} entries, chain intact, head seq {head.seq} signed {head.signed_at} by {key.public.fingerprint}")


def _at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least {low}")
        return value

    return parse


def add_audit_commands(sub: Any, with_json: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    """``audit show`` and ``audit verify`` under ``sub`` (the top-level subparsers)."""
    audit = sub.add_parser("audit", help="show and verify the tamper-evident audit log (works while the node runs)",
                           description="Show and verify the node's tamper-evident audit log. Works while the node runs.")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    p = audit_sub.add_parser("show", help="print audit entries, oldest first",
                             description="Print audit entries, oldest first (without --since and with --limit N: the newest N). "
                             "Shows what parses; `audit verify` judges the file.")
    p.add_argument("--data", required=True, metavar="DIR", help="the node's data directory")
    p.add_argument("--since", type=_at_least(0), metavar="SEQ", help="only entries after this seq")
    p.add_argument("--limit", type=_at_least(1), metavar="N", help="at most N entries")
    p.set_defaults(fn=cmd_audit_show)
    with_json(p)
    p = audit_sub.add_parser("verify", help="check the hash chain and the node's signature of its head",
                             description="Recompute the hash chain of audit.log and check audit.head's signature with the node key; "
                             "exit 1 naming the first edited, removed, reordered, truncated or appended entry.")
    p.add_argument("--data", required=True, metavar="DIR", help="the node's data directory")
    p.set_defaults(fn=cmd_audit_verify)
    with_json(p)
