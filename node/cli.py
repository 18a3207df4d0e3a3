"""``sonet-node``: initialise, run and administer a node (ARCHITECTURE §9)."""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import trio

from sonet.core.crypto import CryptoMode
from sonet.core.errors import LocalProtocolError, ProtocolError, sole_exception
from sonet.core.invite import SECRET_BYTES, hash_invite_secret, make_invite
from sonet.core.keydir import decode_cosignature, verify_head

from sonet.federation.routes import Routes
from sonet.federation.status import NO_LINK, directory_section, peer_entry

from .app import DB_FILE, RUNTIME_FILE, Node, now_ms
from .config import CONFIG_FILE, ConfigError, NodeConfig, parse_listen
from .identity import KEY_FILE, create_node_key, load_node_key
from .store import HeadRow, Peer, PeerExists, PeerInvalid, SqliteStore

__all__ = ["main"]

_DAY_MS = 24 * 3600 * 1000


class UserError(Exception):
    """A mistake the user can fix; printed as one line, no traceback."""


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data).expanduser()


def _existing_node(args: argparse.Namespace) -> tuple[Path, NodeConfig]:
    data = _data_dir(args)
    return data, NodeConfig.load(data)


def _with_store(data: Path, fn: Callable[[SqliteStore], object]) -> object:
    async def go() -> object:
        store = await SqliteStore.open(data / DB_FILE)
        try:
            return await fn(store)  # type: ignore[misc]
        finally:
            await store.close()

    return trio.run(go)


# Commands ---------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> None:
    data = _data_dir(args)
    if (data / CONFIG_FILE).exists() or (data / KEY_FILE).exists():
        raise UserError(f"{data} already holds a node; choose another --data directory")
    parse_listen(args.listen)
    config = NodeConfig.from_dict(
        {
            "name": args.name,
            "listen": args.listen,
            "registration": args.registration,
            "minimum_crypto_mode": args.minimum_crypto_mode,
        },
        source="arguments",
    )
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = create_node_key(data, CryptoMode.HYBRID)
    (data / CONFIG_FILE).write_text(config.to_toml())
    _with_store(data, lambda store: store.stats())  # creates and migrates the database
    if args.json:
        print(json.dumps({"name": config.name, "data": str(data), "listen": config.listen, "fingerprint": key.public.fingerprint}))
    else:
        print(f"initialised node {config.name} in {data}")
        print(f"fingerprint: {key.public.fingerprint}")
        print(f"start it with: sonet-node run --data {data}")


