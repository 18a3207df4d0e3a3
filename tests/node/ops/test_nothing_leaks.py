"""After a real run, no log line and no metric names what a node must keep to itself.

Two real `sonet-node run` processes (alpha and beta, peers) with the operations listener on and
logs at debug level in JSON: alicia7 on alpha sends a sealed-sender 1:1 message to bertram9 on
beta, alicia7 and carola5 (both on alpha) talk in a group, and a stranger opens a connection
whose handshake fails. Then every log line (stderr, both nodes) and every line of /metrics
(both nodes) is scanned for: device identity and encryption keys and device fingerprints (in
hex, base64 and base32 forms), the message texts, the users' addresses, envelope and message
ids, the invite tokens, and the nodes' private keys. /metrics is read with Prometheus's own
parser and the counters must have moved by what was done.
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest
import trio
from trio_websocket import open_websocket_url

from sonet.core.crypto import CryptoPolicy, CryptoMode
from sonet.core.device import verify_device_record

from ...e2e.conftest import SONET_NODE, NODE_TIMEOUT_S, Processes, init_node, node_here, ok, read_json_lines, sonet_here
from ...e2e.conftest import procs  # noqa: F401 - the fixture
from .http_kit import get
from .metrics_kit import sample, scrape

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys")]

ALICE, BOB, CAROL = "alicia7@alpha.example", "bertram9@beta.example", "carola5@alpha.example"
FEDERATION_CONFIG = "\n[federation]\nretry_max_s = 1.0\nrequest_timeout_s = 3.0\n"


class OpsNode:
    def __init__(self, data: Path, proc: subprocess.Popen[str], started: dict, stderr: Path) -> None:
        self.data, self.proc, self.stderr = data, proc, stderr
        self.url: str = started["url"]
        self.fingerprint: str = started["fingerprint"]
        self.ops_port = int(started["ops_url"].rsplit(":", 1)[1])
        self.name: str = started["name"]


def _start(procs: Processes, root: Path, name: str, invites: list[str]) -> OpsNode:
    data = root / name
    init_node(data, name=name)
    with open(data / "node.toml", "a") as f:
        f.write(FEDERATION_CONFIG + '\n[ops]\nlisten = "127.0.0.1:0"\n')
    stderr = root / f"{name}.log"
    with open(stderr, "w") as err:
        proc = procs.popen(
            [SONET_NODE, "run", "--data", str(data), "--json", "--log-level", "debug", "--log-format", "json"],
            stdout=subprocess.PIPE, stderr=err,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the started line; "" if it exited
    assert line, f"sonet-node run exited: {stderr.read_text()}"
    return OpsNode(data, proc, json.loads(line), stderr)


def _invite(node: OpsNode, invites: list[str]) -> str:
    token = ok(node_here("invite", "--data", node.data)).out.strip()
    invites.append(token)
    return token


def _register(home: Path, address: str, node: OpsNode, invites: list[str]) -> None:
    ok(sonet_here(home, "register", address, "--node", node.url, "--invite", _invite(node, invites)))


def _forms(raw: bytes) -> set[str]:
    """How bytes could show in text: hex, base64 (standard and URL-safe), base32, from a few
    offsets (an encoding of a longer buffer holding them contains one of these)."""
    out: set[str] = set()
    for start in range(0, min(len(raw), 15), 5):
        piece = raw[start : start + 15]
        if len(piece) < 12:
            continue
        out |= {piece.hex(), piece.hex().upper()}
        for b64 in (base64.b64encode(piece), base64.urlsafe_b64encode(piece)):
            out.add(b64.decode().rstrip("="))
        out.add(base64.b32encode(piece[:10]).decode().lower())
    return out


def _db_values(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _envelope_ids(db: Path) -> set[bytes]:
    ids: set[bytes] = set()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            columns = [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]
            if "id" in columns:
                ids |= {v for (v,) in conn.execute(f'SELECT id FROM "{table}"') if isinstance(v, bytes) and len(v) == 16}
    finally:
        conn.close()
    return ids


async def _fail_a_handshake(url: str) -> None:
    """A stranger sends garbage where the first handshake message belongs."""
    with trio.fail_after(NODE_TIMEOUT_S):
        async with open_websocket_url(f"{url}/client") as ws:
            await ws.send_message(b"\x00garbage, not a handshake")
            try:
                await ws.get_message()
            except Exception:  # the node closes the connection: that is the point
                pass


def test_no_log_line_or_metric_names_keys_texts_addresses_ids_or_tokens(procs: Processes, tmp_path: Path) -> None:
    invites: list[str] = []
    alpha = _start(procs, tmp_path, "alpha.example", invites)
    beta = _start(procs, tmp_path, "beta.example", invites)
    for node, other in ((alpha, beta), (beta, alpha)):
        ok(node_here("peer", "add", "--data", node.data, "--name", other.name, "--url", other.url, "--fingerprint", other.fingerprint))
    alice, bob, carol = tmp_path / "alice", tmp_path / "bob", tmp_path / "carol"
    _register(alice, ALICE, alpha, invites)
    _register(bob, BOB, beta, invites)
    _register(carol, CAROL, alpha, invites)
    ok(sonet_here(carol, "recv"))  # publishes carol's group keys

    one_to_one = f"sealed hello {uuid.uuid4().hex}"
    in_group = f"group hello {uuid.uuid4().hex}"
    before_alpha, before_beta = trio.run(scrape, alpha.ops_port), trio.run(scrape, beta.ops_port)

    [sent] = read_json_lines(ok(sonet_here(alice, "send", BOB, one_to_one, "--json")).out)
    got = [m for m in read_json_lines(ok(sonet_here(bob, "recv", "--wait", "30", "--json")).out) if m.get("type") == "text"]
    assert [(m["from"], m["text"]) for m in got] == [(ALICE, one_to_one)]
    after_one = trio.run(scrape, alpha.ops_port), trio.run(scrape, beta.ops_port)

    [created] = read_json_lines(ok(sonet_here(alice, "group", "create", "hikers", CAROL, "--json")).out)
    ok(sonet_here(alice, "send", "hikers", in_group))
    texts = [m for m in read_json_lines(ok(sonet_here(carol, "recv", "--json")).out) if m.get("text") == in_group]
    assert len(texts) == 1
    message_ids = {sent["id"], *(m["id"] for m in got), *(m["id"] for m in texts)}

    failures_before = sum(v for (name, _), v in trio.run(scrape, alpha.ops_port).items() if name == "sonet_handshake_failures_total")
    trio.run(_fail_a_handshake, alpha.url)
    final_alpha, final_beta = trio.run(scrape, alpha.ops_port), trio.run(scrape, beta.ops_port)
    metrics_text = {n.name: trio.run(get, n.ops_port, "/metrics")[1] for n in (alpha, beta)}
    assert trio.run(get, alpha.ops_port, "/ready") == (200, "ready\n")

    # What moved: the 1:1 message left alice's device into alpha (one envelope: bob has one
    # device, alice no other), went to beta, came in there and was acknowledged by bob's device.
    def moved(before: dict, after: dict, name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved(before_alpha, after_one[0], "sonet_envelopes_in_total", source="device") == 1
    assert moved(before_alpha, after_one[0], "sonet_envelopes_out_total", destination="peer") == 1
    assert moved(before_beta, after_one[1], "sonet_envelopes_in_total", source="peer") == 1
    assert moved(before_beta, after_one[1], "sonet_envelopes_out_total", destination="device") == 1
    assert moved(before_alpha, final_alpha, "sonet_envelopes_in_total", source="device") >= 2  # and the group's
    failures_after = sum(v for (name, _), v in final_alpha.items() if name == "sonet_handshake_failures_total")
    assert failures_after == failures_before + 1
    assert sample(final_alpha, "sonet_handshakes_total", endpoint="device") >= 5
    assert sample(final_alpha, "sonet_handshakes_total", endpoint="peer") + sample(final_beta, "sonet_handshakes_total", endpoint="peer") >= 1
    assert sample(final_alpha, "sonet_key_directory_size") == 2 and sample(final_beta, "sonet_key_directory_size") == 1
    assert ("sonet_witness_cosigned_size", (("witness", "beta.example"),)) in final_alpha
    assert sample(final_alpha, "sonet_store_operation_seconds_count", operation="enqueue") >= 2

    for node in (alpha, beta):  # a clean stop writes its last lines
        node.proc.terminate()
        assert node.proc.wait(timeout=NODE_TIMEOUT_S) == 0
    logs = {n.name: n.stderr.read_text() for n in (alpha, beta)}
    for name, text in logs.items():
        lines = text.splitlines()
        assert lines, f"{name} logged nothing"
        for line in lines:  # JSON Lines, every one
            record = json.loads(line)
            assert {"ts", "level", "logger", "msg"} <= set(record), line

    # The needles.
    needles: dict[str, str] = {}
    policy = CryptoPolicy(CryptoMode.CLASSICAL)
    for node in (alpha, beta):
        db = node.data / "node.db"
        for account, fingerprint, raw in _db_values(db, "SELECT account, fingerprint, record FROM devices"):
            needles[fingerprint] = f"device fingerprint of {account}"
            device = verify_device_record(raw, policy=policy)
            for key_bytes, what in ((device.identity.to_bytes(), "identity key"), (device.hpke.to_bytes(), "encryption key"),
                                    (device.identity_dh or b"", "X25519 identity key")):
                if key_bytes:
                    needles.update({form: f"{what} of {account}'s device" for form in _forms(key_bytes)})
        for envelope_id in _envelope_ids(db):
            needles.update({form: "an envelope id" for form in _forms(envelope_id)})
        needles.update({form: f"{node.name}'s private key" for form in _forms((node.data / "node.key").read_bytes())})
    for text in (one_to_one, in_group):
        needles[text] = "a message text"
        needles[text.split()[-1]] = "a message text's random part"
    for address in (ALICE, BOB, CAROL):
        needles[address] = "a user address"
        needles[address.split("@")[0]] = "a user's name"
    for message_id in message_ids:
        needles[message_id] = "a message id"
    for token in invites:
        needles[token] = "an invite token"
        needles[token.split(".", 1)[1]] = "an invite secret"
    assert len(needles) > 50

    haystacks = {f"{name} log": text for name, text in logs.items()} | {f"{name} /metrics": text for name, text in metrics_text.items()}
    found = [
        f"{where}: {what} ({needle[:24]}…) in: {line[:200]}"
        for where, text in haystacks.items()
        for line in text.splitlines()
        for needle, what in needles.items()
        if needle.lower() in line.lower()
    ]
    assert not found, "\n".join(found[:20])
    assert created["id"] not in metrics_text["alpha.example"]
    # the scan is not vacuous: node names and counters are there
    assert 'peer="beta.example"' in metrics_text["alpha.example"] or 'witness="beta.example"' in metrics_text["alpha.example"]
    assert re.search(r"^sonet_envelopes_in_total\{source=\"device\"\} [1-9]", metrics_text["alpha.example"], re.M)
