"""Issue 16's acceptance with real nodes and the real CLI (tests/e2e/groups_net.py): alpha,
beta, gamma (gamma reached from alpha only through beta); alice@alpha, bob@beta on two devices,
carol@gamma. One federation for the module; each test makes its own group (alice's, so alpha
is its hub).

- Each member sends 10 messages (bob 5 from each device): every device is shown each other
  device's messages exactly once, in the hub's order, bob's other device's too (it is a leaf
  of its own; ``recv`` shows them from bob@beta, device 1 or 2), its own never; carol, removed, gets nothing more and is told; no node's data
  directory or log holds a message text.
- The hub (alpha) is SIGKILLed while the members send, and restarted: nothing acknowledged is
  lost (alice's texts while her node is down wait on her device and go with her next
  command), nothing is shown twice, every device sees one order.
- Two admins (alice, and bob made admin) add members at the same moment (two ``sonet``
  processes): the group ends in one epoch with one member list on every device.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import CLI_TIMEOUT_S, Processes, ok, read_json_lines, sonet_here
from .groups_net import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    ERIN,
    GroupNet,
    Member,
    beta_cut_off_from_alpha,
    check_exactly_once,
    check_no_plaintext,
    create_group,
    group_net,
    new_texts,
    hub_outcomes,
    info,
    popen_sonet,
    receive,
    send,
    send_rounds,
    submissions,
    wait_for,
    wait_until,
)
from .test_federation import KillAndRestart

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)


@pytest.fixture(scope="module")
def net(module_procs: Processes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GroupNet]:
    net = group_net(module_procs, tmp_path_factory.mktemp("groups"))
    with net.beta_to_alpha:
        yield net


def test_every_device_gets_every_message_once_in_one_order_and_a_removed_member_nothing_more(net: GroupNet) -> None:
    group = create_group(net, "acceptance", net.members)
    # each account sends 10, interleaved: alice, bob (his two devices in turn), carol
    sent = send_rounds(group, lambda r: [net.alice, (net.bob1, net.bob2)[r % 2], net.carol], new_texts(net, "one"), 10, in_order=True)
    assert len(sent) == 30 and all(s.state == "ordered" for s in sent), [(s.sender.label, s.state, s.error) for s in sent]
    views = {m: receive(m, group, [s.text for s in sent if s.sender != m]) for m in net.members}
    check_exactly_once(views, sent)
    # each send returned once the hub had ordered it: the order is the order of the sends
    for m, seen in views.items():
        assert [t for *_x, t in seen] == [s.text for s in sent if s.sender != m], m.label

    removed = ok(sonet_here(net.alice.home, "group", "remove", group, CAROL, "--json"))
    [view] = read_json_lines(removed.out)
    assert view["members"] == [ALICE, BOB] and view["active"] is True, view
    after = f"after-removal-{uuid.uuid4().hex}"
    net.texts.append(after)
    [last] = send_rounds(group, [net.alice], lambda m, r: after, 1, in_order=True)
    assert last.state == "ordered", last
    for m in (net.bob1, net.bob2):
        assert receive(m, group, [after]) == [(ALICE, 1, after)], m.label
    # carol's device took her removal, cannot read what came after it, and says she is out
    wait_for(net.carol, group, lambda i: i["active"] is False)
    assert receive(net.carol, group, []) == []
    carol_info = info(net.carol, group)
    assert carol_info is not None and carol_info["active"] is False, carol_info
    assert "this device is no longer a member" in ok(sonet_here(net.carol.home, "group", "info", group)).out.splitlines()
    [listed] = [g for g in read_json_lines(ok(sonet_here(net.carol.home, "group", "list", "--json")).out) if g["id"] == group]
    assert listed["active"] is False, listed
    late = sonet_here(net.carol.home, "send", group, "still here?")
    assert late.rc == 1 and late.err == "sonet: error: this device is no longer a member of the group\n", late
    for m in (net.alice, net.bob1, net.bob2):
        members = [x["account"] for x in info(m, group)["members"]]  # type: ignore[index]
        assert members == [ALICE, BOB], (m.label, members)
    check_no_plaintext(net)


def test_sigkill_of_the_hub_while_members_send_loses_and_duplicates_nothing(net: GroupNet) -> None:
    group = create_group(net, "hub-kill", net.members)
    kill = KillAndRestart(net.procs, net.fed.alpha, 2.0)
    # alice's device cannot reach its node while alpha is down (her texts wait on her device,
    # "pending", and go with her next command); bob's and carol's wait in beta's and gamma's
    # outboxes for the hub
    sent = send_rounds(group, net.members, new_texts(net, "hubkill"), 4, at=1, action=kill)
    kill.join()
    net.fed.alpha = kill.restarted[0]
    assert any(s.state == "pending" for s in sent if s.sender == net.alice), "alpha was down: one of alice's sends must have waited"
    assert {s.error for s in sent if s.state is None} <= {"unreachable"}, [(s.sender.label, s.error) for s in sent]
    assert all(s.state not in (None, "pending") for s in sent if s.sender != net.alice), [(s.sender.label, s.state) for s in sent]
    wait_for(net.alice, group, lambda i: not i["waiting"])  # her next command sent what waited: ordered
    views = {m: receive(m, group, [s.text for s in sent if s.sender != m and s.state is not None]) for m in net.members}
    check_exactly_once(views, sent)  # the texts that waited on alice's device too, each once
    # a send that failed (none should) left nothing behind to arrive later
    failed = {s.text for s in sent if s.state is None}
    assert [t for seen in views.values() for *_x, t in seen if t in failed] == []
    check_no_plaintext(net)


def test_two_admins_adding_at_the_same_moment_end_in_one_epoch_everywhere(net: GroupNet) -> None:
    group = create_group(net, "race", net.members)
    made = read_json_lines(ok(sonet_here(net.alice.home, "group", "admin", group, BOB, "--json")).out)
    assert made[0]["admins"] == [ALICE, BOB], made
    epoch = made[0]["epoch"]
    wait_for(net.bob1, group, lambda i: i["epoch"] == epoch and i["admins"] == [ALICE, BOB])
    # Both admins add on the same epoch. bob's add (a process) is made and queued at beta
    # while beta cannot reach alpha (beta_cut_off_from_alpha); alice's add (a process too) is ordered meanwhile; then
    # beta's link comes back. The hub refuses bob's commit (stale_epoch) and his device makes
    # the add again on top of alice's; both are ordered, one epoch each.
    adds = {}
    with beta_cut_off_from_alpha(net):
        adds[net.bob1] = popen_sonet(net, net.bob1, "group", "add", group, ERIN, "--json")
        wait_until(lambda: submissions(net, group, BOB) >= 1, "bob's add queued at beta")
        adds[net.alice] = popen_sonet(net, net.alice, "group", "add", group, DAVE, "--json")
        alice_out, alice_err = adds[net.alice].communicate(timeout=CLI_TIMEOUT_S)  # hang guard only
    bob_out, bob_err = adds[net.bob1].communicate(timeout=CLI_TIMEOUT_S)
    assert adds[net.alice].returncode == 0 and "Traceback" not in alice_err, (alice_out, alice_err)
    assert adds[net.bob1].returncode == 0 and "Traceback" not in bob_err, (bob_out, bob_err)
    [alice_view], [bob_view] = read_json_lines(alice_out), read_json_lines(bob_out)
    assert (alice_view["epoch"], alice_view["waiting"]) == (epoch + 1, False), alice_view
    assert (bob_view["epoch"], bob_view["waiting"]) == (epoch + 2, False), bob_view
    assert hub_outcomes(net, "alpha", group)["stale_epoch"] == 1
    everyone = [*net.members, net.dave, net.erin]
    final = sorted([ALICE, BOB, CAROL, DAVE, ERIN])
    infos = {m: wait_for(m, group, lambda i: sorted(x["account"] for x in i["members"]) == final and not i["waiting"]) for m in everyone}
    # one commit per epoch: admin, then the two adds one after the other
    assert {i["epoch"] for i in infos.values()} == {epoch + 2}, {m.label: i["epoch"] for m, i in infos.items()}
    assert len({json.dumps(i["members"]) for i in infos.values()}) == 1, {m.label: i["members"] for m, i in infos.items()}
    assert infos[net.alice]["members"][1] == {"account": BOB, "devices": [1, 2], "admin": True}
    # and the group goes on: each newcomer's message reaches everyone else once
    texts = {m: f"newcomer-{uuid.uuid4().hex}" for m in (net.dave, net.erin)}
    net.texts.extend(texts.values())
    for m, text in texts.items():
        ok(send(m, group, text))
    for m in everyone:
        expected = [(x.account, x.device, t) for x, t in texts.items() if x != m]
        assert receive(m, group, [t for _a, _d, t in expected]) == expected, m.label
    check_no_plaintext(net)
