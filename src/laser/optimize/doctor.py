"""The doctor: why a candidate is not faster than its parent (or less accurate than allowed), from measurements.

``doctor(parent, child, backend=...)`` measures both on their backends, gathers facts — ONNX Runtime's
per-op profile (``SessionOptions.enable_profiling``: time by op type, Q/DQ nodes, float convolutions
left in a quantized graph, Cast nodes), the graph's ops, initializer dtypes and channel counts, the
CPU's instruction sets from /proc/cpuinfo, throughput at batch 8 vs batch 1, the first call vs the
warm median — and runs the checks in doctor_checks.py. Each finding names a cause, the measured
evidence and the fix it suggests.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from laser.artifact import Artifact
from laser.errors import ConfigError, require
from laser.optimize.doctor_checks import run_checks
from laser.optimize.doctor_facts import Facts, Finding, GraphFacts, Profile
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


# -- facts ---------------------------------------------------------------------------------------
def ort_profile(art: Artifact, runs: int = 20, batch: int = 1, threads: int | None = None) -> Profile:
    """Profile ``runs`` timed runs (after 3 untimed) with ONNX Runtime's built-in profiler."""
    ort = require("onnxruntime", "onnx")
    from laser.runtime.base import default_threads

    with tempfile.TemporaryDirectory(prefix="laser-doctor-") as tmp:
        so = ort.SessionOptions()
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "profile")
        so.intra_op_num_threads = threads or default_threads()
        sess = ort.InferenceSession(str(art.model_file), so, providers=["CPUExecutionProvider"])
        feeds = art.spec.example_inputs(batch=batch)
        for _ in range(3 + runs):
            sess.run(None, feeds)
        events = json.loads(Path(sess.end_profiling()).read_text())
    return parse_profile(events, runs)


def parse_profile(events: list[dict[str, Any]], runs: int) -> Profile:
    """Node kernel times by op type inside the last ``runs`` model_run windows (warm-up excluded): per op,
    the median over runs of its summed time in a run, so one preempted run (a shared CPU) does not skew it."""
    model_runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                        key=lambda e: e["ts"])[-runs:]
    if not model_runs:
        raise ConfigError("the onnxruntime profile holds no model_run event; was the session run?")
    windows = [(e["ts"], e["ts"] + e["dur"]) for e in model_runs]
    per_run: list[dict[str, float]] = [defaultdict(float) for _ in windows]
    nodes: Counter[str] = Counter()
    dtypes: dict[str, set[str]] = defaultdict(set)
    ranks: dict[str, set[int]] = defaultdict(set)
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        ts = e.get("ts", 0)
        i = next((k for k, (a, b) in enumerate(windows) if a <= ts <= b), None)
        if i is None:
            continue
        args = e.get("args") or {}
        op = args.get("op_name", "?")
        per_run[i][op] += e.get("dur", 0)
        nodes[op] += 1
        first = (args.get("input_type_shape") or [{}])[0]  # [{"float": [1, 32, 8, 8]}, ...]
        for dtype, shape in (first.items() if isinstance(first, dict) else ()):
            dtypes[op].add(str(dtype))
            ranks[op].add(len(shape) if isinstance(shape, list) else -1)
    by_op = {op: _median([r.get(op, 0.0) for r in per_run]) for op in nodes}
    init = next((e["dur"] for e in events if e.get("name") == "session_initialization"), None)
    return Profile(by_op, {k: v // len(windows) for k, v in nodes.items()},
                   _median([float(e["dur"]) for e in model_runs]), init, len(windows),
                   {k: sorted(v) for k, v in dtypes.items()}, {k: sorted(v) for k, v in ranks.items()})


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return float(xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2) if n else 0.0


def graph_facts(art: Artifact) -> GraphFacts:
    onnx = require("onnx", "onnx")
    from onnx import numpy_helper

    model = onnx.load(str(art.model_file), load_external_data=False)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    total = sum(int(numpy_helper.to_array(i).nbytes) for i in g.initializer) or 1
    fp16 = sum(int(numpy_helper.to_array(i).nbytes) for i in g.initializer if i.data_type == onnx.TensorProto.FLOAT16)
    zp: Counter[str] = Counter()
    for n in g.node:
        if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits:
            zp[{2: "uint8", 3: "int8"}.get(inits[n.input[2]].data_type, str(inits[n.input[2]].data_type))] += 1
    channels = []
    weight_index = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "Gemm": 1, "MatMul": 1, "MatMulInteger": 1}
    for n in g.node:
        if n.op_type not in weight_index or len(n.input) <= weight_index[n.op_type]:
            continue
        w = n.input[weight_index[n.op_type]]
        if w not in inits and w in producer and producer[w].op_type == "DequantizeLinear":
            w = producer[w].input[0]  # QDQ graph: the int8 weight feeds a DequantizeLinear
        if w in inits and len(inits[w].dims) >= 2:
            dims = list(inits[w].dims)
            trans = n.op_type == "Gemm" and any(a.name == "transB" and a.i == 1 for a in n.attribute)
            out = dims[0] if n.op_type in ("Conv", "ConvInteger", "QLinearConv") or trans else dims[-1]
            channels.append((n.name or w, int(out)))
    return GraphFacts(Counter(n.op_type for n in g.node), fp16 / total, zp, channels)


