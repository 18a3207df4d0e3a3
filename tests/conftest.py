"""Hooks for the whole suite (pytest loads this file in the process that reports, also under
pytest-xdist, where tests/e2e/conftest.py is loaded only by the workers that run its tests).

The fault harness (tests/e2e/faults.py) keeps each run's counts in the test's
``user_properties`` (``record_fault_run``); they reach this process with the test's report,
from a worker too, and are printed as one table after pytest's own summary.

Under pytest-xdist each worker collects the modules longest first, by the measured costs in
tests/durations.json (tests/module_costs.py); ``--write-durations`` measures them again.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import pytest

from sonet.client import prekeys
from sonet.client.groups import keys as key_packages

from tests import module_costs
from tests.few_prekeys import FEW_KEY_PACKAGES, FEW_KEY_PACKAGES_LOW, FEW_LOW, FEW_PREKEYS

# A suite started as a background job of a non-interactive shell (`make test &`) runs with
# SIGINT ignored, and every process it starts inherits that: the tests that stop a node or a
# `--watch` with Ctrl-C would then wait for ever. A handler is not inherited across exec, so
# with one here the programs the tests start get SIGINT's default again.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: the user_properties key of a fault run's counts (tests/e2e/conftest.py ``record_fault_run``)
FAULT_RUN = "fault_run"

_fault_runs: list[dict[str, object]] = []


_module_seconds = module_costs.Tally()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--write-durations",
        action="store_true",
        help="write the seconds each test module took to tests/durations.json (the order xdist workers run them in)",
    )


@pytest.hookimpl(trylast=True)  # after pytest's own reordering (by fixture scope)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker: whole modules, longest first (every worker sorts the same way, so
    their collections stay equal). A run in one process keeps the file order."""
    if hasattr(config, "workerinput"):
        items[:] = module_costs.longest_first(items, module_costs.load())


_cpu_mark = [0.0]


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    _cpu_mark[0] = module_costs.cpu_seconds()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """With --write-durations: each phase's report carries the CPU it took (to the controller)."""
    outcome = yield
    if item.config.getoption("write_durations"):
        now = module_costs.cpu_seconds()
        outcome.get_result().user_properties.append((module_costs.CPU_S, now - _cpu_mark[0]))
        _cpu_mark[0] = now


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _fault_runs.extend(row for key, row in report.user_properties if key == FAULT_RUN)
    cpu = sum(value for key, value in report.user_properties if key == module_costs.CPU_S)
    _module_seconds.add(report.nodeid, report.duration, cpu)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # in the process that reports (the xdist controller, or the only one), for a whole run
    if session.config.getoption("write_durations") and not hasattr(session.config, "workerinput"):
        _module_seconds.write()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    """The table of the fault runs of this session; with --write-durations, where the CPU went."""
    if config.getoption("write_durations"):
        terminalreporter.section("CPU per module (this process and its reaped subprocesses)")
        for line in _module_seconds.rows(30):
            terminalreporter.write_line(line)
    if not _fault_runs:
        return
    terminalreporter.section("fault runs (lost and duplicated must be 0)")
    columns = list(_fault_runs[0])
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in _fault_runs)) for c in columns}
    for line in [dict(zip(columns, columns)), *_fault_runs]:
        terminalreporter.write_line("  ".join(str(line.get(c, "")).ljust(widths[c]) for c in columns).rstrip())


@contextlib.contextmanager
def fewer_prekeys() -> Iterator[None]:
    """Devices made in this process keep ``FEW_PREKEYS`` one-time prekeys of each kind instead
    of client/prekeys.py's ``TARGET``, and ``FEW_KEY_PACKAGES`` one-time KeyPackages instead of
    client/groups/keys.py's (tests/few_prekeys.py)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prekeys, "TARGET", FEW_PREKEYS)
        patch.setattr(prekeys, "LOW", FEW_LOW)
        patch.setattr(key_packages, "TARGET", FEW_KEY_PACKAGES)
        patch.setattr(key_packages, "LOW", FEW_KEY_PACKAGES_LOW)
        yield


@pytest.fixture
def few_prekeys() -> Iterator[None]:
    """``fewer_prekeys`` for one test. For the modules that do not count prekeys
    (``pytestmark = pytest.mark.usefixtures("few_prekeys")``)."""
    with fewer_prekeys():
        yield


@pytest.fixture(scope="module")
def few_prekeys_for_module() -> Iterator[None]:
    """``fewer_prekeys`` for a whole module, its module-scoped fixtures too (the e2e modules
    that register devices in a module's set-up and do not count prekeys)."""
    with fewer_prekeys():
        yield
