"""After the loop: which candidates meet the budget, the Pareto front, parents and speed-ups, the winner.

The winner is the feasible candidate with the best objective (default: lowest p50), ties broken by
higher accuracy, then fewer bytes, then less energy, so it is never dominated by another feasible one.
When no candidate is feasible the best effort is the one that misses the budget by the least (sum of
each failed constraint's excess relative to its limit), then the best objective. An unverified candidate
(it changes the function and there was no data to recover or check it) is never chosen, not even as the
best effort; nor is a candidate the run's --target does not run (the PyTorch eager reference of --target mobile). After the final round (finals.py) only finalists compete, and ratios are quoted only between
figures of that one set of rounds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from laser.optimize import pareto

if TYPE_CHECKING:
    from laser.optimize.result import OptimizeResult, Outcome


def parent_of(o: Outcome, result: OptimizeResult) -> Outcome | None:
    """The candidate this one should beat: the same format and backend without the recipe; for the
    uncompressed model on another runtime, the eager PyTorch model (under --on: the FP32 ONNX model there)."""
    c = o.candidate
    eager = result.eager
    if c == result.baseline:
        return None
    if c.recipe == "none":
        return eager
    same = result.get("none", c.format, c.backend)
    return same if same is not None and same.measured else eager


def _ratio(parent: Outcome | None, child: Outcome, same_rounds: bool = True) -> float | None:
    """p50 ratio parent / child; with ``same_rounds`` only when both were timed in the same final set."""
    if parent is None or not parent.measured or not child.measured:
        return None
    if same_rounds and not (parent.final and child.final):
        return None
    key = "p50_ms" if same_rounds else "screen_p50_ms"
    p = parent.metrics.get(key, parent.metrics.get("p50_ms"))
    q = child.metrics.get(key, child.metrics.get("p50_ms"))
    return p / q if p and q else None


def analyse(result: OptimizeResult) -> None:
    from laser.optimize.targets import target

    measured = result.measured
    where = target(result.target)
    for o in measured:
        o.off_target = not where.deployable(o.candidate.format, o.candidate.backend)
        o.violations = result.budget.check(o.metrics)
        parent = parent_of(o, result)
        o.parent = parent.name if parent is not None else None
        o.speedup_vs_parent = _ratio(parent, o)
        o.speedup_vs_eager = _ratio(result.eager, o)
        o.screen_speedup_vs_parent = _ratio(parent, o, same_rounds=False)
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
    pool = [o for o in result.measured if not o.unverified and not o.off_target
            and (not result.winner_from or o.candidate.recipe in result.winner_from)]
    if result.finals is not None:  # after the final round, only figures of that one set are compared
        pool = [o for o in pool if o.final] or pool
    feasible = [o for o in pool if not o.violations]
    if feasible:
        return min(feasible, key=lambda o: (objective.score(o.metrics), *_tiebreak(o))), True
    if not pool:
        return None, False
    best = min(pool, key=lambda o: (result.budget.shortfall(o.metrics), objective.score(o.metrics),
                                               *_tiebreak(o)))
    return best, False
