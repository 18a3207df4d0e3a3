"""Federation with real node processes: alpha, beta and gamma on loopback.

alpha and gamma peer with beta; alpha reaches gamma only through beta. Nodes are killed with
SIGKILL mid-stream (receiver, relay, sender) and links are dropped and stalled through a TCP
proxy; every message a ``send`` acknowledged must arrive exactly once, in order. The nodes are
real processes; ``sonet`` and ``sonet-node`` commands run their ``main`` in this process
(``sonet_here``, ``node_here``), so a message costs no interpreter start.

The tests share one federation (``fed``; alpha dials beta through a TCP proxy that passes
everything until a test tells it otherwise): each test's texts carry a tag of its own and each
test counts only those, and a killed node's restart replaces it in ``fed``. The wrong-pin test,
which leaves alpha pinned to an impostor, has a federation of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import (
    NodeProcess,
    Processes,
    init_node,
    node_here,
    ok,
    read_json_lines,
    read_texts,
    register,
    set_listen,
    sonet_here,
)
from .proxy import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
#: hang guard while polling for a condition (never a performance threshold)
POLL_GUARD_S = 90.0
#: short retry cap and request deadline, so a test does not wait out production back-offs
FEDERATION_CONFIG = "\n[federation]\nretry_max_s = 1.0\nrequest_timeout_s = 3.0\n"


def start(procs: Processes, root: Path, name: str) -> NodeProcess:
    data = root / name
    init_node(data, name=name)
    with open(data / "node.toml", "a") as f:
        f.write(FEDERATION_CONFIG)
    node = procs.start_node(data)
    set_listen(data, f"127.0.0.1:{node.port}")  # a restart comes back on the same URL
    return node


def restart(procs: Processes, node: NodeProcess) -> NodeProcess:
    return procs.start_node(node.data)


def peer(node: NodeProcess, other: NodeProcess, *, via: NodeProcess | None = None, url: str | None = None, fingerprint: str | None = None) -> None:
    args = ["peer", "add", "--data", node.data, "--name", other.name, "--url", url or other.url, "--fingerprint", fingerprint or other.fingerprint]
    if via is not None:
        args += ["--via", via.name]
    ok(node_here(*args))


@dataclass
class Federation:
    alpha: NodeProcess
    beta: NodeProcess
    gamma: NodeProcess
    alice: Path
    bob: Path
    carol: Path


def federation(procs: Processes, tmp: Path, *, beta_url_for_alpha: Callable[[NodeProcess], str] | None = None) -> Federation:
    """alpha, beta, gamma with their peers pinned and alice, bob, carol registered.
    ``beta_url_for_alpha(beta)`` gives the URL alpha dials beta at (e.g. a proxy in front)."""
    alpha, beta, gamma = (start(procs, tmp, n) for n in ("alpha", "beta", "gamma"))
    peer(alpha, beta, url=beta_url_for_alpha(beta) if beta_url_for_alpha else None)
    peer(alpha, gamma, via=beta)
    peer(beta, alpha)
    peer(beta, gamma)
    peer(gamma, beta)
    peer(gamma, alpha, via=beta)
    fed = Federation(alpha, beta, gamma, tmp / "alice", tmp / "bob", tmp / "carol")
    register(fed.alice, "alice@alpha", alpha)
    register(fed.bob, "bob@beta", beta)
    register(fed.carol, "carol@gamma", gamma)
    return fed


def receive_texts(home: Path, count: int, tag: str = "") -> list[str]:
    """Texts (those that start with ``tag``) received until ``count`` arrived, or the hang guard ran out."""
    texts: list[str] = []
    deadline = time.monotonic() + POLL_GUARD_S
    while len(texts) < count and time.monotonic() < deadline:
        texts += [m["text"] for m in read_texts(ok(sonet_here(home, "recv", "--wait", "5", "--json")).out)]
        texts = [t for t in texts if t.startswith(tag)]
    # one more look: nothing beyond `count` may be waiting (a duplicate would show here)
    texts += [m["text"] for m in read_texts(ok(sonet_here(home, "recv", "--json")).out)]
    return [t for t in texts if t.startswith(tag)]


def send_all(home: Path, to: str, texts: list[str], *, at: int, action: Callable[[], None]) -> list[str]:
    """Send each text; run ``action`` once before text number ``at``. Returns the texts whose
    send exited 0 (acknowledged: durably accepted by the home node)."""
    acknowledged = []
    for i, text in enumerate(texts):
        if i == at:
            action()
        if sonet_here(home, "send", to, text).rc == 0:
            acknowledged.append(text)
    return acknowledged


class KillAndRestart:
    """An action that SIGKILLs ``node`` and restarts it ``delay`` seconds later (in a thread)."""

    def __init__(self, procs: Processes, node: NodeProcess, delay: float) -> None:
        self.procs, self.node, self.delay = procs, node, delay
        self.restarted: list[NodeProcess] = []
        self._thread = threading.Thread(target=self._restart_later, daemon=True)

    def __call__(self) -> None:
        self.node.kill()
        self._thread.start()

    def _restart_later(self) -> None:
        time.sleep(self.delay)
        self.restarted.append(restart(self.procs, self.node))

    def join(self) -> None:
        self._thread.join()
        assert self.restarted, f"{self.node.name} did not come back"


def warm_up(fed: Federation, to_home: Path, to: str, tag: str) -> None:
    """One message each way first: sessions and the home node's device-list cache exist, and
    alice is a contact of the recipient (the answer carries its access token), so what follows
    is not a stranger's capped message requests."""
    ok(sonet_here(fed.alice, "send", to, f"{tag} warm-up"))
    assert receive_texts(to_home, 1, tag) == [f"{tag} warm-up"]
    ok(sonet_here(to_home, "send", "alice@alpha", f"{tag} warm-up reply"))
    assert receive_texts(fed.alice, 1, tag) == [f"{tag} warm-up reply"]


