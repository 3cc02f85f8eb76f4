"""GPU path check: CUDA / TensorRT execution providers, the torch CUDA runner and NVML energy.

Run on a machine with an NVIDIA GPU and onnxruntime-gpu installed::

    python bench/gpu.py [--json OUT.json]

For digits-cnn and ResNet-18 (random weights) it exports ONNX, then side by side in one run:
- ORT CPU provider vs ORT with the default GPU providers (what laser picks) vs TensorRT asked for
  explicitly: the providers the session really uses, parity with PyTorch CPU (max-abs error), p50 latency;
- the torch backend on CPU vs CUDA;
- energy per inference on the GPU from NVML (measured), next to the CPU estimate.
Prints ratios measured in this run; nothing is assumed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--models", default="digits-cnn,resnet18")
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    import laser
    from laser.errors import LaserError
    from laser.measure import energy
    from laser.measure.latency import latency
    from laser.runtime.onnxruntime import CPU, TENSORRT, tensorrt_options

    print(f"onnxruntime {ort.__version__}: available providers {ort.get_available_providers()}")
    print(f"torch {torch.__version__}: cuda available {torch.cuda.is_available()}"
          + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
    results: dict[str, dict] = {}
    for name in args.models.split(","):
        if name == "resnet18":
            art = laser.load("torchvision.models:resnet18", random_weights=True, input_shape=(3, 224, 224))
        else:
            art = laser.load(name)
        onnx_art = laser.export(art, to="onnx")
        feeds = art.spec.example_inputs(batch=1)
        out_name = art.spec.output_names[0]
        reference = laser.run(art, backend="torch", device="cpu")(feeds)[out_name]
        row: dict[str, dict] = {}
        configs = {
            "ort-cpu": dict(backend="onnxruntime", device="cpu"),
            "ort-default": dict(backend="onnxruntime"),
            "ort-tensorrt": dict(backend="onnxruntime",
                                 providers=[(TENSORRT, tensorrt_options(onnx_art)), CPU]),
            "torch-cpu": dict(backend="torch", device="cpu"),
            "torch-cuda": dict(backend="torch", device="cuda"),
        }
        for label, cfg in configs.items():
            target = art if cfg["backend"] == "torch" else onnx_art
            try:
                runner = laser.run(target, **cfg)
                runner.warmup(5)  # engine builds / cuDNN autotuning stay out of the timing
                got = runner(feeds)[out_name]
                lat = latency(runner, batch_size=1, warmup=5, min_iters=50, max_seconds=3.0)
                row[label] = {"describe": runner.describe(), "max_abs_err": float(np.abs(got - reference).max()),
                              "p50_ms": lat.p50_ms, "p90_ms": lat.p90_ms}
                if str(runner.describe().get("device", "cpu")).startswith("cuda"):
                    reader = energy.reader_for("cuda:0")
                    if reader is not None:
                        def work(r=runner, f=feeds) -> int:
                            # >= 1 s: NVML's energy counter updates every few ms, a 20 ms window misreads
                            n, t_end = 0, time.perf_counter() + 1.0
                            while time.perf_counter() < t_end:
                                r(f)
                                n += 1
                            return n
                        e = energy.measure_with(reader, work, None)
                        row[label]["energy"] = e.to_dict()
            except (LaserError, RuntimeError) as exc:
                row[label] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        results[name] = row
        base = row.get("torch-cpu", {}).get("p50_ms")
        print(f"\n{name}")
        print(f"  {'config':14s} {'providers / device':48s} {'max|err|':>10s} {'p50 ms':>8s} {'vs torch-cpu':>12s}  energy")
        for label, r in row.items():
            if "error" in r:
                print(f"  {label:14s} ERROR {r['error']}")
                continue
            d = r["describe"]
            where = ",".join(d.get("providers", [])) or str(d.get("device"))
            if d.get("providers_unavailable"):
                where += f" (dropped: {','.join(d['providers_unavailable'])})"
            ratio = f"{r['p50_ms'] / base:.3f}x" if base else "-"
            en = r.get("energy")
            en_s = f"{en['joules_per_inference'] * 1e3:.3f} mJ/inf ({en['method']}, {en['watts']:.0f} W)" if en else ""
            print(f"  {label:14s} {where[:48]:48s} {r['max_abs_err']:10.2e} {r['p50_ms']:8.3f} {ratio:>12s}  {en_s}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
