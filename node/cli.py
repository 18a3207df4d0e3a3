"""``sonet-node``: initialise, run and administer a node (ARCHITECTURE §9).

Every failure a user can cause is one line (``sonet-node: error: ...`` on stderr, or one JSON
error line on stdout with ``--json``, see ``sonet/cli_output.py``) and a non-zero exit: 1, 2 for
a usage error, 130 after Ctrl-C. A command that fails changes nothing on disk.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import fcntl
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from sonet.cli_output import emit, emit_error, iso_ms, terminal_safe
from sonet.cli_parse import parse_args
from sonet.cli_version import VersionAction
from sonet.core.crypto import CryptoMode
from sonet.core.errors import ProtocolError, sole_exception

# Building the parser (and --help, or a usage error) imports only these and the cli_* modules'
# parsers: each command imports what it needs when it runs. The store, the node's configuration
# (which loads the client API's limits) and trio cost most commands ~0.5 s; the server
# (node/app.py: links, metrics, the HTTP listener) only `run` needs.
from .cli_audit import add_audit_commands
from .cli_backup import add_backup_commands
from .logs import FORMATS as LOG_FORMATS, LEVELS as LOG_LEVELS

if TYPE_CHECKING:
    from sonet.core.crypto import SigningKey

    from .app import Node as _Node
    from .config import NodeConfig
    from .store import Peer, SqliteStore, StoreError

__all__ = ["main"]

PROG = "sonet-node"
_DAY_MS = 24 * 3600 * 1000
#: `invite --expires-days`: a token must be usable, and not outlive any sensible plan
INVITE_DAYS = (1, 365)


class UserError(Exception):
    """A mistake the user can fix; printed as one line, no traceback."""

    code = "invalid"
    exit_status = 1

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class UsageError(UserError):
    """The command line does not parse (argparse's complaint, as one line)."""

    code = "usage"
    exit_status = 2


class Interrupted(UserError):
    """Ctrl-C (or SIGTERM) arrived before the command finished."""

    code = "interrupted"
    exit_status = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


class Existing(NamedTuple):
    """An initialised data directory, checked: its configuration and identity key."""

    data: Path
    config: NodeConfig
    key: SigningKey


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data).expanduser()


def _existing_node(args: argparse.Namespace) -> Existing:
    """The data directory of an initialised node, refused (one line) when anything is missing
    or damaged -- before anything opens, and so could create or change, the database."""
    from .config import NodeConfig
    from .data_dir import check_database, require_directory
    from .identity import load_node_key

    data = _data_dir(args)
    require_directory(data)
    config = NodeConfig.load(data)
    key = load_node_key(data)
    if config.storage_database is None:  # node.db; a PostgreSQL database is checked as it opens
        check_database(data)
    return Existing(data, config, key)


def _store_failure(data: Path, exc: StoreError) -> UserError:
    from .config import CONFIG_FILE, NodeConfig
    from .data_dir import DB_FILE
    from .store import redact_url

    hint = ""
    if any(word in str(exc) for word in ("malformed", "not a database", "corrupt")):
        hint = ": restore node.db from a backup"
    elif "is newer than this software" in str(exc):
        # migrations only go forward: an older sonet must not write a newer schema
        hint = ": run the sonet version that wrote it or a newer one (a downgrade is refused), or restore a backup made by this version"
    database = NodeConfig.load(data).storage_database if (data / CONFIG_FILE).exists() else None
    where = data / DB_FILE if database is None else redact_url(database)
    return UserError(f"{where}: {exc}{hint}", code="store_error")


def _store_target(data: Path) -> str | Path:
    """The node's database: node.toml's [storage] database (PostgreSQL), else node.db."""
    from .config import NodeConfig
    from .data_dir import DB_FILE

    return NodeConfig.load(data).storage_database or data / DB_FILE


def _with_store(data: Path, fn: Callable[[SqliteStore], Any], *, answers: tuple[type[Exception], ...] = ()) -> Any:
    """``fn`` on the node's store; a StoreError is a database failure naming the database,
    except ``answers``: the store's refusals of what the command asked (its caller words them)."""
    import trio

    from .store import StoreError, open_store

    target = _store_target(data)

    async def go() -> Any:
        store = await open_store(target)
        try:
            return await fn(store)
        finally:
            await store.close()

    try:
        return trio.run(go)
    except answers:
        raise
    except StoreError as exc:
        raise _store_failure(data, exc) from None


