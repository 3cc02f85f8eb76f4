"""FP32 vs INT8 (ORT static, all ops) vs INT8 on Conv/MatMul/Gemm only vs accuracy-aware mixed precision,
for the real models: accuracy on each task's metric, p50 latency (batch 1, onnxruntime CPU, interleaved in
one run), file size. Needs the real models cached (`make real-models`).

    PYTHONPATH=src python bench/realmodels.py [--models pp-ocrv4-rec,silero-vad] [--budget 1.0]
"""

from __future__ import annotations

import argparse
import functools
import json

import laser
from laser.compress.quantize import Quantize
from laser.measure.accuracy import PRIMARY, TASKS
from laser.runtime import run
from laser.timing import interleaved_median_ms

DATA = {"pp-ocrv4-rec": "ocr-lines", "silero-vad": "vad-espeak"}
LAYERS = ("Conv", "MatMul", "Gemm")


def variants(name: str, budget: float | None) -> dict[str, laser.Artifact]:
    fp32 = laser.load(name)
    data = DATA[name]
    common = {"calibration": data, "samples": 64, "check_speed": False, "progress": False}
    out = {"FP32": fp32, "INT8 all ops": Quantize(**common)(fp32),
           "INT8 Conv/MatMul/Gemm": Quantize(op_types=LAYERS, **common)(fp32)}
    if budget is None:
        return out
    try:
        out[f"INT8 mixed (budget {budget} pts)"] = Quantize(max_accuracy_drop=budget, data=data, **common)(fp32)
    except laser.errors.LaserError as exc:
        print(f"{name}: mixed precision found nothing within {budget} points: {exc}")
    return out


def measure(name: str, arts: dict[str, laser.Artifact]) -> list[dict[str, object]]:
    data = laser.data.load(DATA[name], "test")
    task = arts["FP32"].task
    metric = PRIMARY[task]
    feeds = data.take(1).feeds(arts["FP32"].spec.input_names)
    runners = {k: run(a, backend="onnxruntime") for k, a in arts.items()}
    rows = []
    for k, r in runners.items():
        rows.append({"model": name, "variant": k, metric: round(float(TASKS[task][0](r, data)[metric]), 4),
                     "bytes": arts[k].bytes})
    p50, rounds = interleaved_median_ms({k: functools.partial(r, feeds) for k, r in runners.items()})
    for row in rows:
        row["p50_ms"] = round(p50[str(row["variant"])], 3)
    for r in runners.values():
        r.close()
    print(f"{name}: {metric} on {len(data)} samples of {data.name} (test split); p50 = median of interleaved "
          f"batch-1 calls, {rounds} rounds, onnxruntime CPU")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="pp-ocrv4-rec,silero-vad")
    ap.add_argument("--budget", type=float, default=1.0, help="allowed drop, percentage points")
    ap.add_argument("--no-mixed", action="store_true", help="skip the accuracy-aware search (minutes per model)")
    args = ap.parse_args()
    rows = []
    for name in args.models.split(","):
        rows += measure(name, variants(name, None if args.no_mixed else args.budget))
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main()
