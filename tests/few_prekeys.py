"""Fewer one-time prekeys for tests that do not count them (client/prekeys.py keeps 60 of each
kind, topped up below 20): making and signing 121 prekeys (hybrid signatures) is most of what a
registration costs. tests/conftest.py applies it in the test process (``few_prekeys``,
``few_prekeys_for_module``); ``python -m tests.few_prekeys ARGS`` (from the repository root) is
``sonet ARGS`` with it, for tests that run `sonet register` as a process of its own. Without
pytest, so that such a process starts as fast as `sonet` itself."""

from __future__ import annotations

import sys

from sonet.client import prekeys

#: one-time prekeys of each kind a device keeps (client/prekeys.py: 60)
FEW_PREKEYS = 12
#: topped up below a third of it, as client/prekeys.py's LOW is of its TARGET
FEW_LOW = FEW_PREKEYS // 3

if __name__ == "__main__":
    from sonet.client.cli import main

    prekeys.TARGET, prekeys.LOW = FEW_PREKEYS, FEW_LOW
    sys.exit(main())
