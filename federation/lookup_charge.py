"""Who pays for a lookup this node makes at another node on behalf of one of its devices.

A peer limits this node as a whole (federation/inbound.py), so the node shares that out: each
device has its own budget of lookups at other nodes (node/client_limits.py). Only what actually
goes out to a peer is charged: the device handlers run each request inside
``charging_lookups(charge)``, and the federation service calls ``charge_lookup(node)`` right
before it sends a lookup over a link (``Federation._ask``). A device list answered from the
cache, a stored node key, a lookup refused before anything is sent (unknown node, no route, a
split node) cost nothing. ``charge`` refuses by raising ``FederationError("rate_limited")``,
which the handler turns into that request's answer. Outside such a request (witness rounds,
relayed lookups of peers) nothing is charged here: those have their own limits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["charging_lookups", "charge_lookup"]

#: the charge of the request being answered in this task (trio tasks each have their own context)
_CHARGE: ContextVar[Callable[[str], None] | None] = ContextVar("sonet_lookup_charge", default=None)


@contextmanager
def charging_lookups(charge: Callable[[str], None] | None) -> Iterator[None]:
    """Within this block, every lookup sent to another node first calls ``charge(node)``."""
    token = _CHARGE.set(charge)
    try:
        yield
    finally:
        _CHARGE.reset(token)


def charge_lookup(node: str) -> None:
    """A lookup is about to go out to ``node``: charge whoever asked (FederationError
    ``rate_limited`` over their budget; nothing is sent then)."""
    charge = _CHARGE.get()
    if charge is not None:
        charge(node)