@dataclass
class SharedFederation(Federation):
    procs: Processes
    #: alpha dials beta through it
    proxy: TcpProxy


@pytest.fixture(scope="module")
def fed(module_procs: Processes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedFederation]:
    proxies: list[TcpProxy] = []

    def behind_proxy(beta: NodeProcess) -> str:
        proxies.append(TcpProxy(beta.port))
        return proxies[0].url

    f = federation(module_procs, tmp_path_factory.mktemp("federation"), beta_url_for_alpha=behind_proxy)
    with proxies[0] as proxy:
        yield SharedFederation(f.alpha, f.beta, f.gamma, f.alice, f.bob, f.carol, module_procs, proxy)


def new_tag(name: str) -> str:
    return f"{name} {uuid.uuid4().hex[:6]}"


def test_example_script_exchanges_messages_exactly_once(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "three_nodes.py"), "--dir", str(tmp_path / "example")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "every message arrived exactly once" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("victim", ["receiver", "relay"])
def test_sigkill_of_receiver_or_relay_mid_stream_loses_and_duplicates_nothing(fed: SharedFederation, victim: str) -> None:
    to, home = ("bob@beta", fed.bob) if victim == "receiver" else ("carol@gamma", fed.carol)
    tag = new_tag(victim)
    warm_up(fed, home, to, tag)
    texts = [f"{tag} #{i:02d}" for i in range(50)]
    action = KillAndRestart(fed.procs, fed.beta, 3.0)
    acknowledged = send_all(fed.alice, to, texts, at=15, action=action)
    action.join()
    fed.beta = action.restarted[0]
    # The home node (alpha) was up the whole time: every send was acknowledged.
    assert acknowledged == texts
    assert receive_texts(home, len(texts), tag) == texts


