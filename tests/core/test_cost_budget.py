"""core/cost_budget.py: per-actor budgets of expensive requests, in count and in bytes."""

from __future__ import annotations

import pytest

from sonet.core.cost_budget import Budget, CostBudget, OverBudget
from sonet.core.errors import registered
from sonet.core.ratelimit import Rate

#: 2 requests a second after 5; 1000 bytes a second after 10_000
BUDGET = Budget(requests=Rate(per_second=2, burst=5), bytes=Rate(per_second=1000, burst=10_000))


def spent_until_refused(costs: CostBudget, actor: str, now: int, *, answer: int = 0, upfront: int = 0) -> tuple[int, OverBudget]:
    """Requests admitted (each answered with ``answer`` bytes) until one is refused."""
    for admitted in range(1000):
        try:
            costs.admit(actor, now, upfront=upfront)
        except OverBudget as exc:
            return admitted, exc
        costs.charge(actor, now, answer)
    raise AssertionError("never refused")


def test_the_request_count_runs_out_and_refills() -> None:
    costs = CostBudget(BUDGET)
    admitted, refusal = spent_until_refused(costs, "a", 0)
    assert admitted == 5
    assert refusal.code == "rate_limited" and registered(refusal.code)
    assert refusal.retry_after_ms == 501 and "try again in 0.6 s" in str(refusal)
    costs.admit("a", 500)  # one more token after half a second
    with pytest.raises(OverBudget):
        costs.admit("a", 500)


def test_bytes_served_run_out_one_answer_into_debt_and_the_debt_delays_the_next() -> None:
    costs = CostBudget(BUDGET)
    costs.admit("a", 0)
    costs.charge("a", 0, 9_000)
    costs.admit("a", 0)  # 1000 left: the answer's size is not known before
    costs.charge("a", 0, 4_000)  # 3000 in debt
    with pytest.raises(OverBudget) as info:
        costs.admit("a", 0)
    assert info.value.retry_after_ms == 3_002  # back above zero after ~3 s
    with pytest.raises(OverBudget):
        costs.admit("a", 2_999)
    costs.admit("a", 3_002)


def test_a_cost_known_up_front_must_be_there_and_nothing_is_spent_when_refused() -> None:
    costs = CostBudget(BUDGET)
    costs.admit("a", 0, upfront=8_000)
    with pytest.raises(OverBudget) as info:
        costs.admit("a", 0, upfront=8_000)  # 2000 left
    assert info.value.retry_after_ms == 6_001
    costs.admit("a", 0, upfront=2_000)  # the refusal took nothing: the 2000 are still there
    # a request larger than the whole balance needs a full one, and then passes
    with pytest.raises(OverBudget):
        costs.admit("a", 9_999, upfront=50_000)
    costs.admit("a", 10_000, upfront=50_000)


def test_each_actor_has_its_own_balance() -> None:
    costs = CostBudget(BUDGET)
    spent_until_refused(costs, "greedy", 0, answer=10_000)
    assert spent_until_refused(costs, "honest", 0, answer=100)[0] == 5  # only its count limits it
    with pytest.raises(OverBudget):
        costs.admit("greedy", 0)


def test_the_table_of_actors_is_bounded_and_forgets_the_least_recent() -> None:
    costs = CostBudget(BUDGET, max_actors=3)
    for actor in ("a", "b", "c"):
        spent_until_refused(costs, actor, 0)
    costs.admit("d", 0)  # "a" is forgotten
    assert len(costs) == 3
    costs.admit("a", 0)  # a fresh balance
    with pytest.raises(OverBudget):
        costs.admit("c", 0)  # still remembered
    with pytest.raises(ValueError):
        CostBudget(BUDGET, max_actors=0)
