"""Edge formats side by side in one run: ResNet-18 and MobileNetV3-small, batch 1, 2 threads.

    .venv/bin/python bench/edge.py [--models resnet18 mobilenet_v3_small] [--rounds 6] [--threads 2]

Variants of each model (random weights; BatchNorm statistics re-estimated on one random batch so
activations have a realistic scale):

- eager: PyTorch eager (``laser.run(backend="torch")``);
- ExecuTorch XNNPACK FP32: ``laser.export(to="executorch")`` (validated against eager);
- ExecuTorch XNNPACK INT8: PT2E with the XNNPACK quantizer, calibrated on N(0, 1) inputs (a latency
  benchmark: random calibration, so no accuracy claim);
- ONNX Runtime FP32: the ORT-format export (``to="ort"``); ONNX Runtime INT8: ``Quantize("int8-static",
  calibration="random")`` of the ONNX export.

Timing: ``laser.measure.latency.side_by_side`` (alternating passes over the variants, 3 untimed calls
then 8 timed ones per pass and variant), wall time per call. Sizes: the .pte / .ort / .onnx file bytes.
Target: ExecuTorch INT8 <= 0.5 x eager latency on MobileNetV3-small.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

import laser
from laser.artifact import Artifact, Step, workspace
from laser.compress.quantize import Quantize
from laser.export import export
from laser.export.adapter import fixed_batch_spec, torch_args
from laser.export.executorch import export_executorch
from laser.measure.latency import side_by_side
from laser.models.factory import with_batchnorm_statistics


def realistic(name: str) -> Artifact:
    art = laser.load(f"torchvision.models:{name}", random_weights=True, input_shape=(3, 224, 224))
    return with_batchnorm_statistics(art)


def et_int8(art: Artifact, samples: int) -> Artifact:
    spec = fixed_batch_spec(art.spec, 1)
    calib = [torch_args(spec.example_inputs(batch=1, seed=100 + i), spec) for i in range(samples)]
    path = workspace(f"{art.name}-et-int8") / "model.pte"
    info = export_executorch(art.module.eval(), spec, path, quantize="int8", calibration=calib)
    return Artifact.from_files({"model.pte": path}, name=art.name, task=art.task, format="executorch", spec=spec,
                               step=Step("export", params={"to": "executorch", "quantize": "int8"},
                                         results={"export": info, "delegation": info["delegation"]}))


def variants(art: Artifact, samples: int) -> dict[str, tuple[Artifact, str]]:
    out: dict[str, tuple[Artifact, str]] = {"eager": (art, "torch")}
    t0 = time.perf_counter()
    out["ExecuTorch XNNPACK FP32"] = (export(art, to="executorch"), "executorch")
    out["ExecuTorch XNNPACK INT8"] = (et_int8(art, samples), "executorch")
    onnx_art = export(art, to="onnx")
    out["ONNX Runtime FP32 (.ort)"] = (export(onnx_art, to="ort"), "onnxruntime")
    out["ONNX Runtime INT8 (QDQ .onnx)"] = (Quantize("int8-static", calibration="random", samples=samples,
                                                     progress=False)(onnx_art), "onnxruntime")
    print(f"  {art.name}: variants made in {time.perf_counter() - t0:.0f} s")
    return out


def bench_model(name: str, rounds: int, threads: int, samples: int) -> list[dict[str, Any]]:
    art = realistic(name)
    arts = variants(art, samples)
    runners = {k: laser.run(a, backend=b, threads=threads) for k, (a, b) in arts.items()}
    feeds = fixed_batch_spec(art.spec, 1).example_inputs(batch=1, seed=1)
    calls = {k: (lambda r=r: r(feeds)) for k, r in runners.items()}
    times = side_by_side(calls, rounds=rounds, block=8, switch=3, warmup=0)
    base = float(np.median(times["eager"]))
    rows = []
    for label, t in times.items():
        a = arts[label][0]
        delegation = a.lineage[-1].results.get("delegation") if a.format == "executorch" else None
        rows.append({"model": name, "variant": label, "median_ms": float(np.median(t)),
                     "p90_ms": float(np.percentile(t, 90)), "vs_eager": float(np.median(t)) / base,
                     "file": a.model_file.name, "bytes": a.model_file.stat().st_size, "calls": len(t),
                     "portable_ops": delegation["portable_ops"] if delegation else None})
    for r in runners.values():
        r.close()
    return rows


def _print(rows: list[dict[str, Any]], threads: int) -> None:
    print(f"\nmeasured: CPU wall time per call (ms) at batch 1, median and p90 over alternating passes; "
          f"{threads} threads; shared CPU, expect noise")
    print(f"{'model':<20}{'variant':<32}{'median ms':>10}{'p90 ms':>10}{'x eager':>9}{'file MiB':>10}  file")
    for r in rows:
        print(f"{r['model']:<20}{r['variant']:<32}{r['median_ms']:>10.2f}{r['p90_ms']:>10.2f}{r['vs_eager']:>9.2f}"
              f"{r['bytes'] / 2**20:>10.2f}  {r['file']}"
              + (f"  ({r['portable_ops']} portable ops)" if r["portable_ops"] else ""))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v3_small"])
    p.add_argument("--rounds", type=int, default=6, help="alternating passes, 8 timed calls per variant each")
    p.add_argument("--samples", type=int, default=32, help="INT8 calibration samples (random N(0, 1) inputs)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows: list[dict[str, Any]] = []
    for model in args.models:
        mine = bench_model(model, args.rounds, args.threads, args.samples)
        rows += mine
        if not args.json:  # each model's table as soon as it is measured
            _print(mine, args.threads)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    target = next((r for r in rows if r["model"] == "mobilenet_v3_small" and r["variant"] == "ExecuTorch XNNPACK INT8"),
                  None)
    if target:
        print(f"\ntarget ExecuTorch INT8 <= 0.5 x eager on MobileNetV3-small: {target['vs_eager']:.2f} x -> "
              f"{'met' if target['vs_eager'] <= 0.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
