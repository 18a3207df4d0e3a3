"""A real ``sonet-node run`` on a throwaway PostgreSQL cluster, with its operations listener
(issue 18 acceptance): ``GET /metrics`` parsed by Prometheus's own parser shows the messages
just sent; while the PostgreSQL server is stopped ``/ready`` answers 503 with one line,
``/health`` stays 200, the node keeps running and a device's send fails with a clear
retryable error; once the server is back ``/ready`` returns to 200 and sends work again
without restarting the node (its pool connects anew).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..node.store.pg_cluster import PgCluster, running_cluster
from .conftest import Processes, free_port, node_here, ok, read_texts, register, sonet_here

pytestmark = pytest.mark.usefixtures("few_prekeys_for_module")

#: hang guard while polling for a condition (never a performance threshold)
POLL_GUARD_S = 60.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    with running_cluster("the /ready test") as pg:
        yield pg


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=POLL_GUARD_S) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def scrape(port: int) -> Samples:
    """Every sample of /metrics, read as Prometheus reads it: (name, sorted labels) -> value."""
    status, text = get(port, "/metrics")
    assert status == 200, text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def poll(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + POLL_GUARD_S
    while not condition():
        assert time.monotonic() < deadline, f"hang guard: {what}"
        time.sleep(0.1)


def ready_status(port: int, status: int) -> Callable[[], bool]:
    return lambda: get(port, "/ready")[0] == status


def received(home: Path) -> list[str]:
    return [m["text"] for m in read_texts(ok(sonet_here(home, "recv", "--json")).out)]


def test_ready_follows_the_database_and_metrics_show_the_messages(
    procs: Processes, tmp_path: Path, cluster: PgCluster
) -> None:
    data, ops_port = tmp_path / "node", free_port()
    database = cluster.new_database()
    ok(node_here("init", "--data", data, "--name", "alpha", "--listen", "127.0.0.1:0",
                 "--database", database, "--ops-listen", f"127.0.0.1:{ops_port}"))
    node = procs.start_node(data)
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    register(alice, "alice@alpha", node)
    register(bob, "bob@alpha", node)
    assert get(ops_port, "/ready") == (200, "ready\n")

    # the messages just sent show in /metrics, by the amounts sent and then delivered
    before = scrape(ops_port)
    for i in range(3):
        ok(sonet_here(alice, "send", "bob@alpha", f"hello #{i}"))
    sent = scrape(ops_port)
    assert received(bob) == ["hello #0", "hello #1", "hello #2"]
    delivered = scrape(ops_port)

    def moved(after: Samples, name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved(sent, "sonet_envelopes_in_total", source="device") == 3
    assert moved(sent, "sonet_store_operation_seconds_count", operation="enqueue") == 3
    assert moved(sent, "sonet_envelopes_out_total", destination="device") == 0
    assert moved(delivered, "sonet_envelopes_out_total", destination="device") == 3

    # the server goes away: /ready says so in one line, the process serves on
    cluster.stop_server()
    poll(ready_status(ops_port, 503), "/ready answering 503 with the database down")
    status, text = get(ops_port, "/ready")
    assert status == 503 and text.startswith("not ready: database unreachable: ") and text.count("\n") == 1, text
    assert get(ops_port, "/health") == (200, "ok\n")
    assert sample(scrape(ops_port), "sonet_envelopes_in_total", source="device") >= 3  # still served, still parses
    failed = sonet_here(alice, "send", "bob@alpha", "while down")
    assert failed.rc == 1 and failed.out == "", failed
    assert failed.err.endswith("refused the connection: the node cannot use its store right now; try again later; nothing was sent\n"), failed.err
    assert failed.err.count("\n") == 1, failed.err
    assert node.alive()

    # back: /ready recovers and sends work again, the same node process (its pool connects anew)
    cluster.start_server()
    poll(ready_status(ops_port, 200), "/ready answering 200 with the database back")
    ok(sonet_here(alice, "send", "bob@alpha", "after"))
    assert received(bob) == ["after"]
    assert node.alive()
    assert "Traceback" not in node.stderr(), node.stderr()
