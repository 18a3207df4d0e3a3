"""The cost budget of each device on ``/client`` (core/cost_budget.py): what its expensive
requests may spend, and the two calls the handlers make.

Expensive are the requests whose answer is large or whose checks take CPU: ``FetchLeaves``
(up to 2 MiB a page), ``FetchConsistency``, ``FetchDevices``, ``FetchBundles`` and
``FetchKeyPackages`` (a proof and records, and for another node's account a request to it), and
``PublishPrekeys`` / ``PublishKeyPackages`` (one signature check per prekey, three per
KeyPackage). A handler calls ``admit(session, upfront)`` before the work and
``charged(session, answer)`` on the answer it sends; over the budget the device gets
``rate_limited`` saying when to try again, and the connection stays open. The actor is the
device key, so reconnecting does not refill it; every device has its own balance.

The defaults are far above what a device does: self-monitoring reads at most 4096 leaves per
connection (~25 MiB of hybrid leaves: the burst), registering uploads a few hundred prekeys
(~6 MiB of signature checks), a send looks up each recipient once. A device looping over
``FetchLeaves`` gets ~4 MiB/s instead of what the node could serve (~190 MB/s).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sonet.core.client_api import Leaves
from sonet.core.cost_budget import VERIFY_COST, Budget, CostBudget, OverBudget
from sonet.core.ratelimit import Rate
from sonet.core.wire import Frame, encode_frame

from .client_checks import RequestError

if TYPE_CHECKING:  # client_context builds its default budget with this module
    from .client_context import Session

__all__ = ["CLIENT_BUDGET", "VERIFY_COST", "client_cost_budget", "admit", "charged", "answer_bytes"]

MIB = 1024 * 1024
#: per device: 50 expensive requests a second after a burst of 1000; 4 MiB a second after 64
CLIENT_BUDGET = Budget(requests=Rate(per_second=50, burst=1000), bytes=Rate(per_second=4 * MIB, burst=64 * MIB))


def client_cost_budget() -> CostBudget:
    """A budget table with the defaults of this module (a running node builds its own from
    node.toml ``[budgets]``, node/budget_settings.py, whose defaults these are)."""
    return CostBudget(CLIENT_BUDGET)


def admit(session: Session, upfront: int = 0) -> None:
    """Let an expensive request of this connection's device start, spending ``upfront`` bytes
    of its cost; RequestError ``rate_limited`` (nothing spent) over the device's budget."""
    ctx = session.ctx
    try:
        ctx.costs.admit(session.peer.fingerprint, ctx.clock_ms(), upfront=upfront)
    except OverBudget as exc:
        raise RequestError(exc.code, str(exc)) from None


def charged(session: Session, answer: Frame) -> Frame:
    """``answer``, its size added to what the device spent (then it is sent)."""
    ctx = session.ctx
    ctx.costs.charge(session.peer.fingerprint, ctx.clock_ms(), answer_bytes(answer))
    return answer


def answer_bytes(answer: Frame) -> int:
    """An answer's size on the wire (the leaves and hashes of a ``Leaves`` page, counted
    without encoding it twice)."""
    if isinstance(answer, Leaves):
        return sum(map(len, answer.leaves)) + sum(map(len, answer.frontier)) + 64
    return len(encode_frame(answer))
