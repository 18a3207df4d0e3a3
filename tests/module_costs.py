"""The measured cost of each test module (tests/durations.json), and the order it gives.

Under ``--dist loadscope`` a module runs whole on one worker, and the workers take the modules
in collection order. Collected longest first, the long end-to-end modules (real node
processes, 10-60 s each) start at once and the small unit-test modules fill the end, so no
worker is left idle while the other finishes a long module. The table holds seconds per
module (setup, call and teardown of its tests, summed); ``make test-durations`` measures it
again. A module missing from the table (a new one) is taken as ``NEW_MODULE_S``.
"""

from __future__ import annotations

import json
import resource
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeVar

__all__ = ["TABLE", "NEW_MODULE_S", "CPU_S", "module_of", "load", "longest_first", "cpu_seconds", "Tally"]

TABLE = Path(__file__).with_name("durations.json")
#: the cost given to a module the table does not name: a few seconds, so it starts before the
#: quick unit-test modules rather than ending the run
NEW_MODULE_S = 3.0
#: the user_properties key of a test phase's CPU seconds (measured with --write-durations)
CPU_S = "cpu_s"


class _Item(Protocol):
    @property
    def nodeid(self) -> str: ...


T = TypeVar("T", bound=_Item)


def module_of(nodeid: str) -> str:
    """``tests/x/test_y.py`` of ``tests/x/test_y.py::Class::test[param]``."""
    return nodeid.split("::", 1)[0]


def load(path: Path = TABLE) -> dict[str, float]:
    """Seconds per module; empty if there is no table (the collection order is then kept)."""
    try:
        table = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return {str(module): float(seconds) for module, seconds in table.items()}


def longest_first(items: Sequence[T], costs: dict[str, float]) -> list[T]:
    """``items`` with whole modules in decreasing cost; a module's tests keep their order (its
    module-scoped fixtures still start once), as do modules of equal cost."""
    if not costs:
        return list(items)
    position: dict[str, int] = {}
    for item in items:
        position.setdefault(module_of(item.nodeid), len(position))

    def key(item: T) -> tuple[float, int]:
        module = module_of(item.nodeid)
        return (-costs.get(module, NEW_MODULE_S), position[module])

    return sorted(items, key=key)  # stable: the order inside a module is kept


def cpu_seconds() -> float:
    """CPU used so far by this process and the subprocesses it has reaped (the nodes and CLIs a
    test started count once they ended, at the latest in the module's teardown)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class Tally:
    """Seconds per module of the test reports of one run (wall, and CPU where measured),
    the wall seconds written as the table."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.cpu: defaultdict[str, float] = defaultdict(float)

    def add(self, nodeid: str, duration: float, cpu: float = 0.0) -> None:
        self.seconds[module_of(nodeid)] += duration
        self.cpu[module_of(nodeid)] += cpu

    def rows(self, count: int) -> list[str]:
        """The ``count`` modules that took the most CPU, one line each, and the totals."""
        lines = [f"{'CPU s':>8} {'wall s':>8}  module"]
        for module, cpu in sorted(self.cpu.items(), key=lambda kv: -kv[1])[:count]:
            lines.append(f"{cpu:8.1f} {self.seconds[module]:8.1f}  {module}")
        lines.append(f"{sum(self.cpu.values()):8.1f} {sum(self.seconds.values()):8.1f}  all {len(self.seconds)} modules")
        return lines

    def write(self, path: Path = TABLE) -> None:
        ordered = sorted(self.seconds.items(), key=lambda kv: (-kv[1], kv[0]))
        path.write_text(json.dumps({module: round(s, 1) for module, s in ordered}, indent=1) + "\n")
