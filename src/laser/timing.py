"""Timing callables side by side: the one primitive every "which is faster here?" question uses.

``side_by_side`` times several callables against each other in interleaved rounds (``laser.measure.latency``
re-exports it; the benches use it); ``interleaved_median_ms`` is its short bounded form that
``backend="auto"`` and the ONNX exporter choice use to pick the faster of a few runners. ``NOT_FASTER``
is the speed-up under which a model counts as no faster than the one it is compared with.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from laser.errors import ConfigError

# A child less than 5 % faster than its parent counts as "not faster" (noise is ±5-15 % on a shared machine).
NOT_FASTER = 1.05

# interleaved_median_ms per callable: WARMUP untimed calls, then rounds of SWITCH untimed + PER_ROUND timed
# calls, at least MIN_ROUNDS and at most MAX_ROUNDS rounds or BUDGET_S seconds per callable.
WARMUP, SWITCH, PER_ROUND, MIN_ROUNDS, MAX_ROUNDS, BUDGET_S = 3, 2, 4, 3, 25, 0.5


def side_by_side(calls: Mapping[str, Any], rounds: int = 5, block: int = 5, switch: int = 3,
                 warmup: int = 3, pause_s: float = 0.0, budget_s: float | None = None,
                 max_rounds: int | None = None) -> dict[str, list[float]]:
    """Time several callables against each other in one run; milliseconds per call, per name.

    Every callable first makes ``warmup`` untimed calls. Then, in each of ``rounds`` rounds (or, with
    ``budget_s``, as many rounds as fit in ``budget_s`` per callable, ``rounds`` at least), each callable
    makes ``switch`` untimed calls and ``block`` timed calls back to back, after an optional pause
    (``max_rounds`` caps the rounds a budget allows).
    Rounds spread load from other processes over every candidate alike, which is why ratios from one
    run are stable on a noisy machine. Blocks, not single alternating calls: the intra-op thread pools
    of the runtime that ran just before (onnxruntime's, OpenMP's, OpenVINO's) keep spinning for a while
    after their last call and would steal the cores from the next one. Each round starts one callable later
    than the one before, so no callable always follows the same neighbour (whose spinning threads would
    penalise it in every round alike).
    """
    if rounds < 1 or block < 1:
        raise ConfigError(f"rounds and block must be >= 1, got rounds={rounds}, block={block}")
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    start, done = time.perf_counter(), 0
    deadline = None if budget_s is None else budget_s * max(1, len(calls))
    while done < rounds or (deadline is not None and time.perf_counter() - start < deadline
                            and (max_rounds is None or done < max_rounds)):
        names = list(calls)
        for name in names[done % len(names):] + names[:done % len(names)]:
            fn = calls[name]
            if pause_s:
                time.sleep(pause_s)  # let the previous runtime's threads go idle
            for _ in range(switch):
                fn()
            for _ in range(block):
                t0 = time.perf_counter_ns()
                fn()
                times[name].append((time.perf_counter_ns() - t0) / 1e6)
        done += 1
    return times


def interleaved_median_ms(calls: Mapping[str, Callable[[], object]], warmup: int = WARMUP,
                          budget_s: float = BUDGET_S) -> tuple[dict[str, float], int]:
    """Median milliseconds of each call, timed side by side in short bounded rounds; (medians, rounds)."""
    times = side_by_side(calls, rounds=MIN_ROUNDS, block=PER_ROUND, switch=SWITCH, warmup=warmup,
                         budget_s=budget_s, max_rounds=MAX_ROUNDS)
    rounds = min((len(t) for t in times.values()), default=0) // PER_ROUND
    return {name: float(np.median(t)) for name, t in times.items()}, rounds
