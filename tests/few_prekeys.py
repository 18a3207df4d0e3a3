"""Fewer one-time prekeys for tests that do not count them (client/prekeys.py keeps 60 of each
kind, topped up below 20): making and signing 121 prekeys (hybrid signatures) is most of what a
registration costs. tests/conftest.py applies it in the test process (``few_prekeys``,
``few_prekeys_for_module``); ``python -m tests.few_prekeys ARGS`` (from the repository root) is
``sonet ARGS`` with it, for tests that run `sonet register` as a process of its own. Without
pytest, so that such a process starts as fast as `sonet` itself. In the test process the same
fixtures also keep fewer MLS KeyPackages (the process helper keeps client/groups/keys.py's
count: the crash-registration test's kill windows were measured with it)."""

from __future__ import annotations

import sys

from sonet.client import prekeys

#: one-time prekeys of each kind a device keeps (client/prekeys.py: 60)
FEW_PREKEYS = 6
#: topped up below a third of it, as client/prekeys.py's LOW is of its TARGET
FEW_LOW = FEW_PREKEYS // 3
#: one-time MLS KeyPackages a device keeps (client/groups/keys.py: 30), in the test process only:
#: each is an X-Wing key pair, a hybrid credential signature and two Ed25519 ones (~4 ms)
FEW_KEY_PACKAGES = 4
#: topped up below a third of it, as client/groups/keys.py's LOW is of its TARGET
FEW_KEY_PACKAGES_LOW = FEW_KEY_PACKAGES // 3

if __name__ == "__main__":
    from sonet.client.cli import main

    prekeys.TARGET, prekeys.LOW = FEW_PREKEYS, FEW_LOW
    sys.exit(main())
