"""After the loop: which candidates meet the budget, the Pareto front, parents and speed-ups, the winner.

The winner is the feasible candidate with the best objective (default: lowest p50), ties broken by
higher accuracy, then fewer bytes, then less energy, so it is never dominated by another feasible one.
When no candidate is feasible the best effort is the one that misses the budget by the least (sum of
each failed constraint's excess relative to its limit), then the best objective.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from laser.optimize import pareto

if TYPE_CHECKING:
    from laser.optimize.result import OptimizeResult, Outcome


def parent_of(o: Outcome, result: OptimizeResult) -> Outcome | None:
    """The candidate this one should beat: the same format and backend without the recipe; for the
    uncompressed model on another runtime, the eager PyTorch model."""
    from laser.optimize.result import BASELINE

    c = o.candidate
    eager = result.eager
    if (c.recipe, c.format, c.backend) == (BASELINE.recipe, BASELINE.format, BASELINE.backend):
        return None
    if c.recipe == "none":
        return eager
    same = result.get("none", c.format, c.backend)
    return same if same is not None and same.measured else eager


def _ratio(parent: Outcome | None, child: Outcome) -> float | None:
    if parent is None or not parent.measured or not child.measured:
        return None
    p, q = parent.metrics.get("p50_ms"), child.metrics.get("p50_ms")
    return p / q if p and q else None


def analyse(result: OptimizeResult) -> None:
    measured = result.measured
    for o in measured:
        o.violations = result.budget.check(o.metrics)
        parent = parent_of(o, result)
        o.parent = parent.name if parent is not None else None
        o.speedup_vs_parent = _ratio(parent, o)
        o.speedup_vs_eager = _ratio(result.eager, o)
    metrics = [o.metrics for o in measured]
    axes = pareto.axes_for(metrics)
    on_front = set(pareto.front(metrics, axes))
    for i, o in enumerate(measured):
        o.on_front = i in on_front
        o.dominated_by = [measured[j].name for j in pareto.dominated_by(metrics, i, axes)] if axes else []
    result.winner, result.feasible = choose(result)


def _tiebreak(o: Outcome) -> tuple[float, float, float]:
    m = o.metrics
    return (-(m.get("accuracy") or 0.0), float(m.get("bytes") or 0), float(m.get("energy_j") or 0.0))


def choose(result: OptimizeResult) -> tuple[Outcome | None, bool]:
    objective = result.budget.objective
    pool = [o for o in result.measured if not result.winner_from or o.candidate.recipe in result.winner_from]
    feasible = [o for o in pool if not o.violations]
    if feasible:
        return min(feasible, key=lambda o: (objective.score(o.metrics), *_tiebreak(o))), True
    if not pool:
        return None, False
    best = min(pool, key=lambda o: (result.budget.shortfall(o.metrics), objective.score(o.metrics),
                                               *_tiebreak(o)))
    return best, False