def test_sigkill_of_sender_node_mid_stream(fed: SharedFederation) -> None:
    tag = new_tag("sender")
    warm_up(fed, fed.bob, "bob@beta", tag)
    texts = [f"{tag} #{i:02d}" for i in range(30)]
    action = KillAndRestart(fed.procs, fed.alpha, 2.0)
    acknowledged = send_all(fed.alice, "bob@beta", texts, at=10, action=action)
    action.join()
    fed.alpha = action.restarted[0]
    got = receive_texts(fed.bob, len(acknowledged), tag)
    # Acknowledged sends arrive exactly once and in order; a send cut off by the kill may or
    # may not have been committed, so it may appear (once) or not.
    assert len(got) == len(set(got)), "a message arrived twice"
    assert [t for t in got if t in acknowledged] == acknowledged
    assert set(got) <= set(texts)


def test_link_drops_and_stalls_through_a_proxy(fed: SharedFederation) -> None:
    proxy = fed.proxy
    tag = new_tag("proxy")
    warm_up(fed, fed.bob, "bob@beta", tag)
    connections = proxy.connections
    texts = [f"{tag} #{i:02d}" for i in range(30)]
    for i, text in enumerate(texts):
        if i in (5, 12):
            # a drop cuts the link only if alpha holds one through the proxy: after the first
            # drop it dials again for the texts queued since, maybe after a backoff
            deadline = time.monotonic() + POLL_GUARD_S
            while proxy.open_connections == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            proxy.drop()
        if i == 18:
            proxy.stall()
        if i == 24:
            time.sleep(4)  # longer than the request deadline: the stalled push is abandoned
            proxy.resume()
        # alpha, the home node, is reachable directly: every send is acknowledged
        ok(sonet_here(fed.alice, "send", "bob@beta", text))
    assert receive_texts(fed.bob, len(texts), tag) == texts
    assert proxy.connections >= connections + 2, "the drops should have forced new connections"


def test_wrong_fingerprint_pin_delivers_nothing_and_says_so(procs: Processes, tmp_path: Path) -> None:
    fed = federation(procs, tmp_path)  # its own: alpha is left pinned to an impostor
    tag = new_tag("pin")
    warm_up(fed, fed.bob, "bob@beta", tag)
    # beta is down: alpha accepts the message into its outbox (the device list it cached and
    # beta's key it checked against the pin still serve)...
    fed.beta.kill()
    ok(sonet_here(fed.alice, "send", "bob@beta", f"{tag} must not arrive"))
    # ...then alpha pins "beta" to another node's key: the real beta is an impostor to it.
    ok(node_here("peer", "remove", "--data", fed.alpha.data, "--name", "gamma"))
    ok(node_here("peer", "remove", "--data", fed.alpha.data, "--name", "beta"))
    peer(fed.alpha, fed.beta, fingerprint=fed.gamma.fingerprint)
    fed.beta = restart(procs, fed.beta)
    deadline = time.monotonic() + POLL_GUARD_S
    beta_status: dict = {}
    while time.monotonic() < deadline:
        status = json.loads(ok(node_here("status", "--data", fed.alpha.data, "--json")).out)
        beta_status = next((p for p in status["federation"]["peers"] if p["name"] == "beta"), {})
        # (the queue counts in the status are refreshed every few seconds)
        if (beta_status.get("last_error") or {}).get("code") == "wrong_identity" and beta_status.get("queued") == 1:
            break
        time.sleep(0.5)
    # alpha never hands the message to a node with another key: the operator and the sender see why
    assert (beta_status.get("last_error") or {}).get("code") == "wrong_identity", beta_status
    assert beta_status["queued"] == 1
    latest = read_json_lines(ok(sonet_here(fed.alice, "sent", "--json")).out)[0]
    assert latest["state"] == "queued" and latest["code"] == "wrong_identity", latest
    assert "identity" in latest["message"]
    # a new send is refused at once: alpha cannot vouch for beta's key, so bob's keys cannot be checked
    refused = sonet_here(fed.alice, "send", "bob@beta", f"{tag} must not be accepted either")
    assert refused.rc != 0 and "wrong_identity" in refused.err and "Traceback" not in refused.err, refused
    assert receive_texts(fed.bob, 0, tag) == []
