"""Quantized variants side by side in one run: ResNet-18 and MobileNetV3-small, batch 1 and 8, on onnxruntime.

    .venv/bin/python bench/quantize.py [--models resnet18 mobilenet_v3_small] [--batches 1 8] [--rounds 6]

Variants of each model (random weights; BatchNorm statistics re-estimated on one random batch so
activations have a realistic scale), all made by ``laser.Quantize`` from the same exported FP32 ONNX:

- fp32: the export itself;
- int8 default: ``Quantize("int8-static")`` with the types chosen for this CPU (u8 activations, s8
  per-channel weights on VNNI), calibrated on N(0, 1) inputs ('random': a latency benchmark);
- int8 s8s8: the same with signed activations;
- int8 dynamic: ``Quantize("int8-dynamic")`` (MatMul/Gemm only, the default), and with Conv too;
- fp16.

Timing runs in passes over the variants (per pass and variant: 3 untimed calls, then 8 timed ones), so
load from other processes hits every variant alike, and the warm-up calls absorb the thread pool of the
previous session, which keeps spinning for a while after its last call. Ratios are to FP32 onnxruntime
measured in the same passes. Also: digits-cnn top-1 on the digits test split, FP32 vs the default INT8, both on onnxruntime.

Targets (2-core CPU): default INT8 ResNet-18 <= 0.45 x FP32 at batch 1; digits-cnn top-1 drop <= 0.5 point.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Any

import numpy as np

import laser
from laser.artifact import Artifact
from laser.compress.quantize import Quantize, QuantizeWarning, int8_defaults
from laser.export import export
from laser.measure.latency import side_by_side
from laser.models.factory import with_batchnorm_statistics
from laser.runtime import default_threads


def realistic(name: str) -> Artifact:
    """Random weights with BatchNorm statistics from one random batch (see reestimate_batchnorm)."""
    art = laser.load(f"torchvision.models:{name}", random_weights=True, input_shape=(3, 224, 224))
    return with_batchnorm_statistics(art)


def variants(onnx_art: Artifact, samples: int) -> dict[str, Artifact]:
    calib = {"calibration": "random", "samples": samples, "progress": False}
    stages = {
        "int8 default (u8s8)": Quantize("int8-static", **calib),
        "int8 s8s8": Quantize("int8-static", activation_type="int8", **calib),
        "int8 dynamic": Quantize("int8-dynamic", progress=False),
        "int8 dynamic +Conv": Quantize("int8-dynamic", op_types=("Conv", "MatMul", "Gemm"), progress=False),
        "fp16": Quantize("fp16", progress=False),
    }
    out = {"fp32": onnx_art}
    for label, stage in stages.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", QuantizeWarning)
            out[label] = stage(onnx_art)
        notes = [str(w.message)[:90] + "..." for w in caught if issubclass(w.category, QuantizeWarning)]
        print(f"  {label}: made in {time.perf_counter() - t0:.1f} s" + (f"; warned: {notes[0]}" if notes else ""))
    return out


def bench_model(name: str, batches: list[int], rounds: int, threads: int, samples: int) -> list[dict[str, Any]]:
    t0 = time.perf_counter()
    onnx_art = export(realistic(name), to="onnx")
    print(f"\n{name}: exported by the {onnx_art.lineage[-1].results['exporter_used']} exporter in "
          f"{time.perf_counter() - t0:.1f} s")
    arts = variants(onnx_art, samples)
    runners = {k: laser.run(a, backend="onnxruntime", threads=threads) for k, a in arts.items()}
    fp32_bytes = onnx_art.model_file.stat().st_size
    rows = []
    for batch in batches:
        feeds = onnx_art.spec.example_inputs(batch=batch, seed=1)
        calls = {k: (lambda r=r, f=feeds: r(f)) for k, r in runners.items()}
        times = side_by_side(calls, rounds=rounds if batch == 1 else max(2, rounds // 3), block=8, switch=3, warmup=0)
        base = float(np.median(times["fp32"]))
        for label, t in times.items():
            med = float(np.median(t))
            rows.append({"model": name, "batch": batch, "variant": label, "median_ms": med,
                         "p90_ms": float(np.percentile(t, 90)), "vs_fp32": med / base,
                         "size_vs_fp32": arts[label].model_file.stat().st_size / fp32_bytes, "calls": len(t)})
    for r in runners.values():
        r.close()
    return rows


def digits_drop() -> dict[str, float]:
    from laser import data
    from laser.measure.accuracy import classification

    test = data.load("digits", "test")
    fp32 = export(laser.load("digits-cnn"), to="onnx")
    int8 = Quantize("int8-static", calibration="digits", progress=False)(fp32)
    top1 = {}
    for label, art in (("fp32", fp32), ("int8", int8)):
        with laser.run(art, backend="onnxruntime") as runner:
            top1[label] = classification(runner, test)["top1"]
    return {**top1, "drop_points": (top1["fp32"] - top1["int8"]) * 100, "samples": len(test)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v3_small"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--rounds", type=int, default=6, help="passes at batch 1, 8 timed calls per variant each "
                                                         "(a third as many passes at larger batches)")
    p.add_argument("--samples", type=int, default=64, help="calibration samples (random N(0, 1) inputs)")
    p.add_argument("--threads", type=int, default=default_threads())
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    defaults = int8_defaults()
    print(f"int8 defaults on this CPU: {defaults['why']}")
    rows = [r for m in args.models for r in bench_model(m, args.batches, args.rounds, args.threads, args.samples)]
    digits = digits_drop()
    if args.json:
        print(json.dumps({"rows": rows, "digits": digits, "int8_defaults": defaults}, indent=2))
        return
    print(f"\nmeasured: onnxruntime CPU, wall time per call (ms), median and p90 over alternating passes; "
          f"{args.threads} threads; shared CPU, expect noise")
    print(f"{'model':<20}{'batch':>5}  {'variant':<20}{'median ms':>10}{'p90 ms':>10}{'x fp32':>8}{'size x fp32':>13}")
    for r in rows:
        print(f"{r['model']:<20}{r['batch']:>5}  {r['variant']:<20}{r['median_ms']:>10.2f}{r['p90_ms']:>10.2f}"
              f"{r['vs_fp32']:>8.2f}{r['size_vs_fp32']:>13.2f}")
    target = next((r for r in rows if r["model"] == "resnet18" and r["batch"] == 1
                   and r["variant"] == "int8 default (u8s8)"), None)
    if target:
        print(f"\ntarget default INT8 ResNet-18 <= 0.45 x FP32 onnxruntime (batch 1): {target['vs_fp32']:.2f} x "
              f"-> {'met' if target['vs_fp32'] <= 0.45 else 'NOT met'}")
    print(f"target digits-cnn top-1 drop <= 0.5 point: FP32 {100 * digits['fp32']:.2f} %, INT8 "
          f"{100 * digits['int8']:.2f} % ({digits['samples']} test samples, onnxruntime): drop "
          f"{digits['drop_points']:.2f} -> {'met' if digits['drop_points'] <= 0.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