def torch_channels(art: Artifact) -> list[tuple[str, int]]:
    from torch import nn

    out = []
    for name, m in art.module().named_modules():
        if isinstance(m, nn.Conv2d | nn.Conv1d | nn.Conv3d):
            out.append((name, int(m.out_channels)))
        elif isinstance(m, nn.Linear):
            out.append((name, int(m.out_features)))
    return out


def throughput(art: Artifact, backend: str, batch: int, threads: int | None, seconds: float) -> float:
    from laser.measure.latency import latency
    from laser.runtime import run

    with run(art, backend=backend, threads=threads) as runner:
        return latency(runner, batch_size=batch, warmup=3, min_iters=5, max_seconds=seconds).throughput_per_s


def first_call(art: Artifact, backend: str, threads: int | None) -> dict[str, float]:
    """Runner creation, the first call and the warm median of 7 calls (ms) on a fresh runner."""
    from laser.runtime import run
    from laser.timing import side_by_side

    feeds = art.spec.example_inputs(batch=1)
    t0 = time.perf_counter()
    runner = run(art, backend=backend, threads=threads)
    t1 = time.perf_counter()
    with runner:
        runner(feeds)
        t2 = time.perf_counter()
        warm = side_by_side({"warm": lambda: runner(feeds)}, rounds=1, block=7, switch=0, warmup=0)["warm"]
    return {"create_ms": 1e3 * (t1 - t0), "first_ms": 1e3 * (t2 - t1), "warm_ms": sorted(warm)[3]}


def thread_scaling(art: Artifact, backend: str, threads: int | None, seconds: float) -> dict[str, float]:
    """p50 (ms) at batch 1 with the runner's threads and with 1 thread, timed back to back, and the load."""
    from laser.measure.latency import latency
    from laser.runtime import run
    from laser.runtime.base import default_threads

    out: dict[str, float] = {"threads": float(threads or default_threads()), "cores": float(default_threads()),
                             "load_1m": os.getloadavg()[0]}
    if out["threads"] <= 1:
        return out
    for key, n in (("p50_ms", threads), ("p50_1_thread_ms", 1)):
        with run(art, backend=backend, threads=n) as runner:
            out[key] = latency(runner, batch_size=1, warmup=3, min_iters=10, max_seconds=seconds).p50_ms
    return out


def macs(art: Artifact) -> int | None:
    try:
        from laser.measure.size import size_of

        return size_of(art, activations=False).get("macs")
    except Exception:  # MACs are context for the checks, not required
        return None


