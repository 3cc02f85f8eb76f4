"""Latency and throughput of a Runner, measured with ``time.perf_counter_ns``.

Scenarios follow MLPerf Inference's definitions:

- **SingleStream**: one query of one sample at a time, the next sent when the previous returns;
  the figure of merit is the latency percentile (p90 in MLPerf; we report p50/p90/p99).
- **Offline**: all samples available at once; the system may batch as it likes; the figure of
  merit is throughput (samples/s). Here: the best of a batch-size sweep, each batch timed back to back.

Every call is timed on its own (one ``runner(inputs)`` = one query of ``batch_size`` samples), after
``warmup`` untimed calls that keep allocation, thread-pool start-up and JIT out of the figures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from laser.errors import ConfigError
from laser.timing import side_by_side  # noqa: F401 - timing several callables against each other

# Latency samples kept in a result (for distribution plots); longer runs keep an even subsample.
MAX_KEPT_SAMPLES = 2000


@dataclass(frozen=True)
class LatencyResult:
    """Latency of one runner at one batch size. Times in milliseconds per query (= per batch)."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    ci95_ms: float  # half-width of the 95 % confidence interval of the mean (Student t)
    std_ms: float
    throughput_per_s: float  # samples (not queries) per second of wall time
    iters: int
    batch_size: int
    threads: int | None
    scenario: str  # "single-stream" | "offline"
    method: str
    samples_ms: tuple[float, ...] = field(default=(), repr=False)
    cpu_seconds: float = 0.0  # process CPU time (user + system) spent in the timed calls
    wall_seconds: float = 0.0  # wall time of the timed calls

    def to_dict(self, samples: bool = True) -> dict[str, Any]:
        d = asdict(self)
        d["samples_ms"] = list(self.samples_ms) if samples else []
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LatencyResult:
        known = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in known}
        kw["samples_ms"] = tuple(kw.get("samples_ms") or ())
        return cls(**kw)

    @property
    def utilisation(self) -> float:
        """Cores busy on average during the timed calls (CPU seconds / wall seconds)."""
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


def _t95(dof: int) -> float:
    """Two-sided 95 % Student t quantile (normal 1.96 for large samples)."""
    try:
        from scipy.stats import t

        return float(t.ppf(0.975, max(dof, 1)))
    except ImportError:  # pragma: no cover - scipy ships with scikit-learn, a core dependency
        return 1.96


