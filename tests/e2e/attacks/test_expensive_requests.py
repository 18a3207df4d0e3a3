"""Expensive requests (issue 13, item 9) against a real node process: one registered device
pulls the whole key directory (``FetchLeaves``) and re-uploads 200 prekeys (each one a
signature the node checks) as fast as it can, on two connections, until 4 s after its first
refusal (14 s at most). Measured before:
``FetchLeaves`` at ~190 MB/s with no budget. Now the device's cost budget (node/cost_budget.py)
holds it to its refill rate once its burst is spent, while another user keeps sending and
receiving through the real CLI. Printed: bytes served a second before and after the budget ran
out, prekey uploads checked and refused, and the legitimate exchanges meanwhile.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from sonet.core.client_api import FetchLeaves, Leaves, PrekeysPublished, PublishPrekeys, Register, Registered
from sonet.core.cost_budget import VERIFY_COST
from sonet.core.invite import parse_invite
from sonet.core.ratchet.prekeys import MLKEM768, X25519
from sonet.node.cost_budget import CLIENT_BUDGET, answer_bytes
from tests.node.kit import Account, ConnectError, Member, NodeError, connect_raw, prekey

from ..conftest import NodeProcess, Processes, here, ok, read_texts, register, start_pinned_node

pytestmark = pytest.mark.slow

#: accounts registered to give the directory ~30 leaves (~6 KB each): a page is ~200 KB
FILLER_ACCOUNTS = 30
ATTACK_SECONDS = 14.0
#: how long the attack goes on once the budget refused it: the throttled rate is measured over this
THROTTLED_SECONDS = 4.0
#: one-time prekeys of each kind in every re-upload (the most a node takes at once is 200)
UPLOAD_KEYS = 100


@dataclass
class Pulled:
    """What the attacking device got, with the time (monotonic s) of each answer."""

    pages: list[tuple[float, int]] = field(default_factory=list)
    uploads: list[float] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    first_refusal: float | None = None
    started: float = 0.0
    ended: float = 0.0


async def _register(node: NodeProcess, address: str, token: str) -> Member:
    account = Account(address=address)
    member = Member.new(account.address)
    async with connect_raw(node.url, identity=member.identity, node_fingerprint=node.fingerprint) as conn:
        reply = await conn.request(
            lambda n: Register(
                request=n, user=address.split("@")[0], invite=parse_invite(token)[1], record=member.record,
                account_identity=account.identity_bytes, device_list=account.sign_list([member.fingerprint], version=1),
                keys=member.keys,
            )
        )  # fmt: skip
    assert isinstance(reply, Registered), reply
    return member


async def _attack(node: NodeProcess, attacker: Member, leaves: int, upload: PublishPrekeys, got: Pulled) -> None:
    """Both floods at once until THROTTLED_SECONDS after the first refusal (ATTACK_SECONDS at
    most); a connection the node closes (too many refusals in a row) is opened again, as an
    attacker would."""
    deadline = trio.current_time() + ATTACK_SECONDS

    def refused(code: str) -> None:
        nonlocal deadline
        got.refused[code] += 1
        if got.first_refusal is None:
            got.first_refusal = time.monotonic()
            deadline = min(deadline, trio.current_time() + THROTTLED_SECONDS)

    async def flood(ask) -> None:  # noqa: ANN001
        while trio.current_time() < deadline:
            try:
                async with connect_raw(node.url, identity=attacker.identity, node_fingerprint=node.fingerprint) as conn:
                    while trio.current_time() < deadline:
                        try:
                            await ask(conn)
                        except NodeError as exc:
                            if conn.error is not None:
                                raise ConnectError(str(exc)) from None
                            refused(exc.code)
            except ConnectError:
                got.reconnects += 1

    async def pull(conn) -> None:  # noqa: ANN001
        page = await conn.request(lambda n: FetchLeaves(request=n, start=0, end=leaves))
        assert isinstance(page, Leaves) and len(page.leaves) == leaves
        got.pages.append((time.monotonic(), answer_bytes(page)))

    async def reupload(conn) -> None:  # noqa: ANN001
        answer = await conn.request(lambda n: dataclasses.replace(upload, request=n))
        assert isinstance(answer, PrekeysPublished)
        got.uploads.append(time.monotonic())

    got.started = time.monotonic()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(flood, pull)
        nursery.start_soon(flood, reupload)
    got.ended = time.monotonic()


def _exchange(homes: dict[str, Path], sender: str, recipient: str, address: str, text: str) -> None:
    ok(here("sonet", "--home", homes[sender], "send", address, text))
    shown = [m["text"] for m in read_texts(ok(here("sonet", "--home", homes[recipient], "recv", "--json")).out)]
    assert text in shown, (text, shown)


def test_a_device_pulling_the_directory_and_reuploading_prekeys_is_throttled_while_others_go_on(
    procs: Processes, tmp_path: Path
) -> None:
    node = start_pinned_node(procs, tmp_path / "node")
    homes = {name: tmp_path / name for name in ("alice", "bob")}
    for name, home in homes.items():
        register(home, f"{name}@localhost", node)
    _exchange(homes, "alice", "bob", "bob@localhost", "before")
    attacker = trio.run(_register, node, "mallory@localhost", node.invite())
    for n in range(FILLER_ACCOUNTS):
        trio.run(_register, node, f"filler{n}@localhost", node.invite())
    leaves = FILLER_ACCOUNTS + 3
    upload = PublishPrekeys(
        request=0, signed_prekey=None, pq_last_resort=None,
        one_time=tuple(prekey(attacker.identity, X25519, 10 + i) for i in range(UPLOAD_KEYS)),
        pq_one_time=tuple(prekey(attacker.identity, MLKEM768, 10 + i) for i in range(UPLOAD_KEYS)),
    )  # fmt: skip

    got = Pulled()
    attack = threading.Thread(target=lambda: trio.run(_attack, node, attacker, leaves, upload, got))
    attack.start()
    exchanged = 0
    while attack.is_alive():  # a legitimate user meanwhile, through the real CLI
        _exchange(homes, "alice", "bob", "bob@localhost", f"during {exchanged}")
        _exchange(homes, "bob", "alice", "alice@localhost", f"reply {exchanged}")
        exchanged += 1
    attack.join()

    assert got.first_refusal is not None, "the attacking device was never refused"
    before = [size for at, size in got.pages if at < got.first_refusal]
    after = [size for at, size in got.pages if at >= got.first_refusal]
    before_s = max(got.first_refusal - got.started, 1e-3)
    after_s = max(got.ended - got.first_refusal, 1e-3)
    upload_cost = VERIFY_COST * (2 + 2 * UPLOAD_KEYS)
    page = max(size for _, size in got.pages)
    print(
        f"\nFetchLeaves: {len(got.pages)} pages of {page >> 10} KiB; before the budget ran out"
        f" {sum(before) / before_s / 2**20:.1f} MiB/s for {before_s:.1f} s, after it {sum(after) / after_s / 2**20:.2f} MiB/s"
        f" for {after_s:.1f} s (budget refill {CLIENT_BUDGET.bytes.per_second / 2**20:.0f} MiB/s)"
        f"\nprekey re-uploads of {2 * UPLOAD_KEYS} keys checked: {len(got.uploads)}; refused {dict(got.refused)};"
        f" reconnects {got.reconnects}\nlegitimate exchanges meanwhile: {exchanged} (each a send and a receive both ways)"
    )
    assert got.refused["rate_limited"] > 0 and set(got.refused) == {"rate_limited"}
    # The budget's guarantee: all the device got (pages served, signature checks charged up
    # front) is at most its burst, its refill over the attack and one answer into debt.
    spent = sum(size for _, size in got.pages) + len(got.uploads) * upload_cost
    ceiling = CLIENT_BUDGET.bytes.burst + CLIENT_BUDGET.bytes.per_second * (got.ended - got.started) + max(page, upload_cost)
    assert spent <= ceiling, (spent, ceiling)
    assert exchanged >= 1
    _exchange(homes, "alice", "bob", "bob@localhost", "after")