# -- entry points --------------------------------------------------------------------------------
def diagnose_pair(parent: Artifact, child: Artifact, parent_backend: str, child_backend: str, *,
                  parent_metrics: dict[str, Any], child_metrics: dict[str, Any],
                  allowed_drop_pts: float | None = None, reference: Any = None, settings: Any = None,
                  threads: int | None = None) -> Diagnosis:
    """Diagnose with latency (and accuracy) already measured, e.g. by an optimize run."""
    seconds = 0.05 if getattr(settings, "quick", False) else 0.3
    threads = threads or getattr(settings, "threads", None)
    f = Facts(parent, child, parent_backend, child_backend, float(parent_metrics["p50_ms"]),
              float(child_metrics["p50_ms"]), child_metrics.get("accuracy_drop_pts"), allowed_drop_pts,
              parent_metrics.get("macs") or macs(parent), child_metrics.get("macs") or macs(child))
    f.cpu_flags = cpu_flags()
    if child.format == "onnx":
        f.child_graph = graph_facts(child)
    elif child.format == "torch":
        f.child_graph = GraphFacts(Counter(), 0.0, Counter(), torch_channels(child))
    if child.format in ("onnx", "ort") and child_backend == "onnxruntime":
        f.child_profile = ort_profile(child, runs=5 if getattr(settings, "quick", False) else 20, threads=threads)
    if parent.format in ("onnx", "ort") and parent_backend == "onnxruntime":
        f.parent_profile = ort_profile(parent, runs=5 if getattr(settings, "quick", False) else 20, threads=threads)
    # batch 1 and 8 timed back to back with the same settings, so their ratio is like for like
    f.throughput = {"parent": {b: throughput(parent, parent_backend, b, threads, seconds) for b in (1, 8)},
                    "child": {b: throughput(child, child_backend, b, threads, seconds) for b in (1, 8)}}
    f.first_call = first_call(child, child_backend, threads)
    f.threads = thread_scaling(child, child_backend, threads, seconds)
    findings = run_checks(f)
    facts = {"cpu_flags": sorted(x for x in f.cpu_flags if "avx" in x or "amx" in x or "vnni" in x or x == "f16c"),
             "throughput_per_s": f.throughput, "first_call": f.first_call, "threads": f.threads,
             "parent_macs": f.parent_macs, "child_macs": f.child_macs,
             "child_ops": dict(f.child_graph.ops) if f.child_graph else None}
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
    parent's first backend. ``data``: a labelled dataset (name or Dataset) to compare top-1.
    """
    from laser.loader import load
    from laser.measure.latency import latency
    from laser.optimize.evaluate import Settings, reference
    from laser.runtime import backends_for, run

    parent = parent if isinstance(parent, Artifact) else load(parent)
    child = child if isinstance(child, Artifact) else load(child)
    backend = backend or backends_for(child)[0]
    if parent_backend is None:
        parent_backend = backend if backend in backends_for(parent) else backends_for(parent)[0]
    settings = Settings.fast() if quick else Settings()
    metrics = {}
    for who, art, b in (("parent", parent, parent_backend), ("child", child, backend)):
        with run(art, backend=b, threads=threads) as runner:
            lat = latency(runner, batch_size=1, warmup=settings.warmup, min_iters=settings.min_iters,
                          max_seconds=max(settings.max_seconds, 0.05))
        metrics[who] = {"p50_ms": lat.p50_ms}
    if data is not None and allowed_drop_pts is None:
        allowed_drop_pts = 1.0
    if data is not None:
        from laser.measure.accuracy import evaluate

        ref = reference(parent, data, settings)
        assert ref.data is not None  # data was given: a labelled reference
        with run(child, backend=backend, threads=threads) as runner:
            acc, _ = evaluate(child.task, runner, ref.data)
        metrics["child"]["accuracy_drop_pts"] = 100 * (ref.base_accuracy - acc["top1"])
    return diagnose_pair(parent, child, parent_backend, backend, parent_metrics=metrics["parent"],
                         child_metrics=metrics["child"], allowed_drop_pts=allowed_drop_pts, settings=settings,
                         threads=threads)