def cmd_run(args: argparse.Namespace) -> None:
    data, config = _existing_node(args)
    lock = open(data / "node.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UserError(f"another sonet-node is already running on {data}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    node = Node(data, config)
    listening = False

    async def main() -> None:
        nonlocal listening
        async with trio.open_nursery() as nursery:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                url = await nursery.start(node.run)
                listening = True
                print(f"sonet node {config.name} listening on {url} (devices: {url}/client)", flush=True)
                print(f"fingerprint: {node.identity.public.fingerprint}", flush=True)
                async for signum in signals:
                    logging.getLogger("sonet.node").info("received %s, stopping", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(main)
    except BaseExceptionGroup as group:
        error = sole_exception(group)
        if isinstance(error, OSError) and not listening:
            raise UserError(f"cannot listen on {config.listen}: {error.strerror or error}") from None
        raise
    finally:
        lock.close()


def cmd_invite(args: argparse.Namespace) -> None:
    data, _config = _existing_node(args)
    fingerprint = load_node_key(data).public.fingerprint
    secret = os.urandom(SECRET_BYTES)
    token = make_invite(fingerprint, secret)
    expires_at = now_ms() + args.expires_days * _DAY_MS
    secret_text = token.split(".", 1)[1]
    _with_store(data, lambda s: s.add_invite(hash_invite_secret(secret_text), now=now_ms(), expires_at=expires_at))
    if args.json:
        print(json.dumps({"token": token, "expires_at": expires_at}))
    else:
        print(token)


def cmd_fingerprint(args: argparse.Namespace) -> None:
    data = _data_dir(args)
    try:
        key = load_node_key(data)
    except FileNotFoundError:
        raise UserError(f"no node key in {data}: run `sonet-node init` first") from None
    print(json.dumps({"fingerprint": key.public.fingerprint}) if args.json else key.public.fingerprint)


def _runtime(data: Path) -> dict | None:
    try:
        info = json.loads((data / RUNTIME_FILE).read_text())
        os.kill(int(info["pid"]), 0)
        return info
    except (FileNotFoundError, ValueError, KeyError, ProcessLookupError, PermissionError, TypeError):
        return None


def _peer_json(peer: Peer) -> dict:
    return {"name": peer.name, "url": peer.url, "fingerprint": peer.fingerprint, "via": peer.via, "added_at": peer.added_at}


def cmd_peer_add(args: argparse.Namespace) -> None:
    data, config = _existing_node(args)
    if args.name.strip().lower() == config.name:
        raise UserError(f"{config.name} is this node's own name; a peer is another node")
    try:
        peer = _with_store(
            data, lambda s: s.add_peer(name=args.name, url=args.url, fingerprint=args.fingerprint, via=args.via, now=now_ms())
        )
    except (PeerExists, PeerInvalid) as exc:
        raise UserError(str(exc)) from None
    assert isinstance(peer, Peer)
    if args.json:
        print(json.dumps(_peer_json(peer), sort_keys=True))
    else:
        print(f"added peer {peer.name} at {peer.url}" + (f" via {peer.via}" if peer.via else ""))


def cmd_peer_list(args: argparse.Namespace) -> None:
    data, config = _existing_node(args)
    peers = _with_store(data, lambda s: s.peers())
    assert isinstance(peers, list)
    routes = Routes(config.name, peers)
    if args.json:
        print(json.dumps([{**_peer_json(p), "route": routes.route(p.name)} for p in peers], sort_keys=True))
    elif not peers:
        print("no peers configured")
    else:
        for p in peers:
            route = " -> ".join(routes.route(p.name)) or "none (its relay is not a direct peer)"
            print(f"{p.name}  {p.url}  {p.fingerprint}" + (f"  via {p.via}" if p.via else "") + f"  route: {route}")


def cmd_peer_remove(args: argparse.Namespace) -> None:
    data, _config = _existing_node(args)
    try:
        removed = _with_store(data, lambda s: s.remove_peer(args.name))
    except PeerInvalid as exc:
        raise UserError(str(exc)) from None
    if not removed:
        raise UserError(f"no peer named {args.name.strip().lower()} is configured (see `sonet-node peer list`)")
    if args.json:
        print(json.dumps({"removed": args.name.strip().lower()}))
    else:
        print(f"removed peer {args.name.strip().lower()}")


def cmd_status(args: argparse.Namespace) -> None:
    data, config = _existing_node(args)
    runtime = _runtime(data)
    stats = _with_store(data, lambda s: s.stats())
    # live link state comes from the running node (run.json); without it only the table is known
    federation = (runtime or {}).get("federation") or _federation_at_rest(data, config)
    head = _with_store(data, lambda s: s.latest_head())
    assert head is None or isinstance(head, HeadRow)
    status = {
        "name": config.name,
        "fingerprint": load_node_key(data).public.fingerprint,
        "listen": config.listen,
        "running": runtime is not None,
        "pid": runtime["pid"] if runtime else None,
        "url": runtime["url"] if runtime else None,
        "registration": config.registration,
        "minimum_crypto_mode": config.minimum_crypto_mode.value,
        **stats,  # type: ignore[dict-item]
        # this node's own newest signed head (None until the node first ran)
        "directory": None if head is None else {
            "tree_size": head.size,
            "root_hash": head.root.hex(),
            "cosignatures": len(head.cosignatures),
        },
        "federation": federation,
    }
    if args.json:
        print(json.dumps(status, sort_keys=True))
    else:
        for key, value in status.items():
            if key not in ("directory", "federation"):
                print(f"{key}: {value}")
        if head is None:
            print("directory: no signed head yet")
        else:
            n = len(head.cosignatures)
            print(f"directory: tree size {head.size}, root {head.root.hex()[:16]}…, {n} cosignature{'' if n == 1 else 's'}")
        for line in _federation_lines(federation):
            print(line)


def _federation_lines(federation: dict) -> list[str]:
    """The federation section for people: one line per peer, then the inbound counters."""
    lines = [f"peers: {len(federation['peers'])} (outbox: {federation.get('outbox', 0)} queued)"]
    for peer in federation["peers"]:
        route = " -> ".join(peer["route"]) or "none"
        error = peer.get("last_error")
        why = f", last error: {error['message']} ({error['code']})" if error and peer.get("link") != "connected" else ""
        witnessed = "" if peer.get("witnessed_size") is None else f", witnessed its directory up to size {peer['witnessed_size']}"
        lines.append(f"  {peer['name']}: route {route}, link {peer.get('link') or 'not running'}, queued {peer['queued']}{why}{witnessed}")
    for split in (federation.get("directory") or {}).get("splits", []):
        lines.append(
            f"SPLIT VIEW: {split['node']} showed two versions of its key directory ({split['kind']}, seen in {split['source']}"
            f" at {_iso(split['detected_at'])}); its keys are refused"
        )
    if "admitted" in federation:
        refused = ", ".join(f"{n} {reason}" for reason, n in federation["refused_by_reason"].items())
        lines.append(f"inbound links: {federation['links_open']} open, {federation['admitted']} admitted, {federation['refused']} refused" + (f" ({refused})" if refused else ""))
    return lines


def _federation_at_rest(data: Path, config: NodeConfig) -> dict:
    """The federation section of a node that is not running: its peers and queued items."""
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


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cmd_directory_head(args: argparse.Namespace) -> None:
    data, config = _existing_node(args)
    row = _with_store(data, lambda s: s.latest_head())
    if row is None:
        raise UserError(f"the key directory of {config.name} has no signed head yet (it signs one when the node starts)")
    assert isinstance(row, HeadRow)
    try:
        head = verify_head(row.head, node_key=load_node_key(data).public, node=config.name)
        cosignatures = [decode_cosignature(raw) for raw in row.cosignatures]
    except ProtocolError as exc:
        raise UserError(f"the stored head does not check out: {exc}") from None
    if args.json:
        print(json.dumps({
            "node": head.node,
            "tree_size": head.size,
            "root_hash": head.root.hex(),
            "timestamp": head.at,
            "signed_head": head.raw.hex(),
            "cosignatures": [
                {
                    "witness": c.witness,
                    "tree_size": c.size,
                    "root_hash": c.root.hex(),
                    "timestamp": c.at,
                    "cosignature": c.raw.hex(),
                }
                for c in cosignatures
            ],
        }, sort_keys=True))
    else:
        print(f"{head.node}: tree size {head.size}, root {head.root.hex()}, signed {_iso(head.at)}")
        for c in cosignatures:
            print(f"  cosigned by {c.witness} at {_iso(c.at)}")


# Parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sonet-node", description="Run and administer a Sonet node.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, fn: Callable[[argparse.Namespace], None], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--data", required=True, metavar="DIR", help="the node's data directory")
        p.set_defaults(fn=fn)
        return p

    p = command("init", cmd_init, "create a node: configuration, identity key and database")
    p.add_argument("--name", required=True, help="the node's federation name, e.g. alpha.example")
    p.add_argument("--listen", required=True, metavar="HOST:PORT", help="address to listen on, e.g. 127.0.0.1:7480")
    p.add_argument("--registration", choices=("invite", "open"), default="invite", help="who may register (default: invite)")
    p.add_argument(
        "--minimum-crypto-mode",
        choices=[m.value for m in CryptoMode],
        default="hybrid",
        help="weakest crypto mode accepted from devices and peers (default: hybrid)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")

    command("run", cmd_run, "run the node in the foreground (SIGTERM or Ctrl-C stops it gracefully)")

    p = command("invite", cmd_invite, "print a one-time registration token (works while the node runs)")
    p.add_argument("--expires-days", type=int, default=7, help="days until the token expires (default: 7)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("fingerprint", cmd_fingerprint, "print the node identity fingerprint that peers and devices pin")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("status", cmd_status, "show the node's configuration, state and counters")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    peer = sub.add_parser("peer", help="pin, list and forget peer nodes (takes effect without a restart)",
                          description="Pin, list and forget peer nodes. Changes take effect without a restart.")
    peer_sub = peer.add_subparsers(dest="peer_command", required=True, metavar="ACTION")

    def peer_command(name: str, fn: Callable[[argparse.Namespace], None], help_text: str) -> argparse.ArgumentParser:
        p = peer_sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--data", required=True, metavar="DIR", help="the node's data directory")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(fn=fn)
        return p

    p = peer_command("add", cmd_peer_add, "pin a peer node by name, URL and identity fingerprint")
    p.add_argument("--name", required=True, help="the peer's node name, e.g. beta.example")
    p.add_argument("--url", required=True, help="the peer's ws:// or wss:// URL (without /federation)")
    p.add_argument("--fingerprint", required=True, metavar="FP", help="the peer's `sonet-node fingerprint`")
    p.add_argument("--via", metavar="RELAY", help="name of an already configured peer that relays for this one")
    peer_command("list", cmd_peer_list, "list the pinned peer nodes")
    p = peer_command("remove", cmd_peer_remove, "forget a peer node")
    p.add_argument("--name", required=True, help="the peer's node name")

    directory = sub.add_parser("directory", help="inspect this node's key directory (works while the node runs)",
                               description="Inspect this node's key directory. Works while the node runs.")
    directory_sub = directory.add_subparsers(dest="directory_command", required=True, metavar="ACTION")
    p = directory_sub.add_parser("head", help="print the newest signed tree head and its cosignatures",
                                 description="Print the newest signed tree head and the witnesses' cosignatures of it.")
    p.add_argument("--data", required=True, metavar="DIR", help="the node's data directory")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(fn=cmd_directory_head)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except (UserError, ConfigError, LocalProtocolError) as exc:
        print(f"sonet-node: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`| head`): not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0


if __name__ == "__main__":
    sys.exit(main())
