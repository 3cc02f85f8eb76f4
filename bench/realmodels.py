"""The real models, FP32 vs INT8 (ORT static, all ops) vs the best `laser optimize` candidate: accuracy on each
task's own metric (test split), p50 latency (batch 1 on the data's own input size, the variants timed side by
side in interleaved rounds), file size. Needs the real models cached (`make real-models`).

The optimize runs are `laser.optimize(MODEL, data=DATA, budget="accuracy_drop<=B%")` with its default
recipes for an ONNX base (none, int8-static, int8-mixed, int8-nncf, fp16, bf16), written to
``--work/optimize-MODEL`` and resumed from there (a second run re-measures only the table). Torch cards (the
MTCNN nets) are exported to ONNX first, so every variant runs on onnxruntime.

``mtcnn-onet`` is measured as one net on fixed FP32 proposals (``faces``); ``--mtcnn`` also runs the whole
MTCNN cascade, FP32 vs all three nets INT8 (each calibrated on its own stage's inputs), on every scene of
the faces test split: precision / recall at IoU 0.5, p50 of one astronaut picture, bytes of the three nets.

    PYTHONPATH=src python bench/realmodels.py [--models pp-ocrv4-rec,pp-ocrv4-det,silero-vad,mtcnn-onet]
        [--budget 1.0] [--work out/realmodels] [--quick] [--recipes none,int8-static,int8-mixed]
        [--backends onnxruntime] [--no-optimize]
    PYTHONPATH=src python bench/realmodels.py --models none --mtcnn
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import laser
from laser.compress.quantize import Quantize
from laser.measure.accuracy import PRIMARY, TASKS
from laser.runtime import run
from laser.timing import interleaved_median_ms

DATA = {"pp-ocrv4-rec": "ocr-lines", "pp-ocrv4-det": "ocr-docs", "silero-vad": "vad-espeak", "mtcnn-onet": "faces",
        "mtcnn-rnet": "faces-rnet", "mtcnn-pnet": "faces-pnet"}
CALIBRATION_SAMPLES = {"pp-ocrv4-rec": 64, "pp-ocrv4-det": 12, "silero-vad": 64, "mtcnn-onet": 256, "mtcnn-rnet": 256,
                       "mtcnn-pnet": 256}
DEFAULT_MODELS = "pp-ocrv4-rec,pp-ocrv4-det,silero-vad"


def _onnx(art: laser.Artifact) -> laser.Artifact:
    """ONNX cards as they are; torch ones (MTCNN) exported, so every variant runs on onnxruntime."""
    return art if art.format == "onnx" else laser.export(art, to="onnx")


def recipes_for(name: str, text: str | None) -> str | None:
    """``--recipes``: one list for every model, or per model ``MODEL=LIST;MODEL=LIST`` (others: defaults)."""
    if text is None or "=" not in text:
        return text
    pairs = dict(part.split("=", 1) for part in text.split(";") if "=" in part)
    return pairs.get(name)


def best_candidate(name: str, args: argparse.Namespace) -> tuple[str, laser.Artifact, str] | None:
    """(label, artifact, backend) of the optimize winner under ``accuracy_drop<=budget%``, or None."""
    from laser.optimize import Settings, optimize

    settings = Settings.fast() if args.quick else Settings()
    result = optimize(name, data=DATA[name], budget=f"accuracy_drop<={args.budget:g}%",
                      output=Path(args.work) / f"optimize-{name}", settings=settings, progress=False,
                      recipes=recipes_for(name, args.recipes), backends=args.backends)
    print(result.summary())
    if result.winner is None or result.winner_artifact is None:
        return None
    c = result.winner.candidate
    label = f"optimize winner: {c.recipe} on {c.backend}{'' if result.feasible else ' (best effort, over budget)'}"
    return label, result.winner_artifact, c.backend


def variants(name: str, args: argparse.Namespace) -> dict[str, tuple[laser.Artifact, str]]:
    """label -> (artifact, backend it is measured on); and where the winner came from."""
    fp32 = _onnx(laser.load(name))
    common = {"calibration": DATA[name], "samples": CALIBRATION_SAMPLES[name], "check_speed": False,
              "progress": False}
    out = {"FP32": (fp32, "onnxruntime"), "INT8 static, all ops (ORT)": (Quantize(**common)(fp32), "onnxruntime")}
    if not args.no_optimize:
        best = best_candidate(name, args)
        if best is not None:
            out[best[0]] = (best[1], best[2])
        print(f"optimize output: {Path(args.work) / f'optimize-{name}'}")
    return out


def measure(name: str, arts: dict[str, tuple[laser.Artifact, str]]) -> list[dict[str, object]]:
    data = laser.data.load(DATA[name], "test")
    task = arts["FP32"][0].task
    metric = PRIMARY[task]
    feeds = data.take(1).feeds(arts["FP32"][0].spec.input_names)
    runners = {k: run(a, backend=b) for k, (a, b) in arts.items()}
    rows = []
    for k, r in runners.items():
        rows.append({"model": name, "variant": k, "metric": metric,
                     "value": float(TASKS[task][0](r, data)[metric]), "bytes": arts[k][0].bytes})
    p50, rounds = interleaved_median_ms({k: functools.partial(r, feeds) for k, r in runners.items()})
    for row in rows:
        row["p50_ms"] = p50[str(row["variant"])]
    for r in runners.values():
        r.close()
    shape = {k: list(v.shape) for k, v in feeds.items()}
    print(f"{name}: {metric} on {len(data)} samples of {data.name} (test split); p50 = median of interleaved "
          f"batch-1 calls on {shape}, {rounds} rounds, CPU")
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
        print(f"mtcnn cascade {variant}: " + ", ".join(f"{k} {100 * float(v):.2f} %" for k, v in acc.items()))
        rows.append({"model": "mtcnn (cascade)", "variant": variant, "metric": "f1", "value": float(acc["f1"]),
                     "bytes": sum(a.bytes for a in nets)})
        calls[variant] = functools.partial(pipe.detect, astronaut)
    p50, rounds = interleaved_median_ms(calls)
    for row in rows:
        row["p50_ms"] = round(p50[str(row["variant"])], 3)
    print(f"mtcnn cascade: precision/recall at IoU 0.5 on the faces test scenes; p50 = median of interleaved "
          f"whole-cascade runs on astronaut (512 x 512), {rounds} rounds, onnxruntime CPU")
    return rows


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| model | variant | metric (test split) | p50 ms | size MB |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['variant']} | {r['metric']} {100 * float(r['value']):.2f} % | "  # type: ignore[arg-type]
                     f"{float(r['p50_ms']):.3f} | {int(r['bytes']) / 1e6:.2f} |")  # type: ignore[call-overload]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated cards, or none")
    ap.add_argument("--budget", type=float, default=1.0, help="allowed drop of the task metric, percentage points")
    ap.add_argument("--work", default="out/realmodels", help="where the optimize runs write (and resume)")
    ap.add_argument("--quick", action="store_true", help="optimize with few latency iterations")
    ap.add_argument("--recipes", help="optimize's --recipes, for every model or per model as "
                    "'pp-ocrv4-det=none,int8-static;silero-vad=...' (default: its defaults for an ONNX base)")
    ap.add_argument("--backends", help="optimize's --backends (default: every installed one)")
    ap.add_argument("--no-optimize", action="store_true", help="FP32 and INT8 only")
    ap.add_argument("--mtcnn", action="store_true", help="also the whole MTCNN cascade, FP32 vs INT8")
    args = ap.parse_args()
    rows = []
    for name in args.models.split(","):
        if name != "none":
            rows += measure(name, variants(name, args))
    if args.mtcnn:
        rows += mtcnn_rows()
    print(table(rows))
    with open("/proc/loadavg") as f:
        print("load average (1, 5, 15 min):", " ".join(f.read().split()[:3]))


if __name__ == "__main__":
    main()
