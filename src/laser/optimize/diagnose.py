"""The doctor inside an optimize run: every candidate not faster than its parent (or less accurate than the
budget allows) is examined with the figures the run measured, and the same artifact running much slower on
one ONNX runtime than on the other is explained. Findings are cached like measurements."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from laser.artifact import Artifact
from laser.optimize.cache import Cache
from laser.optimize.evaluate import Settings
from laser.optimize.result import OptimizeResult, Outcome
from laser.timing import NOT_FASTER

log = logging.getLogger("laser.optimize")
DOCTOR_VERSION = 3  # part of the doctor's cache key: a newer doctor re-examines cached candidates


class Run(Protocol):
    """What the doctor needs of the optimize run (engine.Search)."""

    settings: Settings
    cache: Cache

    def artifact_for(self, o: Outcome) -> Artifact: ...

    def out_of_time(self) -> bool: ...


def probes(settings: Settings) -> Any:
    from laser.doctor import Probes

    return Probes(settings.probe_seconds, settings.profile_runs, settings.threads)


def diagnose(run: Run, result: OptimizeResult) -> None:
    """Diagnose the flagged candidates, the most surprising (slowest relative to the parent) first."""
    from laser.doctor import diagnose_pair

    flagged = sorted((o for o in result.measured if o.parent and flagged_by(o, result)),
                     key=lambda o: o.speedup_vs_parent or 0.0)
    limit = run.settings.max_diagnoses
    for o in flagged[:limit]:
        if run.out_of_time():
            result.notes.append(f"doctor: time budget spent; {o.name} and later ones not diagnosed")
            break
        dkey = f"doctor:{DOCTOR_VERSION}:{o.key}"
        cached = run.cache.get(dkey)
        if cached:
            o.diagnosis = cached["diagnosis"]
            continue
        parent = next(p for p in result.outcomes if p.name == o.parent)
        try:
            d = diagnose_pair(run.artifact_for(parent), run.artifact_for(o), parent.candidate.backend,
                              o.candidate.backend, parent_metrics=parent.metrics, child_metrics=o.metrics,
                              allowed_drop_pts=result.budget_drop_limit(), probes=probes(run.settings))
        except Exception as exc:  # the doctor explains; it must never sink the run
            log.info("doctor failed on %s", o.name, exc_info=True)
            o.diagnosis = {"error": f"{type(exc).__name__}: {str(exc)[:300]}", "findings": []}
            continue
        o.diagnosis = d.to_dict()
        run.cache.put(dkey, {"diagnosis": o.diagnosis, "status": "doctor"})
    backend_gaps(run, result)
    if len(flagged) > limit:
        result.notes.append(f"doctor: {len(flagged)} candidates were not faster (or less accurate) than their "
                            f"parent; the first {limit} were diagnosed (raise Settings.max_diagnoses for more)")


def backend_gaps(run: Run, result: OptimizeResult) -> None:
    """The same artifact much slower on one ONNX runtime than on the other: profile both and say why
    (laser.doctor.gaps); the finding joins the slower candidate's diagnosis."""
    from laser.doctor.gaps import GAP, GAP_CHECK, explain

    gaps = []
    for o in result.measured:
        c = o.candidate
        other = result.get(c.recipe, c.format, "openvino" if c.backend == "onnxruntime" else "onnxruntime")
        if c.backend != "onnxruntime" or other is None or not other.measured:
            continue
        key = "p50_ms" if o.final and other.final else "screen_p50_ms"
        a = o.metrics.get(key, o.metrics["p50_ms"])
        b = other.metrics.get(key, other.metrics["p50_ms"])
        if a is None or b is None:  # one side was not timed (e.g. it failed its checks)
            continue
        slow, fast = (o, other) if a > b else (other, o)
        ratio = max(a, b) / min(a, b)
        if ratio >= GAP:
            gaps.append((ratio, slow, fast, max(a, b), min(a, b)))
    for _, slow, fast, slow_p50, fast_p50 in sorted(gaps, key=lambda g: -g[0])[:2]:
        if run.out_of_time():
            break
        dkey = f"gap:{DOCTOR_VERSION}:{slow.key}:{fast.key}"
        cached = run.cache.get(dkey)
        try:
            finding = cached["finding"] if cached else explain(
                run.artifact_for(slow), slow.candidate.backend, fast.candidate.backend, slow_p50, fast_p50,
                threads=run.settings.threads).to_dict()
        except Exception as exc:  # the doctor explains; it must never sink the run
            log.info("backend-gap check failed on %s", slow.name, exc_info=True)
            finding = {"check": GAP_CHECK, "cause": f"the backend-gap check failed: {exc}"[:300],
                       "evidence": "", "fix": "", "share": 0.0}
        if not cached:
            run.cache.put(dkey, {"finding": finding, "status": "doctor"})
        slow.diagnosis = slow.diagnosis or {"findings": []}
        slow.diagnosis.setdefault("findings", []).append(finding)


def flagged_by(o: Outcome, result: OptimizeResult) -> bool:
    """Not faster than its parent, or less accurate than the budget allows."""
    ratio = o.speedup_vs_parent if o.speedup_vs_parent is not None else o.screen_speedup_vs_parent
    slow = ratio is not None and ratio < NOT_FASTER
    limit = result.budget_drop_limit()
    drop = o.metrics.get("accuracy_drop_pts")
    return slow or (limit is not None and drop is not None and drop > limit)
