"""The order xdist workers take the modules in (tests/module_costs.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from tests.module_costs import NEW_MODULE_S, TABLE, Tally, cpu_seconds, load, longest_first


class Item(NamedTuple):
    nodeid: str


def ids(items: list[Item]) -> list[str]:
    return [i.nodeid for i in items]


COLLECTED = [
    Item("tests/a/test_unit.py::test_one"),
    Item("tests/a/test_unit.py::test_two"),
    Item("tests/e2e/test_slow.py::test_setup[x]"),
    Item("tests/e2e/test_slow.py::Cls::test_after[y]"),
    Item("tests/b/test_new.py::test_it"),
    Item("tests/b/test_mid.py::test_it"),
]


def test_whole_modules_longest_first_each_in_its_own_order() -> None:
    costs = {"tests/a/test_unit.py": 0.5, "tests/e2e/test_slow.py": 40.0, "tests/b/test_mid.py": NEW_MODULE_S + 1}
    assert ids(longest_first(COLLECTED, costs)) == [
        "tests/e2e/test_slow.py::test_setup[x]",
        "tests/e2e/test_slow.py::Cls::test_after[y]",
        "tests/b/test_mid.py::test_it",
        "tests/b/test_new.py::test_it",  # not in the table: NEW_MODULE_S, before the quick ones
        "tests/a/test_unit.py::test_one",
        "tests/a/test_unit.py::test_two",
    ]


def test_equal_costs_keep_the_collection_order_and_no_table_changes_nothing() -> None:
    same = {"tests/a/test_unit.py": 1.0, "tests/e2e/test_slow.py": 1.0, "tests/b/test_new.py": 1.0, "tests/b/test_mid.py": 1.0}
    assert ids(longest_first(COLLECTED, same)) == ids(COLLECTED)
    assert ids(longest_first(COLLECTED, {})) == ids(COLLECTED)


def test_a_tally_written_is_the_table_read(tmp_path: Path) -> None:
    tally = Tally()
    for nodeid, seconds in [("tests/x.py::a", 0.25), ("tests/x.py::b[1]", 1.0), ("tests/y.py::C::d", 7.04)]:
        tally.add(nodeid, seconds)
    path = tmp_path / "durations.json"
    tally.write(path)
    assert list(json.loads(path.read_text())) == ["tests/y.py", "tests/x.py"]  # longest first
    assert load(path) == {"tests/y.py": 7.0, "tests/x.py": 1.2}
    assert load(tmp_path / "missing.json") == {}


def test_the_committed_table_is_seconds_per_test_module() -> None:
    table = load()
    assert table, f"{TABLE} is missing or empty (make test-durations)"
    assert all(module.startswith("tests/") and module.endswith(".py") and "::" not in module for module in table)
    assert all(seconds >= 0 for seconds in table.values())


def test_the_cpu_rows_name_the_costliest_modules_and_the_totals() -> None:
    tally = Tally()
    tally.add("tests/x.py::a", 2.0, cpu=0.5)
    tally.add("tests/y.py::b", 1.0, cpu=3.0)
    tally.add("tests/y.py::c", 1.0, cpu=1.0)
    rows = tally.rows(1)
    assert [row.split() for row in rows[1:]] == [["4.0", "2.0", "tests/y.py"], ["4.5", "4.0", "all", "2", "modules"]]


def test_cpu_seconds_count_what_this_process_spends() -> None:
    before = cpu_seconds()
    sum(i * i for i in range(300_000))
    assert cpu_seconds() > before
