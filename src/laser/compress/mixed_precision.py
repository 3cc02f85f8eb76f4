"""Accuracy-aware quantization: keep the most sensitive layers in float until a top-1 budget holds.

Everything is measured on the runtime the model ships on (onnxruntime), against the FP32 ONNX parent:

1. quantize everything; measure top-1 of both on the dataset. Within budget: done.
2. rank the layers (Conv/Gemm/MatMul nodes) by sensitivity: quantize *only that layer* (every other
   layer float) and measure how far the model's output moves from FP32's, as the normalised squared
   error ``mean((y_q - y)^2) / mean(y^2)`` on up to ``PROBE_SAMPLES`` samples.
3. keep the k most sensitive layers in float (``nodes_to_exclude``), re-quantizing from the one
   calibration pass and measuring top-1 each time: k = 1, 2, 4 ... until the drop is within budget, then
   bisection down to the fewest k that still meets it (accuracy is taken to grow with k), so a model
   that needs 20 of 50 layers in float costs ~9 trials, not 20.

Why "only this layer quantized" rather than the per-tensor error of the fully quantized graph: errors
accumulate downstream, so in a fully quantized graph late layers look bad because of early ones; and a
per-tensor signal-to-noise ratio misses activation outliers (one huge channel dominates both signal
and noise, while the quantization step it forces wipes out every other channel). Measuring the model's
output with one layer quantized isolates the layer and sees what the next layers make of its error.
Cost: one quantization (no re-calibration) and one short run per layer.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from laser.artifact import Artifact
from laser.data import Dataset
from laser.errors import BudgetError, ConfigError, require

PROBE_SAMPLES = 64  # samples whose outputs rank layer sensitivity
LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")

Quantizer = Callable[[Path, Sequence[str], Sequence[str] | None], None]


def dataset(data: Any) -> Dataset:
    """A labelled evaluation dataset: a Dataset, or a dataset name (its test split; ``name:val`` another)."""
    if isinstance(data, str):
        from laser import data as datasets

        data = datasets.load(data, "test")
    if not isinstance(data, Dataset):
        raise ConfigError(f"data must be a laser.data.Dataset or a dataset name like 'digits', got "
                          f"{type(data).__name__}")
    if data.labels is None or len(data) == 0:
        raise ConfigError(f"dataset {data.name!r} is empty or unlabelled; accuracy needs labelled samples")
    return data


def as_onnx_artifact(parent: Artifact, path: Path) -> Artifact:
    """An ONNX file made from ``parent``'s graph, with its spec (for running and measuring it)."""
    return Artifact.from_files({"model.onnx": path}, name=parent.name, task=parent.task, format="onnx",
                               spec=parent.spec)


def metric_name(art: Artifact) -> str:
    """The accuracy a budget is about: top-1 for classifiers, else the task's primary metric."""
    from laser.measure.accuracy import PRIMARY

    return PRIMARY.get(art.task, "top1") if art.task != "classification" else "top1"


def top1(art: Artifact, data: Dataset, backend: str = "onnxruntime") -> float:
    """The task's primary accuracy (top-1 for a classifier, character accuracy for a text recogniser ...)
    of an ONNX artifact on ``backend`` (the runtime it ships on)."""
    from laser.measure.accuracy import TASKS, classification
    from laser.runtime import run

    name = metric_name(art)
    with run(art, backend=backend) as runner:
        if name == "top1":
            return float(classification(runner, data)["top1"])
        return float(TASKS[art.task][0](runner, data)[name])


def outputs(art: Artifact, feeds: dict[str, np.ndarray]) -> np.ndarray:
    from laser.runtime import run

    with run(art, backend="onnxruntime") as runner:
        return runner(feeds)[art.spec.output_names[0]].astype(np.float64)


def accuracy_delta(parent: Artifact, quantized: Path, data: Any, backend: str = "onnxruntime") -> dict[str, Any]:
    """top-1 of the FP32 parent and of the quantized model, both on ``backend``."""
    ds = dataset(data)
    fp32, q = top1(parent, ds, backend), top1(as_onnx_artifact(parent, quantized), ds, backend)
    return {"measured": True, "data": ds.name, "samples": len(ds), "metric": metric_name(parent),
            "fp32_top1": fp32, "quantized_top1": q,
            "drop_points": round((fp32 - q) * 100, 4),
            "method": f"measured: top-1 on every sample, {backend} CPU, quantized vs FP32 ONNX parent"}


