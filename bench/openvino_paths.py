"""The OpenVINO paths side by side in one process: FP32, laser's int8-static QDQ, NNCF INT8, bf16 / f16.

    .venv/bin/python bench/openvino_paths.py [--model resnet18] [--samples 128] [--rounds 8] [--block 10]

Each model is built as ``laser optimize`` builds it (recipes int8-static, int8-nncf, bf16, fp16-openvino:
calibration on 'random' spec inputs, since the weights are random) and timed at batch 1 on OpenVINO
(and, for reference, onnxruntime) with ``laser.measure.latency.side_by_side``: blocks in turn, so load
from other processes hits every path alike. Fidelity: relative L2 error of the logits, ``||y - y_fp32||
/ ||y_fp32||`` over 16 spec example inputs, against FP32 on the same backend; and top-1 agreement.
bf16/f16 rows appear only where the CPU has the kernels (else the reason is printed).

Weights are random; BatchNorm statistics are re-estimated on one random batch (``with_batchnorm_statistics``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from typing import Any

import numpy as np

import laser
from laser.compress.quantize import Quantize
from laser.export import export
from laser.measure.latency import side_by_side
from laser.models.factory import with_batchnorm_statistics
from laser.runtime.precision import Precision, unavailable_reason


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--samples", type=int, default=128, help="calibration samples (random spec inputs)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--block", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    base = with_batchnorm_statistics(laser.load(args.model, random_weights=True))
    fp32 = export(base, to="onnx", dynamic_batch=True)
    built: dict[str, Any] = {}
    build_s: dict[str, float] = {}
    for name, stage in [("int8-static", Quantize("int8-static", calibration="random", samples=args.samples,
                                                 check_speed=False, progress=False)),
                        ("int8-nncf", Quantize("int8-nncf", calibration="random", samples=args.samples,
                                               check_speed=False, progress=False))]:
        t0 = time.perf_counter()
        built[name] = stage(fp32)
        build_s[name] = time.perf_counter() - t0
    skipped = {}
    for name, precision in (("bf16", "bf16"), ("fp16-openvino", "f16")):
        reason = unavailable_reason(precision)
        if reason:
            skipped[name] = reason
            continue
        t0 = time.perf_counter()
        built[name] = Precision(precision)(fp32)
        build_s[name] = time.perf_counter() - t0

    paths = [("fp32", "openvino", fp32), ("int8-static", "openvino", built["int8-static"]),
             ("int8-nncf", "openvino", built["int8-nncf"])]
    paths += [(n, "openvino", built[n]) for n in ("bf16", "fp16-openvino") if n in built]
    paths += [("fp32", "onnxruntime", fp32), ("int8-static", "onnxruntime", built["int8-static"]),
              ("int8-nncf", "onnxruntime", built["int8-nncf"])]
    runners = {f"{n} · {b}": laser.run(a, backend=b) for n, b, a in paths}
    x = fp32.spec.example_inputs(batch=1, seed=0)
    times = side_by_side({k: (lambda r=r: r(x)) for k, r in runners.items()}, rounds=args.rounds, block=args.block,
                         pause_s=0.2)
    probe = fp32.spec.example_inputs(batch=16, seed=1)
    out_name = fp32.spec.output_names[0]
    refs = {b: runners[f"fp32 · {b}"](probe)[out_name].astype(np.float64) for b in ("openvino", "onnxruntime")}
    rows = []
    for key, runner in runners.items():
        name, _, backend = key.partition(" · ")
        y = runner(probe)[out_name].astype(np.float64)
        ref = refs[backend]
        rows.append({"path": name, "backend": backend, "precision": runner.describe().get("precision", "f32"),
                     "p50_ms": statistics.median(times[key]), "p90_ms": float(np.percentile(times[key], 90)),
                     "rel_l2": float(np.linalg.norm(y - ref) / np.linalg.norm(ref)),
                     "top1_agreement": float((y.argmax(1) == ref.argmax(1)).mean()),
                     "build_s": build_s.get(name), "bytes": (built.get(name) or fp32).bytes})
        runner.close()
    fp32_ov = next(r["p50_ms"] for r in rows if r["path"] == "fp32" and r["backend"] == "openvino")
    for r in rows:
        r["vs_fp32_openvino"] = r["p50_ms"] / fp32_ov
    from laser.measure.hardware import cpu_info

    cpu = cpu_info()
    if args.json:
        print(json.dumps({"model": args.model, "cpu": cpu, "rows": rows, "skipped": skipped}, indent=1))
        return
    print(f"{args.model}, batch 1, {cpu.get('model')} ({cpu.get('usable_cores')} cores); p50/p90 over "
          f"{args.rounds} rounds x {args.block} calls; rel L2 and top-1 agreement vs FP32 on the same backend, "
          "16 spec example inputs")
    print(f"{'path':<14} {'backend':<12} {'prec':<5} {'p50 ms':>8} {'p90 ms':>8} {'x fp32-ov':>9} {'rel L2':>8} "
          f"{'top1 agr':>8} {'MB':>6} {'build s':>7}")
    for r in rows:
        build = f"{r['build_s']:.1f}" if r["build_s"] is not None else "-"
        print(f"{r['path']:<14} {r['backend']:<12} {r['precision']:<5} {r['p50_ms']:8.2f} {r['p90_ms']:8.2f} "
              f"{r['vs_fp32_openvino']:9.2f} {r['rel_l2']:8.4f} {r['top1_agreement']:8.2f} {r['bytes'] / 1e6:6.1f} "
              f"{build:>7}")
    for name, reason in skipped.items():
        print(f"{name}: skipped: {reason}")


if __name__ == "__main__":
    main()
