"""The final round: the contenders re-timed side by side, so the ranking and every ratio come from one moment.

While the search runs, each candidate is timed in short windows at its own moment ("screening"). On a
shared machine one burst of other load moves such a figure 2-4×, so screening figures only decide who goes
on. The finalists (the eager baseline, the Pareto front, the best candidates under the budget and the best
efforts, and the parents of all of them) are then timed again *together*: in interleaved rounds, each
runner making a block of calls in turn, so load from other processes falls on all of them alike. A set
whose spread (max - min of the per-round medians, over their median) is too wide for any finalist is taken
again, whole; the set with the narrowest worst spread is kept. The winner is chosen among the finalists,
and every ratio in the report (× eager, × parent) is computed from figures of that one set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from laser.artifact import Artifact

if TYPE_CHECKING:
    from laser.optimize.evaluate import Settings
    from laser.optimize.result import OptimizeResult, Outcome

MAX_FINALISTS = 12
SPREAD_LIMIT_PCT = 25.0  # a set with a finalist whose per-round medians spread wider than this is taken again
MAX_SETS = 3
ROUNDS, BLOCK, SWITCH = 5, 5, 2
# Between blocks: let the previous runtime's intra-op threads go idle. onnxruntime's and OpenVINO's pools spin
# after their last call, and PyTorch's OpenMP threads then lose the cores to them (eager blocks read many
# times slower right after another runtime ran, on 2 cores).
PAUSE_S = 0.1

SET_SECONDS = 15.0  # a set of rounds of slow models uses shorter blocks to stay about this long
FINALS_SECONDS = 60.0  # no set is taken again once the final round has run this long

# (finalist name -> (artifact, backend)), settings, block, switch -> finalist name -> per-round ms per call
Timer = Callable[[Mapping[str, tuple[Artifact, str]], "Settings", int, int], dict[str, list[list[float]]]]


def side_by_side_timer(jobs: Mapping[str, tuple[Artifact, str]], settings: Settings, block: int = BLOCK,
                       switch: int = SWITCH) -> dict[str, list[list[float]]]:
    """One set of interleaved rounds over every finalist (batch 1, spec example inputs), per-round ms."""
    from laser.measure.latency import side_by_side
    from laser.runtime import run

    runners = {}
    try:
        for name, (art, backend) in jobs.items():
            runners[name] = run(art, backend=backend, threads=settings.threads)
        calls = {}
        for name, runner in runners.items():
            feeds = runner.spec.example_inputs(batch=1, seed=0)
            calls[name] = (lambda r=runner, f=feeds: r(f))
        budget = max(0.5, 2 * settings.max_seconds)  # seconds per finalist, ROUNDS rounds at least
        times = side_by_side(calls, rounds=ROUNDS, block=block, switch=switch, warmup=max(1, min(3, settings.warmup)),
                             pause_s=PAUSE_S, budget_s=budget, max_rounds=60)
    finally:
        for runner in runners.values():
            runner.close()
    return {name: [ts[i:i + block] for i in range(0, len(ts), block)] for name, ts in times.items()}


def block_plan(chosen: list[Outcome]) -> tuple[int, int]:
    """(timed, untimed) calls per finalist and round: BLOCK and SWITCH, shortened for slow models so that a
    set of ROUNDS rounds stays near SET_SECONDS (screening p50s estimate the cost)."""
    per_call_s = sum(float(o.metrics.get("p50_ms") or 0.0) for o in chosen) / 1e3
    if per_call_s * ROUNDS * (BLOCK + SWITCH) <= SET_SECONDS:
        return BLOCK, SWITCH
    return max(1, min(BLOCK, int(SET_SECONDS / (per_call_s * ROUNDS)) - 1)), 1


def finalists(result: OptimizeResult) -> list[Outcome]:
    """Who is re-timed: eager, the best under the budget (the best efforts when none meets it), the front,
    each with its parent (so "× parent" is quoted from the same rounds)."""
    from laser.optimize.analysis import parent_of

    pool = [o for o in result.measured if not o.unverified]
    obj, budget = result.budget.objective, result.budget
    feasible = sorted((o for o in pool if not o.violations), key=lambda o: obj.score(o.metrics))
    effort = sorted((o for o in pool if o.violations),
                    key=lambda o: (budget.shortfall(o.metrics), obj.score(o.metrics)))
    front = sorted((o for o in pool if o.on_front), key=lambda o: obj.score(o.metrics))
    picked: list[Outcome] = [result.eager] if result.eager is not None else []
    for o in [*feasible[:4], *([] if feasible else effort[:3]), *front]:
        if len(picked) >= MAX_FINALISTS:
            break
        for x in (o, parent_of(o, result)):
            if x is not None and x.measured and x not in picked and len(picked) < MAX_FINALISTS:
                picked.append(x)
    return picked


def spread_pct(rounds: list[list[float]]) -> float:
    medians = [float(np.median(r)) for r in rounds if r]
    mid = float(np.median(medians))
    return 100 * (max(medians) - min(medians)) / mid if mid > 0 else 0.0


def run_finals(result: OptimizeResult, artifact_for: Callable[[Outcome], Artifact], settings: Settings,
               timer: Timer) -> dict[str, Any] | None:
    """Re-time the finalists side by side and put the figures of the kept set into their metrics.
    Returns what was done (for the report), or None when there was nothing to compare."""
    chosen = finalists(result)
    if len(chosen) < 2:
        return None
    jobs = {o.name: (artifact_for(o), o.candidate.backend) for o in chosen}
    block, switch = block_plan(chosen)
    sets: list[tuple[float, dict[str, list[list[float]]]]] = []
    started = time.monotonic()
    for _ in range(MAX_SETS):
        got = timer(jobs, settings, block, switch)
        worst = max(spread_pct(got[name]) for name in jobs)
        sets.append((worst, got))
        if worst <= SPREAD_LIMIT_PCT or time.monotonic() - started > FINALS_SECONDS:
            break
    worst, kept = min(sets, key=lambda s: s[0])
    rounds = min(len(kept[name]) for name in jobs)
    for o in chosen:
        flat = [t for r in kept[o.name] for t in r]
        p50 = float(np.percentile(flat, 50))
        o.metrics = o.metrics.retimed(p50, float(np.percentile(flat, 90)), float(np.percentile(flat, 99)),
                                      spread_pct(kept[o.name]))
        o.final = True
    return {"finalists": [o.name for o in chosen], "sets": len(sets), "rounds": rounds, "block": block, "switch": switch,
            "worst_spread_pct": worst, "spread_limit_pct": SPREAD_LIMIT_PCT, "seconds": time.monotonic() - started,
            "method": (f"side by side in one process: {rounds} interleaved rounds, each finalist making {switch} "
                       f"untimed then {block} timed calls at batch 1 per round; p50/p90/p99 over all timed calls; "
                       f"{len(sets)} set(s) taken, the one with the narrowest worst spread kept "
                       f"({worst:.0f} %; limit {SPREAD_LIMIT_PCT:.0f} %)")}