def keep_sensitive_layers_in_float(parent: Artifact, src: Path, quantize: Quantizer, out: Path, budget: float,
                                   data: Any, exclude: Sequence[str] = (), progress: bool = True,
                                   ) -> dict[str, Any]:
    """Re-quantize into ``out`` keeping the most sensitive layers in float until the top-1 drop on
    ``data`` is at most ``budget`` percentage points (see the module doc). ``out`` already holds the
    fully quantized model. Returns what was kept, the measured accuracies, and what it cost."""
    from tqdm.auto import tqdm

    ds = dataset(data)
    fp32 = top1(parent, ds)
    full = out.with_name("all-layers.onnx")
    shutil.copyfile(out, full)
    q = top1(as_onnx_artifact(parent, full), ds)
    result: dict[str, Any] = {
        "budget_points": budget, "data": ds.name, "samples": len(ds), "metric": metric_name(parent),
        "fp32_top1": fp32, "all_layers_top1": q,
        "all_layers_drop_points": round((fp32 - q) * 100, 4), "kept_in_float": [], "excluded": list(exclude),
        "trials": [], "method": "measured: top-1 on every sample, onnxruntime CPU; sensitivity = normalised "
                                "squared error of the output with only that layer quantized, "
                                f"on {min(PROBE_SAMPLES, len(ds))} samples",
    }
    if (fp32 - q) * 100 <= budget:
        return {**result, "met": True, "final_top1": q, "drop_points": result["all_layers_drop_points"]}
    names = layer_names(src)
    onnx = require("onnx", "onnx")
    graph = onnx.load(str(src), load_external_data=False).graph
    candidates = [n.name for n in graph.node if n.op_type in LAYER_OPS and n.name not in set(exclude)]
    if _layers_only_meets_budget(parent, ds, quantize, out, exclude, candidates, budget, result):
        result["cost"] = _cost(parent, full, out)
        full.unlink(missing_ok=True)
        return result
    restrict = result["layers_only_top1"] > q  # the other ops stay float from here on when that helped
    feeds = ds.take(PROBE_SAMPLES).feeds(parent.spec.input_names)
    reference = outputs(parent, feeds)
    power = max(float(np.mean(reference ** 2)), 1e-12)
    ranked = []
    probe = out.with_name("probe.onnx")
    for node in tqdm(candidates, desc="layer sensitivity", unit="layer", disable=not progress):
        quantize(probe, exclude, [node])
        err = float(np.mean((outputs(as_onnx_artifact(parent, probe), feeds) - reference) ** 2)) / power
        ranked.append((node, err))
    ranked.sort(key=lambda x: -x[1])
    result["sensitivity"] = [{"node": n, "layer": names.get(n, n), "nmse": _round(e)} for n, e in ranked]
    final, k = _fewest_kept(parent, ds, quantize, out, exclude, candidates if restrict else None, ranked, budget,
                            result)
    if k is None:
        raise BudgetError(f"top-1 drop stays {(fp32 - final) * 100:.2f} points > budget {budget} even with all "
                          f"{len(ranked)} layers ({'/'.join(LAYER_OPS)}) kept in float; the remaining quantized "
                          "ops (pooling, adds) or the data are the cause. Raise max_accuracy_drop, calibrate on "
                          "more representative data, or try laser.QAT")
    keep = [n for n, _ in ranked[:k]]
    result["kept_in_float"] = [{"node": n, "layer": names.get(n, n), "nmse": _round(e)} for n, e in ranked[:k]]
    result["excluded"] = [*exclude, *keep]
    result.update(met=True, final_top1=final, drop_points=round((fp32 - final) * 100, 4),
                  cost=_cost(parent, full, out))
    probe.unlink(missing_ok=True)
    full.unlink(missing_ok=True)
    return result


def _fewest_kept(parent: Artifact, ds: Dataset, quantize: Quantizer, out: Path, exclude: Sequence[str],
                 only: Sequence[str] | None, ranked: Sequence[tuple[str, float]], budget: float,
                 result: dict[str, Any]) -> tuple[float, int | None]:
    """(its accuracy, k): the fewest most-sensitive layers kept in float that meet the budget, found by
    doubling k (1, 2, 4 ...) and then bisecting between the last k that missed and the first that met it
    (accuracy is taken to grow with k); ``out`` ends up holding that model. (last accuracy, None): none does."""
    fp32 = result["fp32_top1"]
    best = out.with_name("best.onnx")
    met: dict[int, float] = {}

    def trial(k: int) -> bool:
        keep = [n for n, _ in ranked[:k]]
        quantize(out, [*exclude, *keep], [c for c in only if c not in keep] if only is not None else None)
        m = top1(as_onnx_artifact(parent, out), ds)
        result["trials"].append({"kept_in_float": k, "top1": m, "drop_points": round((fp32 - m) * 100, 4)})
        if (fp32 - m) * 100 <= budget:
            met[k] = m
            shutil.copyfile(out, best)
            return True
        return False

    lo, k, last = 0, 1, result["all_layers_top1"]
    while not trial(k):
        last = result["trials"][-1]["top1"]
        if k == len(ranked):
            return last, None
        lo, k = k, min(2 * k, len(ranked))
    hi = k
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if trial(mid):
            hi = mid
        else:
            lo = mid
    if result["trials"][-1]["kept_in_float"] != hi:  # the last model written missed: put the one that met back
        shutil.copyfile(out.with_name("best.onnx"), out)
    best.unlink(missing_ok=True)
    return met[hi], hi


