"""What the doctor measures: per-op profiles (ONNX Runtime's profiler, OpenVINO's PERF_COUNT), the graph's
ops, dtypes and channel counts, throughput at batch 1 and 8, the first call vs the warm median, thread scaling.

Timing goes through ``laser.timing`` / ``laser.measure.latency`` and hardware facts through
``laser.runtime.hardware`` like everywhere else; ``Probes`` says how long each probe may take.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import json
import os
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laser.artifact import Artifact
from laser.doctor.facts import GraphFacts, Profile
from laser.errors import ConfigError, require


@dataclass(frozen=True)
class Probes:
    """How much the doctor measures: seconds per throughput / thread-scaling timing, profiled runs, threads."""

    seconds: float = 0.3
    profile_runs: int = 20
    threads: int | None = None

    @classmethod
    def fast(cls, threads: int | None = None) -> Probes:
        """Short probes for smoke runs and tests (noisier figures)."""
        return cls(seconds=0.05, profile_runs=5, threads=threads)


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
    for name, m in art.module.named_modules():
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


def openvino_profile(art: Artifact, runs: int = 20, threads: int | None = None,
                     precision: str = "f32") -> dict[str, Any]:
    """OpenVINO's per-node counters (PERF_COUNT) over ``runs`` runs after 3 untimed: µs per run by node type,
    and the kernels (exec types) its compute nodes were given."""
    ov = require("openvino", "openvino")
    from laser.runtime.base import default_threads

    core = ov.Core()
    config = {"PERF_COUNT": "YES", "INFERENCE_NUM_THREADS": threads or default_threads(),
              "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
    compiled = core.compile_model(core.read_model(str(art.model_file)), "CPU", config)
    request = compiled.create_infer_request()
    feeds = art.spec.example_inputs(batch=1)
    for _ in range(3):
        request.infer(feeds)
    per_run: list[dict[str, float]] = []
    kernels: Counter[str] = Counter()
    for _ in range(runs):
        request.infer(feeds)
        times: dict[str, float] = defaultdict(float)
        for info in request.profiling_info:
            if str(info.status).endswith("EXECUTED"):
                times[info.node_type] += _us(info.real_time)
        per_run.append(times)
    for info in request.profiling_info:
        if info.node_type in ("Convolution", "MatMul", "FullyConnected", "GroupConvolution"):
            kernels[f"{info.node_type}: {info.exec_type}"] += 1
    types = {t for r in per_run for t in r}
    by_type = {t: float(np.median([r.get(t, 0.0) for r in per_run])) for t in types}
    return {"by_type_us": by_type, "run_us": sum(by_type.values()), "kernels": dict(kernels), "runs": runs,
            "method": f"measured: OpenVINO PERF_COUNT per node, median over {runs} runs after warm-up, per run"}


def _us(t: Any) -> float:
    return t.total_seconds() * 1e6 if isinstance(t, _dt.timedelta) else float(t)


def amx_permitted() -> bool | None:
    """Whether Linux lets this process use the AMX tile data state (arch_prctl ARCH_REQ_XCOMP_PERM for
    XTILEDATA, feature 18): None where that cannot be asked (not Linux x86-64)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        arch_prctl, arch_req_xcomp_perm, xtiledata = 158, 0x1023, 18
        return int(libc.syscall(arch_prctl, arch_req_xcomp_perm, xtiledata)) == 0
    except (OSError, AttributeError):
        return None
