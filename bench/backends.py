"""Latency of every runtime backend, side by side in one run: ResNet-18 and MobileNetV3-small, batch 1 and 8.

    .venv/bin/python bench/backends.py [--models resnet18 mobilenet_v3_small] [--batches 1 8] [--passes 4] [--block 10]

Backends: PyTorch eager, TorchScript (frozen), onnxruntime, openvino, auto (laser's measured choice),
onnxruntime on the graph of the other ONNX exporter (the exporter alone can change latency), and raw
onnxruntime (an ``InferenceSession`` on the same .onnx file with the same options, called
directly) to show what laser's Runner wrapper costs. Backends take turns in blocks (per pass and backend: 3 untimed
calls, then a block of timed ones; several passes), so load from other processes hits every backend
alike while one runtime's spinning threads do not steal the cores from the next; medians and p90 are
over all timed calls. Ratios are to PyTorch eager measured in the same passes.

Targets (2-core CPU): auto for ResNet-18 batch 1 <= 0.6 x eager, and within 10 % of raw onnxruntime.
Weights are random; BatchNorm statistics are re-estimated on one random batch so activations have a
realistic scale (default running stats shrink them toward denormal floats, which distorts timings).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

import laser
from laser.artifact import Artifact
from laser.errors import DependencyError
from laser.export import export
from laser.measure.latency import side_by_side
from laser.models.factory import with_batchnorm_statistics
from laser.runtime import default_threads

PAUSE_S = 0.2  # between blocks: mixing OpenMP (torch) with onnxruntime/OpenVINO pools on 2 busy cores
# slowed the next block up to 100x (e.g. eager MobileNetV3 6 ms -> 980 ms right after OpenVINO ran)


def build(name: str) -> Artifact:
    """Random weights with BatchNorm statistics from one random batch (see reestimate_batchnorm)."""
    art = laser.load(f"torchvision.models:{name}", random_weights=True, input_shape=(3, 224, 224))
    return with_batchnorm_statistics(art, batch=4)


def raw_onnxruntime(path: str, threads: int) -> Callable[[dict[str, np.ndarray]], Any]:
    """The reference: onnxruntime called directly, with the options laser's runner sets."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, feeds)


def bench_model(name: str, batches: list[int], passes: int, block: int, threads: int) -> list[dict[str, Any]]:
    art = build(name)
    t0 = time.perf_counter()
    onnx_art = export(art, to="onnx")
    exported_in = time.perf_counter() - t0
    other = "legacy" if onnx_art.lineage[-1].results["exporter_used"] == "dynamo" else "dynamo"
    other_art = export(art, to="onnx", exporter=other)  # the exporter choice alone can change latency
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ts_art = export(art, to="torchscript")
    wanted = {"torch eager": (art, "torch"), "torchscript": (ts_art, "torchscript"),
              "onnxruntime": (onnx_art, "onnxruntime"), "openvino": (onnx_art, "openvino"), "auto": (onnx_art, "auto"),
              f"ort, {other} graph": (other_art, "onnxruntime")}
    runners = {}
    for label, (a, backend) in wanted.items():
        try:
            runners[label] = laser.run(a, backend=backend, threads=threads)
        except DependencyError as exc:  # e.g. openvino not installed: measure the others
            print(f"{label}: not available ({exc})")
    raw = raw_onnxruntime(str(onnx_art.model_file), threads)
    step = onnx_art.lineage[-1].results
    print(f"\n{name}: ONNX by the {step['exporter_used']} exporter (opset {step['opset']}, {exported_in:.1f} s); "
          f"auto picked {runners['auto'].backend}: {runners['auto'].choice['reason']}")
    rows = []
    for batch in batches:
        feeds = art.spec.example_inputs(batch=batch, seed=1)
        calls: dict[str, Callable[[], Any]] = {k: (lambda r=r, f=feeds: r(f)) for k, r in runners.items()}
        calls["raw onnxruntime"] = lambda f=feeds: raw(f)
        times = side_by_side(calls, rounds=passes, block=block if batch == 1 else max(3, block // 3), switch=3,
                             warmup=0, pause_s=PAUSE_S)
        eager = float(np.median(times["torch eager"]))
        for backend, t in times.items():
            med = float(np.median(t))
            rows.append({"model": name, "batch": batch, "backend": backend, "median_ms": med,
                         "p90_ms": float(np.percentile(t, 90)), "vs_eager": med / eager, "calls": len(t),
                         "picked": runners["auto"].backend if backend == "auto" else None})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v3_small"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--passes", type=int, default=4, help="passes over all backends (default: 4)")
    p.add_argument("--block", type=int, default=10, help="timed calls per backend and pass at batch 1 "
                                                         "(a third at larger batches; default: 10)")
    p.add_argument("--threads", type=int, default=default_threads())
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows = [r for m in args.models for r in bench_model(m, args.batches, args.passes, args.block, args.threads)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"\nmeasured: wall time per call (ms), median and p90 over {args.passes} passes of blocks; {args.threads} threads")
    print(f"{'model':<20}{'batch':>5}  {'backend':<20}{'median ms':>10}{'p90 ms':>10}{'x eager':>9}")
    for r in rows:
        picked = f"  ({r['picked']})" if r["picked"] else ""
        print(f"{r['model']:<20}{r['batch']:>5}  {r['backend']:<20}{r['median_ms']:>10.2f}{r['p90_ms']:>10.2f}"
              f"{r['vs_eager']:>9.2f}{picked}")
    for r in rows:
        if r["model"] == "resnet18" and r["batch"] == 1 and r["backend"] == "auto":
            raw = next(x for x in rows if x["model"] == "resnet18" and x["batch"] == 1 and x["backend"] == "raw onnxruntime")
            ort = next(x for x in rows if x["model"] == "resnet18" and x["batch"] == 1 and x["backend"] == "onnxruntime")
            print(f"\ntarget auto <= 0.60 x eager (ResNet-18, batch 1): {r['vs_eager']:.2f} x "
                  f"-> {'met' if r['vs_eager'] <= 0.6 else 'NOT met'}")
            print(f"target auto within 10 % of raw onnxruntime: auto / raw = {r['median_ms'] / raw['median_ms']:.2f} "
                  f"-> {'met' if r['median_ms'] <= 1.1 * raw['median_ms'] else 'NOT met'}")
            print(f"wrapper overhead: laser onnxruntime runner / raw onnxruntime = "
                  f"{ort['median_ms'] / raw['median_ms']:.3f}")


if __name__ == "__main__":
    main()