def _layers_only_meets_budget(parent: Artifact, ds: Dataset, quantize: Quantizer, out: Path, exclude: Sequence[str],
                              candidates: list[str], budget: float, result: dict[str, Any]) -> bool:
    """Quantize only the compute layers (Conv/Gemm/MatMul), every other op (adds, norms, activations,
    softmax ...) in float: in attention/SVTR-style models those ops, not the layers, often lose the accuracy."""
    fp32 = result["fp32_top1"]
    quantize(out, exclude, candidates)
    m = top1(as_onnx_artifact(parent, out), ds)
    drop = round((fp32 - m) * 100, 4)
    result["layers_only_top1"] = m
    result["trials"].append({"kept_in_float": f"every op but {'/'.join(LAYER_OPS)}", "top1": m, "drop_points": drop})
    if (fp32 - m) * 100 > budget:
        return False
    result.update(met=True, final_top1=m, drop_points=drop, quantized_only=list(LAYER_OPS),
                  quantized_nodes=len(candidates))
    return True


def _round(x: float) -> float:
    return float(f"{x:.4g}") if math.isfinite(x) else x


def _cost(parent: Artifact, full: Path, mixed: Path) -> dict[str, Any]:
    """Latency (batch 1, onnxruntime) and file size of FP32, all-layers INT8 and the mixed model."""
    from laser.measure.latency import latency
    from laser.runtime import run

    figures: dict[str, Any] = {}
    for label, art in (("fp32", parent), ("all_layers_quantized", as_onnx_artifact(parent, full)),
                       ("mixed", as_onnx_artifact(parent, mixed))):
        with run(art, backend="onnxruntime") as runner:
            lat = latency(runner, batch_size=1, warmup=5, min_iters=30, max_seconds=0.5)
        figures[label] = {"p50_ms": round(lat.p50_ms, 4), "bytes": art.model_file.stat().st_size}
    return {**figures, "method": "measured: onnxruntime CPU, batch 1, p50 of >= 30 timed calls after 5 warm-up; "
                                 "file sizes on disk (shared CPU: expect noise)"}


def int8_macs(src: Path, quantized: Path, parent: Artifact) -> dict[str, Any]:
    """The share of the compute layers' MACs that run in INT8: a Conv/Gemm/MatMul of ``quantized`` counts
    when its data inputs come out of DequantizeLinear (QDQ). MACs from ``src`` at batch 1 with the spec's
    example input sizes."""
    from laser.compress.quant_check import node_macs

    onnx = require("onnx", "onnx")
    shapes = {k: v.shape for k, v in parent.spec.example_inputs(batch=1).items()}
    macs = node_macs(src, shapes)
    graph = onnx.load(str(quantized), load_external_data=False).graph
    dq = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    layers = [n for n in graph.node if n.op_type in LAYER_OPS]
    int8 = {n.name for n in layers if len(n.input) >= 2 and all(i in dq for i in n.input[:2])}
    total = sum(v for _, v in macs.values())
    done = sum(v for k, (_, v) in macs.items() if k in int8)
    return {"fraction": round(done / max(total, 1), 4), "int8_macs": done, "total_macs": total,
            "int8_layers": len(int8), "layers": len(layers), "layers_without_shapes": len(layers) - len(macs),
            "method": "counted: Conv/Gemm/MatMul nodes whose inputs are dequantized INT8 (QDQ); MACs from inferred "
                      f"shapes at batch 1, inputs {({k: list(v) for k, v in shapes.items()})} (layers whose "
                      "shapes cannot be inferred count in layers, not in MACs)"}


def layer_names(model: Path, nodes: Sequence[str] | None = None) -> dict[str, str]:
    """ONNX node name -> the torch module it came from, when the exporter recorded it (the dynamo
    exporter's ``pkg.torch.onnx.name_scopes``; the legacy exporter's node names are module paths)."""
    onnx = require("onnx", "onnx")
    import ast

    out = {}
    for node in onnx.load(str(model), load_external_data=False).graph.node:
        if nodes is not None and node.name not in nodes:
            continue
        scope = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        if scope:
            try:
                parts = [s for s in ast.literal_eval(scope) if s.startswith("module.")]
            except (ValueError, SyntaxError):
                parts = []
            if parts:
                out[node.name] = parts[-1].removeprefix("module.")
                continue
        out[node.name] = node.name
    return out