def summarize(samples_ns: Sequence[int], batch_size: int, wall_ns: int, cpu_s: float, threads: int | None,
              scenario: str, method: str) -> LatencyResult:
    """Percentiles, mean ± CI and throughput from per-query times in nanoseconds."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    n = len(ms)
    if n == 0:
        raise ConfigError("no latency samples were taken; raise min_iters or max_seconds")
    std = float(ms.std(ddof=1)) if n > 1 else 0.0
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    kept = ms if n <= MAX_KEPT_SAMPLES else ms[np.linspace(0, n - 1, MAX_KEPT_SAMPLES).astype(int)]
    wall_s = wall_ns / 1e9
    return LatencyResult(
        p50_ms=p50, p90_ms=p90, p99_ms=p99, mean_ms=float(ms.mean()),
        ci95_ms=_t95(n - 1) * std / math.sqrt(n) if n > 1 else float("nan"), std_ms=std,
        throughput_per_s=n * batch_size / wall_s if wall_s > 0 else float("nan"),
        iters=n, batch_size=batch_size, threads=threads, scenario=scenario, method=method,
        samples_ms=tuple(round(float(v), 4) for v in kept), cpu_seconds=cpu_s, wall_seconds=wall_s,
    )


def latency(runner: Any, batch_size: int = 1, warmup: int = 10, min_iters: int = 30, max_seconds: float = 3.0,
            inputs: Mapping[str, np.ndarray] | None = None, *, iters: int | None = None,
            scenario: str | None = None, warmup_seconds: float = 0.3) -> LatencyResult:
    """Time ``runner(inputs)`` call by call.

    After at least ``warmup`` untimed calls lasting at least ``warmup_seconds`` (sub-millisecond
    models need far more than 10 calls before clocks, caches and thread pools settle), calls run
    until at least ``min_iters`` were timed and ``max_seconds`` of wall time has passed (a time
    budget), or exactly ``iters`` calls when given (a fixed count). ``inputs`` default to random example inputs from the runner's spec at
    ``batch_size``. ``scenario`` defaults to "single-stream" for batch 1, else "offline".
    """
    if (batch_size < 1 or warmup < 0 or min_iters < 1 or max_seconds < 0 or warmup_seconds < 0
            or (iters is not None and iters < 1)):
        raise ConfigError(f"need batch_size >= 1, warmup >= 0, min_iters >= 1, max_seconds >= 0, iters >= 1; got "
                          f"batch_size={batch_size}, warmup={warmup}, min_iters={min_iters}, "
                          f"max_seconds={max_seconds}, iters={iters}")
    if inputs is None:
        inputs = runner.spec.example_inputs(batch=batch_size)
    else:
        first = next(iter(inputs.values()))
        batch_size = int(first.shape[0]) if getattr(first, "ndim", 0) else 1
    # A runner on another machine (runtime/ssh.py) runs this same loop there, so the figures are the device's.
    loop = getattr(runner, "time_calls", None) or (lambda *a: time_calls(runner, *a))
    samples, wall_ns, cpu_s, done = loop(inputs, warmup, warmup_seconds, min_iters, max_seconds, iters)
    count = f"{iters} timed calls" if iters is not None else f">= {min_iters} timed calls and >= {max_seconds:g} s"
    clock = getattr(runner, "timing_method", "measured: time.perf_counter_ns around each runner call")
    method = (f"{clock}, after {done} warm-up calls (>= {warmup} and >= {warmup_seconds:g} s), {count}; "
              "throughput = samples / wall time")
    return summarize(samples, batch_size, wall_ns, cpu_s, getattr(runner, "threads", None),
                     scenario or ("single-stream" if batch_size == 1 else "offline"), method)


def time_calls(call: Any, inputs: Mapping[str, np.ndarray], warmup: int, warmup_seconds: float, min_iters: int,
               max_seconds: float, iters: int | None) -> tuple[list[int], int, float, int]:
    """(per-call ns, wall ns, process CPU s, warm-up calls done): the timing loop of ``latency``.
    ``runtime/device_runner.py`` runs a copy of it on SSH devices (it cannot import laser): keep the two alike."""
    clock = time.perf_counter_ns
    warm_until = clock() + int(warmup_seconds * 1e9)
    done = 0
    while done < warmup or clock() < warm_until:
        call(inputs)
        done += 1
    budget_ns = int(max_seconds * 1e9)
    samples: list[int] = []
    cpu0 = time.process_time()
    start = clock()
    while True:
        t0 = clock()
        call(inputs)
        t1 = clock()
        samples.append(t1 - t0)
        if iters is not None:
            if len(samples) >= iters:
                break
        elif len(samples) >= min_iters and t1 - start >= budget_ns:
            break
    return samples, clock() - start, time.process_time() - cpu0, done


def single_stream(runner: Any, **kwargs: Any) -> LatencyResult:
    """MLPerf SingleStream: batch 1, one query at a time."""
    return latency(runner, batch_size=1, scenario="single-stream", **kwargs)


def sweep(runner: Any, batch_sizes: Sequence[int] = (1, 8, 32), **kwargs: Any) -> list[LatencyResult]:
    """Latency at each batch size (batch 1 labelled single-stream, larger ones offline)."""
    if not batch_sizes:
        raise ConfigError("batch_sizes is empty; pass e.g. (1, 8, 32)")
    return [latency(runner, batch_size=int(b), **kwargs) for b in batch_sizes]


def offline(runner: Any, batch_sizes: Sequence[int] = (1, 8, 32), **kwargs: Any) -> LatencyResult:
    """MLPerf Offline: the highest throughput over a batch-size sweep (the batch size is in the result)."""
    results = sweep(runner, batch_sizes, **kwargs)
    best = max(results, key=lambda r: r.throughput_per_s)
    method = best.method + f"; offline = best throughput over batch sizes {list(batch_sizes)}"
    return replace(best, scenario="offline", method=method)


@dataclass(frozen=True)
class Repeated:
    """Several independent latency runs of the same configuration, and how much they disagree."""

    runs: tuple[LatencyResult, ...]

    @property
    def p50s(self) -> list[float]:
        return [r.p50_ms for r in self.runs]

    @property
    def median_p50_ms(self) -> float:
        return float(np.median(self.p50s))

    @property
    def spread_pct(self) -> float:
        """(max - min) / median of the runs' p50, in percent."""
        p = self.p50s
        return 100.0 * (max(p) - min(p)) / self.median_p50_ms if self.median_p50_ms > 0 else float("nan")

    @property
    def median_run(self) -> LatencyResult:
        """The run whose p50 is the median one (the figure reported)."""
        order = sorted(self.runs, key=lambda r: r.p50_ms)
        return order[(len(order) - 1) // 2]

    def to_dict(self) -> dict[str, Any]:
        return {"p50_ms": self.p50s, "median_p50_ms": self.median_p50_ms, "spread_pct": self.spread_pct,
                "runs": len(self.runs), "method": "independent latency runs back to back; "
                "spread = (max - min) / median of their p50"}


def repeated(runner: Any, repeats: int = 3, **kwargs: Any) -> Repeated:
    """``repeats`` independent latency runs (each with its own warm-up)."""
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats}")
    return Repeated(tuple(latency(runner, **kwargs) for _ in range(repeats)))
