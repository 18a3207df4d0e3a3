#!/usr/bin/env python3
"""Three federated Sonet nodes on loopback: alpha, beta and gamma.

alpha and gamma both peer with beta; alpha reaches gamma only through beta (``--via beta``),
and gamma reaches alpha the same way. The script starts the three nodes, pins the peers,
registers alice@alpha, bob@beta and carol@gamma, and exchanges messages across all of them,
printing what happens. It exits non-zero if any message does not arrive exactly once.

    .venv/bin/python examples/three_nodes.py [--dir DIR] [--keep]

Everything lives in a temporary directory (or DIR); the nodes are stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent
NODE_BIN = str(BIN / "sonet-node")
SONET_BIN = str(BIN / "sonet")
#: hang guard for one command (never a performance figure)
COMMAND_TIMEOUT_S = 120
LISTENING = re.compile(r"^sonet node (\S+) listening on (ws://\S+)")


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def run(*args: str) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args[1:])}\n{proc.stderr.strip()}")
    return proc.stdout


class Node:
    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.data = root / name
        out = run(NODE_BIN, "init", "--data", str(self.data), "--name", name, "--listen", "127.0.0.1:0", "--json")
        self.fingerprint = json.loads(out)["fingerprint"]
        self.log = open(root / f"{name}.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [NODE_BIN, "run", "--data", str(self.data)], stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if m := LISTENING.match(line):
                self.url = m.group(2)
                break
        else:
            raise SystemExit(f"node {name} did not start; see {root / f'{name}.log'}")
        print(f"node {name:6} {self.url}  fingerprint {self.fingerprint}")

    def peer(self, other: Node, via: Node | None = None) -> None:
        args = ["peer", "add", "--data", str(self.data), "--name", other.name, "--url", other.url, "--fingerprint", other.fingerprint]
        if via is not None:
            args += ["--via", via.name]
        print(f"{self.name}: " + run(NODE_BIN, *args).strip())

    def invite(self) -> str:
        return run(NODE_BIN, "invite", "--data", str(self.data)).strip()

    def status(self) -> dict:
        return json.loads(run(NODE_BIN, "status", "--data", str(self.data), "--json"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=COMMAND_TIMEOUT_S)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()


class User:
    def __init__(self, root: Path, address: str, node: Node) -> None:
        self.address = address
        self.home = root / address
        print(self.sonet("register", address, "--node", node.url, "--invite", node.invite()).strip())

    def sonet(self, *args: str) -> str:
        return run(SONET_BIN, "--home", str(self.home), *args)

    def send(self, to: User, text: str) -> None:
        print(f"{self.address} -> {to.address}: {text!r}  [{self.sonet('send', to.address, text).strip()}]")

    def receive(self, expected: int) -> list[dict]:
        """Texts received until ``expected`` have arrived (each recv waits for the next one)."""
        texts: list[dict] = []
        for _ in range(expected * 3):
            out = self.sonet("recv", "--wait", "30", "--json")
            texts += [m for m in map(json.loads, out.splitlines()) if m["type"] == "text"]
            if len(texts) >= expected:
                break
        for m in texts:
            print(f"{self.address} got from {m['from']}: {m['text']!r}")
        return texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", help="where to keep the nodes and devices (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the directory afterwards")
    args = parser.parse_args()
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="sonet-three-nodes-"))
    root.mkdir(parents=True, exist_ok=True)
    nodes: list[Node] = []
    try:
        step("starting three nodes")
        alpha, beta, gamma = (Node(root, n) for n in ("alpha", "beta", "gamma"))
        nodes += [alpha, beta, gamma]

        step("pinning peers (gamma is reached from alpha only through beta)")
        alpha.peer(beta)
        alpha.peer(gamma, via=beta)
        beta.peer(alpha)
        beta.peer(gamma)
        gamma.peer(beta)
        gamma.peer(alpha, via=beta)

        step("registering alice@alpha, bob@beta, carol@gamma")
        alice, bob, carol = User(root, "alice@alpha", alpha), User(root, "bob@beta", beta), User(root, "carol@gamma", gamma)

        step("alice writes to bob (alpha -> beta) and to carol (alpha -> beta -> gamma)")
        alice.send(bob, "hello bob, from alpha")
        alice.send(carol, "hello carol, through beta")
        got = {"bob": bob.receive(1), "carol": carol.receive(1)}

        step("replies come back")
        bob.send(alice, "hi alice, bob here")
        carol.send(alice, "hi alice, carol here (via beta)")
        got["alice"] = alice.receive(2)

        step("alice's delivery status")
        for line in alice.sonet("sent", "--json").splitlines():
            m = json.loads(line)
            print(f"{m['id'][:8]}  to {m['to']:12} {m['state']}")

        step("alpha's view of its peers")
        for peer in alpha.status().get("federation", {}).get("peers", []):
            print(f"{peer.get('name')}: route {' -> '.join(peer.get('route', []))}, link {peer.get('link')}, queued {peer.get('queued')}")

        expected = {"bob": 1, "carol": 1, "alice": 2}
        counts = {who: len({m["id"] for m in texts}) for who, texts in got.items()}
        dupes = {who: len(texts) - counts[who] for who, texts in got.items()}
        ok = counts == expected and not any(dupes.values())
        step("result: " + ("every message arrived exactly once" if ok else f"MISMATCH: got {counts}, duplicates {dupes}"))
        return 0 if ok else 1
    finally:
        for node in nodes:
            node.stop()
        if args.keep or args.dir:
            print(f"\nfiles kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
