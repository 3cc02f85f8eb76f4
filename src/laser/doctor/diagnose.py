"""The doctor: why a candidate is not faster than its parent (or less accurate than allowed), from measurements.

``doctor(parent, child, backend=...)`` measures both on their backends, gathers facts — ONNX Runtime's
per-op profile (``SessionOptions.enable_profiling``: time by op type, Q/DQ nodes, float convolutions
left in a quantized graph, Cast nodes), the graph's ops, initializer dtypes and channel counts, the
CPU's instruction sets from /proc/cpuinfo, throughput at batch 8 vs batch 1, the first call vs the
warm median (probes.py) — and runs the checks in checks.py. Each finding names a cause, the measured
evidence and the fix it suggests.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from laser.artifact import Artifact
from laser.doctor.checks import run_checks
from laser.doctor.compiled import compile_facts
from laser.doctor.facts import Facts, Finding, GraphFacts
from laser.doctor.probes import (
    Probes,
    first_call,
    graph_facts,
    macs,
    ort_profile,
    thread_scaling,
    throughput,
    torch_channels,
)
from laser.runtime.hardware import cpu_flags
from laser.timing import NOT_FASTER


@dataclass
class Diagnosis:
    parent: str
    child: str
    parent_backend: str
    child_backend: str
    parent_p50_ms: float
    child_p50_ms: float
    accuracy_drop_pts: float | None
    allowed_drop_pts: float | None
    findings: list[Finding]
    profile: dict[str, Any] | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def speedup(self) -> float:
        return self.parent_p50_ms / self.child_p50_ms if self.child_p50_ms else float("nan")

    def headline(self) -> str:
        s = self.speedup
        pace = (f"{s:.2f}× the speed of its parent" if s < NOT_FASTER else f"{s:.2f}× faster than its parent")
        text = (f"{self.child} on {self.child_backend} is {pace} {self.parent} on {self.parent_backend} "
                f"(p50 {self.child_p50_ms:.3f} ms vs {self.parent_p50_ms:.3f} ms, batch 1, measured)")
        if self.accuracy_drop_pts is not None and self.allowed_drop_pts is not None \
                and self.accuracy_drop_pts > self.allowed_drop_pts:
            text += f"; accuracy drop {self.accuracy_drop_pts:.2f} pts > {self.allowed_drop_pts:g} allowed"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"headline": self.headline(), "parent": self.parent, "child": self.child,
                "parent_backend": self.parent_backend, "child_backend": self.child_backend,
                "parent_p50_ms": self.parent_p50_ms, "child_p50_ms": self.child_p50_ms, "speedup": self.speedup,
                "accuracy_drop_pts": self.accuracy_drop_pts, "allowed_drop_pts": self.allowed_drop_pts,
                "findings": [f.to_dict() for f in self.findings], "profile": self.profile, "facts": self.facts}

    def to_text(self) -> str:
        lines = [self.headline()]
        if not self.findings:
            lines.append("nothing to explain: the child is faster than its parent and within the accuracy allowed")
        for i, f in enumerate(self.findings, 1):
            lines += [f"{i}. {f.cause}", f"   evidence: {f.evidence}", f"   fix: {f.fix}"]
        return "\n".join(lines)


# -- entry points --------------------------------------------------------------------------------
def diagnose_pair(parent: Artifact, child: Artifact, parent_backend: str, child_backend: str, *,
                  parent_metrics: Mapping[str, Any], child_metrics: Mapping[str, Any],
                  allowed_drop_pts: float | None = None, probes: Probes | None = None) -> Diagnosis:
    """Diagnose with latency (and accuracy) already measured, e.g. by an optimize run."""
    probes = probes or Probes()
    threads, seconds = probes.threads, probes.seconds
    f = Facts(parent, child, parent_backend, child_backend, float(parent_metrics["p50_ms"]),
              float(child_metrics["p50_ms"]), child_metrics.get("accuracy_drop_pts"), allowed_drop_pts,
              parent_metrics.get("macs") or macs(parent), child_metrics.get("macs") or macs(child))
    f.cpu_flags = cpu_flags()
    if child.format == "onnx":
        f.child_graph = graph_facts(child)
    elif child.format == "torch":
        f.child_graph = GraphFacts(Counter(), 0.0, Counter(), torch_channels(child))
    if child.format in ("onnx", "ort") and child_backend == "onnxruntime":
        f.child_profile = ort_profile(child, runs=probes.profile_runs, threads=threads)
    if parent.format in ("onnx", "ort") and parent_backend == "onnxruntime":
        f.parent_profile = ort_profile(parent, runs=probes.profile_runs, threads=threads)
    # batch 1 and 8 timed back to back with the same settings, so their ratio is like for like
    # (a fixed-batch program, an ExecuTorch .pte, is timed only at the batch it takes)
    f.throughput = {"parent": {b: throughput(parent, parent_backend, b, threads, seconds) for b in (1, 8)
                               if parent.spec.accepts_batch(b)},
                    "child": {b: throughput(child, child_backend, b, threads, seconds) for b in (1, 8)
                              if child.spec.accepts_batch(b)}}
    f.first_call = first_call(child, child_backend, threads)
    f.threads = thread_scaling(child, child_backend, threads, seconds)
    f.compiled = compile_facts(parent, child, child_backend) if f.slow else {}
    findings = run_checks(f)
    facts = {"cpu_flags": sorted(x for x in f.cpu_flags if "avx" in x or "amx" in x or "vnni" in x or x == "f16c"),
             "throughput_per_s": f.throughput, "first_call": f.first_call, "threads": f.threads,
             "parent_macs": f.parent_macs, "child_macs": f.child_macs,
             "child_ops": dict(f.child_graph.ops) if f.child_graph else None,
             **({"compiled": f.compiled} if f.compiled else {})}
    return Diagnosis(_label(parent), _label(child), parent_backend, child_backend, f.parent_p50, f.child_p50,
                     f.accuracy_drop_pts, allowed_drop_pts, findings,
                     f.child_profile.to_dict() if f.child_profile else None, facts)


def _label(art: Artifact) -> str:
    steps = [s.op for s in art.lineage if s.op not in ("load", "import")]
    return f"{art.name} ({' → '.join(steps) or 'as loaded'}, {art.format})"


def doctor(parent: Artifact | str | os.PathLike[str], child: Artifact | str | os.PathLike[str],
           backend: str | None = None, *, parent_backend: str | None = None, data: Any = None,
           allowed_drop_pts: float | None = None, threads: int | None = None, quick: bool = False) -> Diagnosis:
    """Why ``child`` is not faster than ``parent`` (or less accurate than allowed), with fixes.

    ``backend``: where the child runs (default: the first backend for its format, i.e. ONNX Runtime
    for ONNX); ``parent_backend`` defaults to ``backend`` when it runs the parent's format, else the
    parent's first backend. ``data``: a labelled dataset (name or Dataset) to compare the task metric.
    ``quick``: shorter timings and profiles (noisier).
    """
    from laser.loader import load
    from laser.measure.latency import latency
    from laser.runtime import backends_for, run

    parent = parent if isinstance(parent, Artifact) else load(parent)
    child = child if isinstance(child, Artifact) else load(child)
    backend = backend or backends_for(child)[0]
    if parent_backend is None:
        parent_backend = backend if backend in backends_for(parent) else backends_for(parent)[0]
    warmup, min_iters, seconds = (2, 5, 0.05) if quick else (10, 20, 0.25)
    metrics: dict[str, dict[str, Any]] = {}
    for who, art, b in (("parent", parent, parent_backend), ("child", child, backend)):
        with run(art, backend=b, threads=threads) as runner:
            metrics[who] = {"p50_ms": latency(runner, batch_size=1, warmup=warmup, min_iters=min_iters,
                                              max_seconds=seconds).p50_ms}
    if data is not None:
        allowed_drop_pts = 1.0 if allowed_drop_pts is None else allowed_drop_pts
        metrics["child"]["accuracy_drop_pts"] = accuracy_drop(parent, parent_backend, child, backend, data,
                                                              threads)
    return diagnose_pair(parent, child, parent_backend, backend, parent_metrics=metrics["parent"],
                         child_metrics=metrics["child"], allowed_drop_pts=allowed_drop_pts,
                         probes=Probes.fast(threads) if quick else Probes(threads=threads))


def accuracy_drop(parent: Artifact, parent_backend: str, child: Artifact, child_backend: str, data: Any,
                  threads: int | None = None) -> float:
    """Points of the task's primary metric the child loses against the parent on labelled ``data``."""
    from laser import data as datasets
    from laser.errors import ConfigError
    from laser.measure.accuracy import PRIMARY, evaluate
    from laser.runtime import run

    data = datasets.load(data, "test") if isinstance(data, str) else data
    if data.labels is None:
        raise ConfigError(f"dataset {data.name!r} has no labels: the doctor needs a labelled one to compare "
                          "accuracy (or leave --data out)")
    metric = PRIMARY.get(parent.task, "top1")
    scores = []
    for art, backend in ((parent, parent_backend), (child, child_backend)):
        with run(art, backend=backend, threads=threads) as runner:
            scores.append(float(evaluate(art.task, runner, data)[0][metric]))
    return 100 * (scores[0] - scores[1])
