"""FP32 vs INT8 (ORT static, all ops) vs INT8 on Conv/MatMul/Gemm only vs accuracy-aware mixed precision,
for the real models: accuracy on each task's metric, p50 latency (batch 1, onnxruntime CPU, interleaved in
one run), file size. Needs the real models cached (`make real-models`).

``mtcnn-onet`` is measured as one net on fixed FP32 proposals (``faces``); ``--mtcnn`` also runs the whole
MTCNN cascade, FP32 vs all three nets INT8 (each calibrated on its own stage's inputs), on every scene of
the faces test split: precision / recall at IoU 0.5, p50 of one astronaut picture, bytes of the three nets.

    PYTHONPATH=src python bench/realmodels.py [--models pp-ocrv4-rec,silero-vad,mtcnn-onet] [--budget 1.0]
    PYTHONPATH=src python bench/realmodels.py --models none --mtcnn
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

DATA = {"pp-ocrv4-rec": "ocr-lines", "silero-vad": "vad-espeak", "mtcnn-onet": "faces", "mtcnn-rnet": "faces-rnet",
        "mtcnn-pnet": "faces-pnet"}
LAYERS = ("Conv", "MatMul", "Gemm")


def _onnx(art: laser.Artifact) -> laser.Artifact:
    """ONNX cards as they are; torch ones (MTCNN) exported, so every variant runs on onnxruntime."""
    return art if art.format == "onnx" else laser.export(art, to="onnx")


def variants(name: str, budget: float | None) -> dict[str, laser.Artifact]:
    fp32 = _onnx(laser.load(name))
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


def mtcnn_rows() -> list[dict[str, object]]:
    """The whole cascade: FP32 (onnxruntime) vs INT8 static nets (onnxruntime), on the faces test scenes."""
    from laser.data.faces import photos, pipeline_accuracy
    from laser.hub.pipelines.faces import FaceDetectionPipeline
    from laser.hub.real import MTCNN_MODELS

    fp32 = [_onnx(laser.load(n)) for n in MTCNN_MODELS]
    int8 = [Quantize(calibration=DATA[a.name], samples=256, check_speed=False, progress=False)(a) for a in fp32]
    astronaut = photos()[0][1]
    rows, calls = [], {}
    for variant, nets in (("FP32", fp32), ("INT8 static (3 nets)", int8)):
        pipe = FaceDetectionPipeline(nets[0], backend="onnxruntime", rnet=nets[1], onet=nets[2])
        acc = pipeline_accuracy(pipe, "test")
        rows.append({"model": "mtcnn (cascade)", "variant": variant, **{k: round(float(v), 4) for k, v in acc.items()},
                     "bytes": sum(a.bytes for a in nets)})
        calls[variant] = functools.partial(pipe.detect, astronaut)
    p50, rounds = interleaved_median_ms(calls)
    for row in rows:
        row["p50_ms"] = round(p50[str(row["variant"])], 3)
    print(f"mtcnn cascade: precision/recall at IoU 0.5 on the faces test scenes; p50 = median of interleaved "
          f"whole-cascade runs on astronaut (512 x 512), {rounds} rounds, onnxruntime CPU")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="pp-ocrv4-rec,silero-vad")
    ap.add_argument("--budget", type=float, default=1.0, help="allowed drop, percentage points")
    ap.add_argument("--no-mixed", action="store_true", help="skip the accuracy-aware search (minutes per model)")
    ap.add_argument("--mtcnn", action="store_true", help="also the whole MTCNN cascade, FP32 vs INT8")
    args = ap.parse_args()
    rows = []
    for name in args.models.split(","):
        if name != "none":
            rows += measure(name, variants(name, None if args.no_mixed else args.budget))
    if args.mtcnn:
        rows += mtcnn_rows()
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main()
