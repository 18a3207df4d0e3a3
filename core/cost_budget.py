"""Cost budgets: what the expensive requests of one actor may spend, in count and in bytes
(pure: the caller passes the time).

Some requests cost a node far more than others: a page of key-directory leaves is up to 2 MiB,
a prekey upload is hundreds of signature checks. A ``CostBudget`` gives each actor (a device on
``/client``, a peer node on ``/federation``) two balances: requests, and bytes — bytes served,
with CPU-heavy work converted at a fixed rate (``VERIFY_COST`` per signature checked). Both
refill at their rate up to their burst.

``admit`` runs before the work: while either balance is empty, or the bytes do not cover the
cost known up front, it refuses with ``OverBudget`` (code ``rate_limited``, saying when to try
again); otherwise it takes one request and that cost. ``charge`` adds what the answer turned out to cost once it is built: the byte
balance may go into debt by that one answer, which then delays the next request. So an actor
gets at most its byte rate on average (plus one answer), and an honest one, well inside it,
never notices. The table of actors is a bounded LRU, like ``ratelimit.Limiter``'s.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from .errors import Refusal
from .ratelimit import Rate

__all__ = ["Budget", "CostBudget", "OverBudget", "VERIFY_COST", "MAX_ACTORS"]

#: byte-equivalent of checking one signature (a hybrid prekey signature takes ~0.1-0.3 ms of
#: CPU, about what serving 16 KiB costs)
VERIFY_COST = 16 * 1024
#: actors remembered at once; the least recently seen is forgotten beyond this
MAX_ACTORS = 10_000


@dataclass(frozen=True, slots=True)
class Budget:
    #: expensive requests
    requests: Rate
    #: bytes served (and byte-equivalents of CPU)
    bytes: Rate


class OverBudget(Refusal):
    """An actor's budget is spent; ``retry_after_ms`` says when the next request may pass."""

    def __init__(self, message: str, *, retry_after_ms: int) -> None:
        super().__init__("rate_limited", message)
        self.retry_after_ms = retry_after_ms


class _Balance:
    __slots__ = ("requests", "bytes", "at_ms")

    def __init__(self, budget: Budget, now_ms: int) -> None:
        self.requests = budget.requests.burst
        self.bytes = budget.bytes.burst
        self.at_ms = now_ms

    def refill(self, budget: Budget, now_ms: int) -> None:
        elapsed = max(0, now_ms - self.at_ms) / 1000
        self.requests = min(budget.requests.burst, self.requests + elapsed * budget.requests.per_second)
        self.bytes = min(budget.bytes.burst, self.bytes + elapsed * budget.bytes.per_second)
        self.at_ms = max(self.at_ms, now_ms)


class CostBudget:
    """One balance per actor, all with the same ``budget``."""

    def __init__(self, budget: Budget, *, max_actors: int = MAX_ACTORS) -> None:
        if max_actors < 1:
            raise ValueError("a cost budget needs room for at least one actor")
        self.budget = budget
        self.max_actors = max_actors
        self._balances: OrderedDict[object, _Balance] = OrderedDict()

    def __len__(self) -> int:
        return len(self._balances)

    def admit(self, actor: object, now_ms: int, *, upfront: int = 0) -> None:
        """Let one request of ``actor`` start, spending ``upfront`` bytes of its cost; OverBudget
        (nothing spent) while its requests or bytes are used up."""
        balance = self._balance(actor, now_ms)
        # what is known up front must be there (a full balance at most, else it never passes)
        need = min(upfront, self.budget.bytes.burst)
        if balance.requests < 1 or balance.bytes <= 0 or balance.bytes < need:
            missing_bytes = max(need, 1) - balance.bytes
            wait_s = max(_wait_s(1 - balance.requests, self.budget.requests), _wait_s(missing_bytes, self.budget.bytes))
            retry_ms = max(1, int(wait_s * 1000) + 1)
            seconds = -(-retry_ms // 100) / 10  # rounded up to a tenth
            raise OverBudget(f"over this node's budget for expensive requests; try again in {seconds:.1f} s", retry_after_ms=retry_ms)
        balance.requests -= 1
        balance.bytes -= upfront

    def charge(self, actor: object, now_ms: int, nbytes: int) -> None:
        """Add ``nbytes`` to what ``actor`` spent (an answer's size, known once built)."""
        self._balance(actor, now_ms).bytes -= nbytes

    def _balance(self, actor: object, now_ms: int) -> _Balance:
        balance = self._balances.get(actor)
        if balance is None:
            if len(self._balances) >= self.max_actors:
                self._balances.popitem(last=False)
            balance = self._balances[actor] = _Balance(self.budget, now_ms)
        else:
            self._balances.move_to_end(actor)
            balance.refill(self.budget, now_ms)
        return balance


def _wait_s(missing: float, rate: Rate) -> float:
    """Seconds until ``missing`` more tokens have refilled (0 if none are missing)."""
    return max(0.0, missing) / rate.per_second
