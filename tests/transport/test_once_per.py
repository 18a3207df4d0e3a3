"""transport/log_summary.py ``OncePer``: the one "say it at most once per interval per key" of
the rate-limited log lines (federation/witness.py, federation/inbound.py, node/store/sqlite_groups.py)."""

from __future__ import annotations

from sonet.transport.log_summary import OncePer


def test_a_key_is_due_once_per_interval_and_keys_apart() -> None:
    once = OncePer(10)
    assert once.due("a", 0) and not once.due("a", 9.9) and once.due("a", 10)
    assert once.due("b", 5) and not once.due("b", 14)
    assert not once.due("a", 19) and once.due("a", 20)


def test_past_its_keys_it_forgets_them_all_rather_than_grow() -> None:
    once = OncePer(10, max_keys=3)
    assert all(once.due(k, 0) for k in "abc")
    assert not once.due("a", 1)  # known: still quiet
    assert once.due("d", 1)  # a fourth key: the others are forgotten
    assert once.due("a", 1) and len(once._last) == 2
