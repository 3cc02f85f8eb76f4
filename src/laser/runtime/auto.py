"""``backend="auto"``: the fastest backend for this artifact, measured on this machine.

Every backend that runs the artifact's format is built, warmed up, and timed on example inputs from the
Spec (batch 1, a short bounded loop); the fastest by median wins. The decision is cached in memory per
(model file sha256, machine, threads), so asking again costs one runner construction. The winner is
returned with ``runner.choice``: what was picked, why, and every candidate's measured median.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from laser.artifact import Artifact
from laser.errors import BackendError, DependencyError
from laser.runtime.base import Runner
from laser.runtime.hardware import machine
from laser.timing import PER_ROUND, interleaved_median_ms

log = logging.getLogger("laser.runtime")

_DECISIONS: dict[tuple[str, str, str], dict[str, Any]] = {}


def choose(artifact: Artifact, candidates: list[str], build: Callable[[str], Runner],
           options: Mapping[str, Any] | None = None) -> Runner:
    """Build the fastest of ``candidates`` (measured, or from this process's cache) and return it with
    ``runner.choice`` set. ``options`` (threads, device ...) are part of the cache key."""
    if not candidates:
        raise BackendError(f"no backend runs {artifact.format} artifacts like {artifact.name!r}")
    key = (_model_sha(artifact), machine(), repr(sorted((options or {}).items())))
    cached = _DECISIONS.get(key)
    if cached and cached["backend"] in candidates:
        runner = build(cached["backend"])
        runner.choice = {**cached, "cached": True}  # type: ignore[attr-defined]
        log.info("auto backend for %s: %s (cached decision: %s)", artifact.name, cached["backend"], cached["reason"])
        return runner
    if len(candidates) == 1:
        runner = build(candidates[0])
        choice = {"backend": candidates[0], "timings_ms": {}, "skipped": {}, "machine": machine(),
                  "reason": f"{candidates[0]} is the only backend that runs {artifact.format} artifacts"
                            + ("; export to ONNX for onnxruntime/openvino" if artifact.format == "torch" else "")}
        runner.choice = {**choice, "cached": False}  # type: ignore[attr-defined]
        return runner
    feeds = artifact.spec.example_inputs(batch=1)
    runners: dict[str, Runner] = {}
    skipped: dict[str, str] = {}
    for name in candidates:
        try:
            runner = build(name)
        except (DependencyError, BackendError) as exc:
            skipped[name] = str(exc)[:200]
            continue
        try:
            runner._run(feeds)  # a backend that loads the model but cannot run it is not a candidate
        except Exception as exc:  # runtimes raise their own types (RuntimeError, ort Fail ...)
            skipped[name] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
            runner.close()
            continue
        runners[name] = runner
    if not runners:
        raise BackendError(f"no backend could run {artifact.name!r} on example inputs of its spec: " +
                           "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    calls: dict[str, Callable[[], object]] = {n: functools.partial(r._run, feeds) for n, r in runners.items()}
    timings, runs = interleaved_median_ms(calls) if calls else ({}, 0)  # none ran: the BackendError below
    best = min(timings, key=timings.__getitem__) if timings else None
    for name, runner in runners.items():
        if name != best:
            runner.close()
    if best is None:
        raise BackendError(f"no backend could run {artifact.name!r}: " +
                           "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    winner = runners[best]
    ranked = sorted(timings, key=timings.__getitem__)
    others = ", ".join(f"{k} {timings[k]:.3g} ms" for k in ranked[1:])
    reason = (f"fastest measured here: {best} median {timings[best]:.3g} ms"
              + (f" vs {others}" if others else "")
              + f" (batch 1, {winner.threads} threads, {runs * PER_ROUND} timed calls each in {runs} interleaved rounds)")
    if skipped:
        reason += "; not available: " + ", ".join(skipped)
    choice = {"backend": best, "reason": reason, "timings_ms": timings, "skipped": skipped,
              "machine": machine(), "method": "measured: median wall time of runner calls, batch 1"}
    _DECISIONS[key] = choice
    winner.choice = {**choice, "cached": False}  # type: ignore[attr-defined]
    log.info("auto backend for %s: %s", artifact.name, reason)
    return winner


def _model_sha(artifact: Artifact) -> str:
    files: Mapping[str, Mapping[str, Any]] = artifact.manifest.files
    return "+".join(sorted(str(m["sha256"]) for m in files.values()))


def clear_cache() -> None:
    _DECISIONS.clear()