def _json_times(value: Any) -> Any:
    """``value`` with every epoch-ms time (an int under a key ``at`` or ``*_at``) made ISO."""
    if isinstance(value, dict):
        return {
            k: iso_ms(v) if (k == "at" or k.endswith("_at")) and type(v) is int else _json_times(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_json_times(v) for v in value]
    return value


# Commands ---------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> None:
    from .config import CONFIG_FILE, NodeConfig, parse_listen
    from .data_dir import NODE_FILES, contents
    from .identity import create_node_key

    data = _data_dir(args)
    if data.exists() and not data.is_dir():
        raise UserError(f"{data} is a file, not a directory: give --data a new or empty directory", code="bad_data_dir")
    try:
        present = contents(data)
    except OSError as exc:
        raise UserError(f"cannot read {data}: {exc.strerror or exc}", code="bad_data_dir") from None
    ours = [name for name in present if name in NODE_FILES]
    if ours:
        raise UserError(
            f"{data} already holds a node ({', '.join(ours)}); it is not initialised again: choose another --data directory",
            code="bad_data_dir",
        )
    if present:
        shown = ", ".join(present[:5]) + (f" and {len(present) - 5} more" if len(present) > 5 else "")
        raise UserError(f"{data} is not empty (it holds {shown}): give --data a new or empty directory", code="bad_data_dir")
    parse_listen(args.listen)
    config = NodeConfig.from_dict(
        {
            "name": args.name,
            "listen": args.listen,
            "registration": args.registration,
            "minimum_crypto_mode": args.minimum_crypto_mode,
            **({"ops": {"listen": args.ops_listen}} if args.ops_listen is not None else {}),
            **({"storage": {"database": args.database}} if args.database is not None else {}),
        },
        source="arguments",
    )
    created = not data.exists()
    try:
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = create_node_key(data, CryptoMode.HYBRID)
        (data / CONFIG_FILE).write_text(config.to_toml())
        _with_store(data, lambda store: store.stats())  # creates and migrates the database
    except BaseException as exc:
        _undo_init(data, created)
        if isinstance(exc, OSError):
            raise UserError(f"cannot initialise {data}: {exc.strerror or exc}", code="bad_data_dir") from None
        raise
    if args.json:
        emit({"name": config.name, "data": str(data), "listen": config.listen, "fingerprint": key.public.fingerprint})
    else:
        print(f"initialised node {config.name} in {data}")
        print(f"fingerprint: {key.public.fingerprint}")
        print(f"start it with: sonet-node run --data {data}")


def _undo_init(data: Path, created: bool) -> None:
    """Remove what an interrupted or failed ``init`` wrote (the directory was empty or new)."""
    from .data_dir import DB_FILE, NODE_FILES

    for name in (*NODE_FILES, DB_FILE + "-wal", DB_FILE + "-shm", DB_FILE + "-journal"):
        try:
            (data / name).unlink()
        except OSError:
            pass
    if created:
        try:
            data.rmdir()
        except OSError:
            pass


@contextlib.contextmanager
def _start_up_imports() -> Iterator[None]:
    """`run` imports ~520 modules whose objects live as long as the node: the cyclic GC went
    over them ~100 times while they loaded (~30 ms of a start's CPU). Off while they load, and
    they are frozen after (gc.freeze), so the running node's full collections skip them."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def cmd_run(args: argparse.Namespace) -> None:
    with _start_up_imports():
        from .config import ConfigError, parse_listen
        from .data_dir import LOCK_FILE, instance_files
        from .logs import configure_logging

    data, config, _key = _existing_node(args)
    # --listen/--ops-listen: this process's own addresses (several processes share one data
    # directory and PostgreSQL database, node/cluster.py)
    overrides = {"listen": args.listen} if args.listen is not None else {}
    if args.ops_listen is not None:
        overrides["ops_listen"] = args.ops_listen
    for value in overrides.values():
        try:
            parse_listen(value)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
    config = dataclasses.replace(config, **overrides)
    shared = config.storage_database is not None
    own_lock, runtime_file = instance_files(config.listen, shared=shared)
    # node.lock: exclusive on SQLite (one process per node), shared on PostgreSQL; either way
    # `sonet-node restore` sees the node running. On PostgreSQL one more, per listen address.
    locks: list[Any] = []
    try:
        for name, mode in ((LOCK_FILE, fcntl.LOCK_SH if shared else fcntl.LOCK_EX), (own_lock, fcntl.LOCK_EX)):
            if name is None:
                continue
            try:
                lock = open(data / name, "w")
            except OSError as exc:
                raise UserError(f"cannot create {data / name}: {exc.strerror or exc}", code="bad_data_dir") from None
            locks.append(lock)
            try:
                fcntl.flock(lock, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                where = f" with --listen {config.listen} (give each process its own listen address)" if name == own_lock else ""
                raise UserError(f"another sonet-node is already running on {data}{where}", code="already_running") from None
        configure_logging(args.log_level, args.log_format)
        _run_locked(data, config, as_json=args.json, runtime_file=runtime_file)
    finally:
        for lock in locks:
            lock.close()


#: node/app.py's Node, imported by `run` alone (it loads the whole server); None until then, and
#: a test may stand in for it
Node: type[_Node] | None = None


def _run_locked(data: Path, config: NodeConfig, *, as_json: bool, runtime_file: str) -> None:
    with _start_up_imports():
        import trio

        from .app import ListenError, Node as Server
        from .store import StoreError

    node = (Node or Server)(data, config)
    node.runtime_file = runtime_file
    listening = False
    interrupted = False

    async def main() -> None:
        nonlocal listening
        # the receiver outlives the nursery: a signal at any moment, even during start-up, stops it
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:

                async def stop_on_signal() -> None:
                    nonlocal interrupted
                    async for signum in signals:
                        if listening:
                            logging.getLogger("sonet.node").info("received %s, stopping", signal.Signals(signum).name)
                        else:
                            interrupted = True
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(stop_on_signal)
                url = await nursery.start(node.run)
                listening = True
                fingerprint = node.identity.public.fingerprint
                ops_url = None
                if node.ops_port is not None and config.ops_listen is not None:
                    ops_url = f"http://{config.ops_listen.rpartition(':')[0]}:{node.ops_port}"
                if as_json:
                    emit({"name": config.name, "url": url, "client_url": f"{url}/client", "fingerprint": fingerprint, "pid": os.getpid(), **({"ops_url": ops_url} if ops_url else {})})
                else:
                    print(f"sonet node {config.name} listening on {url} (devices: {url}/client)", flush=True)
                    print(f"fingerprint: {fingerprint}", flush=True)
                    if ops_url is not None:
                        print(f"operations: {ops_url} (/metrics, /health, /ready)", flush=True)

    try:
        trio.run(main)
    except BaseExceptionGroup as group:
        error = sole_exception(group)
        if isinstance(error, ListenError):
            raise UserError(error.strerror or str(error), code="cannot_listen") from None
        if isinstance(error, OSError) and not listening:
            raise UserError(_start_failure(data, error), code="cannot_start") from None
        if isinstance(error, StoreError) and not listening:
            raise _store_failure(data, error) from None
        raise
    if interrupted:
        raise Interrupted("interrupted while starting: the node did not start listening and has stopped")


def _start_failure(data: Path, exc: OSError) -> str:
    """One line naming what stopped the start (a full disk is not a port problem)."""
    where = f" ({exc.filename})" if exc.filename else ""
    room = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    hint = f"; make room on the disk holding {data} and start it again" if room else ""
    return f"cannot start the node: {exc.strerror or exc}{where}{hint}"


def cmd_invite(args: argparse.Namespace) -> None:
    from sonet.core.invite import SECRET_BYTES, hash_invite_secret, make_invite

    from .audit import record
    from .clock import now_ms

    low, high = INVITE_DAYS
    if not low <= args.expires_days <= high:
        raise UsageError(f"--expires-days {args.expires_days} is not allowed (a whole number of days from {low} to {high})")
    data, _config, key = _existing_node(args)
    secret = os.urandom(SECRET_BYTES)
    token = make_invite(key.public.fingerprint, secret)
    expires_at = now_ms() + args.expires_days * _DAY_MS
    secret_text = token.split(".", 1)[1]
    _with_store(data, lambda s: s.add_invite(hash_invite_secret(secret_text), now=now_ms(), expires_at=expires_at))
    # the audit log gets the prefix of the token's hash (what `invites list` shows), never the token
    record(data, "invite_created", hash_prefix=hash_invite_secret(secret_text).hex()[:12], expires_at=iso_ms(expires_at))
    if args.json:
        emit({"token": token, "expires_at": iso_ms(expires_at)})
    else:
        print(token)


def cmd_fingerprint(args: argparse.Namespace) -> None:
    from .data_dir import require_directory
    from .identity import load_node_key

    data = _data_dir(args)
    require_directory(data)
    key = load_node_key(data)
    if args.json:
        emit({"fingerprint": key.public.fingerprint})
    else:
        print(key.public.fingerprint)


def cmd_config_check(args: argparse.Namespace) -> None:
    from .config import CONFIG_FILE

    data, config, _key = _existing_node(args)
    path = data / CONFIG_FILE
    if args.json:
        ops = {} if config.ops_listen is None else {"ops_listen": config.ops_listen}
        emit({"ok": True, "config": str(path), "name": config.name, "listen": config.listen, **ops})
    else:
        on = "" if config.ops_listen is None else f", operations on {config.ops_listen}"
        print(f"ok: {path} (node {config.name}, listening on {config.listen}{on})")


def _runtimes(data: Path) -> list[dict]:
    """What each running process wrote (run.json; with several processes on PostgreSQL, each
    live one's run-HOST_PORT.json); empty when none runs."""
    from .data_dir import RUNTIME_FILE

    found = []
    for path in (data / RUNTIME_FILE, *sorted(data.glob("run-*.json"))):
        try:
            info = json.loads(path.read_text())
            os.kill(int(info["pid"]), 0)
            found.append(info)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def _peer_json(peer: Peer) -> dict:
    return {"name": peer.name, "url": peer.url, "fingerprint": peer.fingerprint, "via": peer.via, "added_at": iso_ms(peer.added_at)}


def cmd_peer_add(args: argparse.Namespace) -> None:
    from .audit import record
    from .clock import now_ms
    from .store import Peer, PeerExists, PeerInvalid

    data, config, _key = _existing_node(args)
    if args.name.strip().lower() == config.name:
        raise UserError(f"{config.name} is this node's own name; a peer is another node")
    try:
        peer = _with_store(
            data, lambda s: s.add_peer(name=args.name, url=args.url, fingerprint=args.fingerprint, via=args.via, now=now_ms()),
            answers=(PeerExists, PeerInvalid),
        )
    except (PeerExists, PeerInvalid) as exc:
        raise UserError(str(exc), code=exc.code) from None
    assert isinstance(peer, Peer)
    record(data, "peer_added", peer=peer.name, url=peer.url, fingerprint=peer.fingerprint, via=peer.via)
    if args.json:
        emit(_peer_json(peer))
    else:
        print(f"added peer {peer.name} at {peer.url}" + (f" via {peer.via}" if peer.via else ""))


def cmd_peer_list(args: argparse.Namespace) -> None:
    from sonet.federation.routes import Routes

    data, config, _key = _existing_node(args)
    peers = _with_store(data, lambda s: s.peers())
    assert isinstance(peers, list)
    routes = Routes(config.name, peers)
    if args.json:
        for p in peers:  # one line per peer, none when there are none
            emit({**_peer_json(p), "route": routes.route(p.name)})
    elif not peers:
        print("no peers configured")
    else:
        for p in peers:
            route = " -> ".join(routes.route(p.name)) or "none (its relay is not a direct peer)"
            print(f"{p.name}  {p.url}  {p.fingerprint}" + (f"  via {p.via}" if p.via else "") + f"  route: {route}")


def cmd_peer_remove(args: argparse.Namespace) -> None:
    from .audit import record
    from .store import PeerInvalid

    data, _config, _key = _existing_node(args)
    try:
        removed = _with_store(data, lambda s: s.remove_peer(args.name), answers=(PeerInvalid,))
    except PeerInvalid as exc:
        raise UserError(str(exc), code=exc.code) from None
    if not removed:
        raise UserError(f"no peer named {args.name.strip().lower()} is configured (see `sonet-node peer list`)")
    record(data, "peer_removed", peer=args.name.strip().lower())
    if args.json:
        emit({"removed": args.name.strip().lower()})
    else:
        print(f"removed peer {args.name.strip().lower()}")


#: `status --watch --interval`: often enough to follow, rare enough not to load the database
WATCH_INTERVAL_S = (0.2, 3600.0)
WATCH_DEFAULT_S = 2.0
#: cursor home and clear screen: a watched status is redrawn in place on a terminal
_CLEAR = "\x1b[H\x1b[2J"


def cmd_status(args: argparse.Namespace) -> None:
    if not args.watch:
        if args.interval is not None:  # it would be ignored: the user meant to watch
            raise UsageError("--interval goes with --watch (usage: sonet-node status --data DIR --watch [--interval S])")
        _show_status(args)
        return
    if args.interval is None:
        args.interval = WATCH_DEFAULT_S
    low, high = WATCH_INTERVAL_S
    if not low <= args.interval <= high:
        raise UsageError(f"--interval {args.interval:g} is not allowed (seconds, from {low:g} to {high:g})")
    redraw = not args.json and sys.stdout.isatty()
    try:
        while True:
            if redraw:
                print(_CLEAR, end="")
            try:
                _show_status(args)
            except UserError as exc:
                if exc.code != "store_error":
                    raise
                # e.g. the database locked for longer than the busy timeout: said, and watched on
                emit_error("sonet-node", exc.code, str(exc), as_json=args.json)
            if not redraw and not args.json:
                print(flush=True)  # a blank line between the snapshots of a piped watch
            time.sleep(args.interval)
    except BaseException as exc:  # Ctrl-C ends a watch: that is how it is meant to stop
        if isinstance(exc, KeyboardInterrupt) or (
            isinstance(exc, BaseExceptionGroup) and exc.subgroup(KeyboardInterrupt) is not None
        ):
            return
        raise


def _show_status(args: argparse.Namespace) -> None:
    from .store import HeadRow, redact_url

    data, config, key = _existing_node(args)
    running = _runtimes(data)
    runtime = running[0] if running else None
    stats = _with_store(data, lambda s: s.stats())
    # live link state comes from the running node (run.json); without it only the table is known
    federation = (runtime or {}).get("federation") or _federation_at_rest(data, config)
    head = _with_store(data, lambda s: s.latest_head())
    assert head is None or isinstance(head, HeadRow)
    status = {
        "name": config.name,
        "fingerprint": key.public.fingerprint,
        "listen": config.listen,
        "running": runtime is not None,
        "pid": runtime["pid"] if runtime else None,
        "url": runtime["url"] if runtime else None,
        # every process serving this node (several on PostgreSQL); pid and url above are the first's
        "processes": [{"pid": r["pid"], "url": r.get("url")} for r in running],
        "registration": config.registration,
        "minimum_crypto_mode": config.minimum_crypto_mode.value,
        # a PostgreSQL database, its password left out
        **({"database": redact_url(config.storage_database)} if config.storage_database else {}),
        **stats,
        # this node's own newest signed head (None until the node first ran)
        "directory": None if head is None else {
            "tree_size": head.size,
            "root_hash": head.root.hex(),
            "cosignatures": len(head.cosignatures),
        },
        "federation": federation,
    }
    if args.json:
        emit(_json_times(status))
    else:
        for field, value in status.items():
            if field == "running":  # in words, with where, not Python's True/None
                where = "; ".join(f"pid {r['pid']}, {r['url']}" for r in running)
                many = f"{len(running)} processes: " if len(running) > 1 else ""
                print(f"running: yes ({many}{where})" if value else "running: no")
            elif field not in ("pid", "url", "processes", "directory", "federation"):
                print(f"{field}: {value}")
        if head is None:
            print("directory: no signed head yet")
        else:
            n = len(head.cosignatures)
            print(f"directory: tree size {head.size}, root {head.root.hex()[:16]}…, {n} cosignature{'' if n == 1 else 's'}")
        for line in _federation_lines(federation):
            print(line)


def _one_line(text: object) -> str:
    """Text from the network for one line of a terminal: whitespace runs (newlines too) as one
    space, control characters replaced."""
    return terminal_safe(" ".join(str(text).split()))


def _federation_lines(federation: dict) -> list[str]:
    """The federation section for people: one line per peer, then the inbound counters."""
    lines = [f"peers: {len(federation['peers'])} (outbox: {federation.get('outbox', 0)} queued)"]
    for peer in federation["peers"]:
        route = " -> ".join(peer["route"]) or "none"
        error = peer.get("last_error")
        # the message and code may be a peer's own words (an ErrorFrame it answered a push with)
        why = f", last error: {_one_line(error['message'])} ({_one_line(error['code'])})" if error and peer.get("link") != "connected" else ""
        witnessed = "" if peer.get("witnessed_size") is None else f", witnessed its directory up to size {peer['witnessed_size']}"
        lines.append(
            f"  {peer['name']}: route {route}, link {peer.get('link') or 'not running'}, queued {peer['queued']}{why}{_next_attempt(peer)}{witnessed}"
        )
    for split in (federation.get("directory") or {}).get("splits", []):
        lines.append(
            f"SPLIT VIEW: {split['node']} showed two versions of its key directory ({split['kind']}, seen in {split['source']}"
            f" at {iso_ms(split['detected_at'])}); its keys are refused"
        )
    if "admitted" in federation:
        refused = ", ".join(f"{n} {reason}" for reason, n in federation["refused_by_reason"].items())
        lines.append(f"inbound links: {federation['links_open']} open, {federation['admitted']} admitted, {federation['refused']} refused" + (f" ({refused})" if refused else ""))
        last = (federation.get("last_refusals") or [None])[-1]
        if last is not None:
            lines.append(f"  last refused: {_refusal_words(last)}")
    return lines


def _next_attempt(peer: dict) -> str:
    """When the running node dials a peer it has no link to next (nothing while it has one, is
    dialling it, or does not run)."""
    if peer.get("link") in (None, "connected", "connecting", "unroutable"):
        return ""
    at = peer.get("next_attempt_at")
    if at is None:
        return ", no attempt planned (an item queued for it, or a lookup, dials it)"
    return f", next attempt at {iso_ms(at) if isinstance(at, int) else at}"


def _refusal_words(refusal: dict) -> str:
    """One refused inbound link for people: from where, the name it announced (anyone can
    announce any name: marked unverified), the configured peer it concerns, why and when."""
    name = refusal.get("unverified_name")
    who = f"a node announcing {_one_line(name)} (unverified)" if name else "a node announcing no name"
    address = refusal.get("address")
    where = f" from {address}" if address else ""
    peer = refusal.get("peer")
    concerns = f", peer {peer}" if peer and peer != name else ""
    at = refusal["at"]
    when = iso_ms(at) if isinstance(at, int) else at
    return f"{who}{where}{concerns}: {refusal['reason']} at {when}"


def _federation_at_rest(data: Path, config: NodeConfig) -> dict:
    """The federation section of a node that is not running: its peers and queued items."""
    from sonet.federation.routes import Routes
    from sonet.federation.status import NO_LINK, directory_section, peer_entry

    peers = _with_store(data, lambda s: s.peers())
    counts = _with_store(data, lambda s: s.outbox_counts())
    assert isinstance(peers, list) and isinstance(counts, dict)
    witnessed = _with_store(data, lambda s: s.witnessed_all())
    splits = _with_store(data, lambda s: s.splits())
    assert isinstance(witnessed, list) and isinstance(splits, list)
    sizes = {w.node: w.size for w in witnessed}
    kinds = {x.node: x.kind for x in splits}
    routes = Routes(config.name, peers)
    entries = [peer_entry(routes, p, counts, NO_LINK, witnessed_size=sizes.get(p.name), split=kinds.get(p.name)) for p in peers]
    return {"outbox": sum(counts.values()), "peers": entries, "directory": directory_section(witnessed, splits)}


def cmd_directory_head(args: argparse.Namespace) -> None:
    from sonet.core.keydir import decode_cosignature, verify_head

    from .store import HeadRow

    data, config, key = _existing_node(args)
    row = _with_store(data, lambda s: s.latest_head())
    if row is None:
        raise UserError(f"the key directory of {config.name} has no signed head yet (it signs one when the node starts)")
    assert isinstance(row, HeadRow)
    try:
        head = verify_head(row.head, node_key=key.public, node=config.name)
        cosignatures = [decode_cosignature(raw) for raw in row.cosignatures]
    except ProtocolError as exc:
        raise UserError(f"the stored head does not check out: {exc}") from None
    if args.json:
        emit({
            "node": head.node,
            "tree_size": head.size,
            "root_hash": head.root.hex(),
            "signed_at": iso_ms(head.at),
            "signed_head": head.raw.hex(),
            "cosignatures": [
                {
                    "witness": c.witness,
                    "tree_size": c.size,
                    "root_hash": c.root.hex(),
                    "cosigned_at": iso_ms(c.at),
                    "cosignature": c.raw.hex(),
                }
                for c in cosignatures
            ],
        })
    else:
        print(f"{head.node}: tree size {head.size}, root {head.root.hex()}, signed {iso_ms(head.at)}")
        for c in cosignatures:
            print(f"  cosigned by {c.witness} at {iso_ms(c.at)}")


# Parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Run and administer a Sonet node.")
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_json(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--json", action="store_true", help="machine-readable output: JSON Lines, errors included")
        return p

    def command(name: str, fn: Callable[[argparse.Namespace], None], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--data", required=True, metavar="DIR", help="the node's data directory")
        p.set_defaults(fn=fn)
        return with_json(p)

    p = command("init", cmd_init, "create a node in a new or empty directory: configuration, identity key and database")
    p.add_argument("--name", required=True, help="the node's federation name, e.g. alpha.example")
    p.add_argument("--listen", required=True, metavar="HOST:PORT", help="address to listen on, e.g. 127.0.0.1:7480")
    p.add_argument("--registration", choices=("invite", "open"), default="invite", help="who may register (default: invite)")
    p.add_argument(
        "--database", metavar="URL",
        help="keep the node's data in this PostgreSQL database, postgresql://USER:PASSWORD@HOST/DB"
        " (node.toml [storage] database; default: node.db in the data directory)",
    )
    p.add_argument(
        "--ops-listen", metavar="HOST:PORT",
        help="serve /metrics, /health and /ready over HTTP here (node.toml [ops] listen; default: off)",
    )
    p.add_argument(
        "--minimum-crypto-mode",
        choices=[m.value for m in CryptoMode],
        default="hybrid",
        help="weakest crypto mode accepted from devices and peers (default: hybrid)",
    )

    p = command("run", cmd_run, "run the node in the foreground (SIGTERM or Ctrl-C stops it gracefully)")
    p.add_argument(
        "--listen", metavar="HOST:PORT",
        help="listen here instead of node.toml's listen (with a PostgreSQL database several processes,"
        " each on its own address, serve one node)",
    )
    p.add_argument("--ops-listen", metavar="HOST:PORT", help="the operations listener here instead of node.toml's [ops] listen")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="least severe log records shown (default: info)")
    p.add_argument("--log-format", choices=LOG_FORMATS, default="text", help="log lines on stderr: text or json (JSON Lines; default: text)")

    p = command("invite", cmd_invite, "print a one-time registration token (works while the node runs)")
    p.add_argument(
        "--expires-days", type=int, default=7, metavar="DAYS",
        help=f"days until the token expires, {INVITE_DAYS[0]} to {INVITE_DAYS[1]} (default: 7)",
    )

    command("fingerprint", cmd_fingerprint, "print the node identity fingerprint that peers and devices pin")
    p = command("status", cmd_status, "show the node's configuration, state and counters")
    p.add_argument("--watch", action="store_true", help="redraw it every --interval seconds until Ctrl-C (--json: one object each time)")
    p.add_argument("--interval", type=float, metavar="S", help=f"seconds between redraws with --watch (default: {WATCH_DEFAULT_S:g})")
    add_backup_commands(command)

    config = sub.add_parser("config", help="check node.toml and the data directory without starting the node",
                            description="Check node.toml and the data directory without starting the node.")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    p = config_sub.add_parser("check", help="check the configuration; print ok or the first problem",
                              description="Check node.toml (unknown keys, types, ranges), node.key and node.db; "
                              "print ok, or the first problem and exit 1. Changes nothing.")
    p.add_argument("--data", required=True, metavar="DIR", help="the node's data directory")
    p.set_defaults(fn=cmd_config_check)
    with_json(p)

    peer = sub.add_parser("peer", help="pin, list and forget peer nodes (takes effect without a restart)",
                          description="Pin, list and forget peer nodes. Changes take effect without a restart, in a running node within a quarter of a second.")
    peer_sub = peer.add_subparsers(dest="peer_command", required=True, metavar="ACTION")

    def peer_command(name: str, fn: Callable[[argparse.Namespace], None], help_text: str) -> argparse.ArgumentParser:
        p = peer_sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--data", required=True, metavar="DIR", help="the node's data directory")
        p.set_defaults(fn=fn)
        return with_json(p)

    p = peer_command("add", cmd_peer_add, "pin a peer node by name, URL and identity fingerprint")
    p.add_argument("--name", required=True, help="the peer's node name, e.g. beta.example")
    p.add_argument("--url", required=True, help="the peer's ws:// or wss:// URL (without /federation; with --via it is kept, not dialled)")
    p.add_argument("--fingerprint", required=True, metavar="FP", help="the peer's `sonet-node fingerprint`")
    p.add_argument("--via", metavar="RELAY", help="name of an already configured peer that relays for this one (for groups, name it on both sides: that peer pins this node --via the same relay)")
    peer_command("list", cmd_peer_list, "list the pinned peer nodes")
    p = peer_command("remove", cmd_peer_remove, "forget a peer node")
    p.add_argument("--name", required=True, help="the peer's node name")

    # imported here: they use this module's helpers (UserError, _with_store, ...)
    from .cli_accounts import add_accounts_commands
    from .cli_invites import add_invites_commands

    add_accounts_commands(sub, with_json)
    add_invites_commands(sub, with_json)

    directory = sub.add_parser("directory", help="inspect this node's key directory (works while the node runs)",
                               description="Inspect this node's key directory. Works while the node runs.")
    directory_sub = directory.add_subparsers(dest="directory_command", required=True, metavar="ACTION")
    p = directory_sub.add_parser("head", help="print the newest signed tree head and its cosignatures",
                                 description="Print the newest signed tree head and the witnesses' cosignatures of it.")
    p.add_argument("--data", required=True, metavar="DIR", help="the node's data directory")
    p.set_defaults(fn=cmd_directory_head)
    with_json(p)
    add_audit_commands(sub, with_json)
    return parser


#: exceptions that are a user's to fix (defining module, class), with the --json code of those
#: that carry none; named, not imported: an exception of a module the command never imported
#: cannot occur
_USER_ERRORS: dict[tuple[str, str], str] = {
    ("sonet.node.config", "ConfigError"): "bad_config",
    ("sonet.node.data_dir", "DataDirError"): "bad_data_dir",
    ("sonet.node.identity", "NodeKeyError"): "bad_node_key",
    ("sonet.core.errors", "LocalProtocolError"): "invalid",
    ("sonet.node.backup", "BackupError"): "backup_error",
    ("sonet.transport.tls", "TlsError"): "bad_tls",
    ("sonet.node.audit", "AuditError"): "audit_error",
    ("sonet.node.audit_chain", "Broken"): "audit_tampered",
}


def _failure(exc: BaseException) -> tuple[str, str, int] | None:
    """(code, message, exit status) of a failure to report as one line; None for a bug."""
    if isinstance(exc, UserError):
        return exc.code, str(exc), exc.exit_status
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted.code, "interrupted (Ctrl-C): the command did not finish", Interrupted.exit_status
    if isinstance(exc, BaseExceptionGroup):
        # Ctrl-C inside trio arrives wrapped; any other group is a bug and keeps its traceback
        sole = sole_exception(exc)
        if sole is not exc:
            return _failure(sole)
        if exc.subgroup(KeyboardInterrupt) is not None:
            return _failure(KeyboardInterrupt())
        return None
    for (module, name), code in _USER_ERRORS.items():
        kind = getattr(sys.modules.get(module), name, None)
        if kind is not None and isinstance(exc, kind):
            return code, str(exc), 1
    return None


@cache
def _parser() -> argparse.ArgumentParser:
    """``build_parser``'s, built once per process (a parse does not change it): ~4 ms of CPU,
    paid again by every command the tests run in one process."""
    return build_parser()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    as_json = "--json" in argv
    try:
        try:
            args = parse_args(_parser(), argv)
        except SystemExit as done:  # --help, --version
            return done.code if isinstance(done.code, int) else 0
        as_json = bool(getattr(args, "json", False))
        args.fn(args)
    except BrokenPipeError:
        # the reader went away (`| head`): not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except BaseException as exc:
        failure = _failure(exc)
        if failure is None:
            raise
        code, message, status = failure
        emit_error(PROG, code, message, as_json=as_json)
        return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
