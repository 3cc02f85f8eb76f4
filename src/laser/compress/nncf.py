"""INT8 post-training quantization with NNCF (OpenVINO's toolkit): ``Quantize("int8-nncf")``.

    >>> q = laser.Quantize("int8-nncf", calibration="digits")(laser.load("digits-cnn"))
    >>> laser.run(q, backend="openvino")       # also runs on onnxruntime

NNCF quantizes the ONNX graph (the same pre-processed graph ``int8-static`` starts from) and writes
ONNX with QuantizeLinear/DequantizeLinear pairs placed for OpenVINO's CPU plugin: its own patterns
(which ops stay float, where scales are shared), symmetric per-channel weights, activation ranges from
its range estimators, then fast bias correction. The result is an ``onnx`` artifact: OpenVINO runs it
with its INT8 kernels, onnxruntime runs it as a QDQ model.

ONNX rather than an OpenVINO IR: on ResNet-18 (batch 1, 2 threads, AMD EPYC Zen 4, OpenVINO 2026.4)
the NNCF QDQ ONNX ran at 21.7 ms p50 and NNCF on the OpenVINO model (IR) at 24.4 ms, the same within
noise, so the existing format, bundle and both backends serve it.

Calibration is the same as ``int8-static`` (``laser.compress.calibration``: a dataset name means its
train split; 'random' spec inputs for latency work), fed one sample at a time (NNCF's statistics assume
batch 1). With ``max_accuracy_drop`` (percentage points), ``nncf.quantize_with_accuracy_control``
measures the task's metric on ``data`` (its test split) with the model on OpenVINO and returns layers
to float, most harmful first, until the drop holds.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from laser.artifact import Artifact
from laser.errors import BudgetError, require

INSTALL = "pip install 'laser[openvino]' (or pip install nncf)"
# classification-like tasks whose first metric is an accuracy averaged over samples: NNCF ranks layers
# from per-sample values without re-running the model once per sample
PER_SAMPLE_TASKS = ("classification", "text-classification")


def nncf_module() -> Any:
    """``import nncf`` or a DependencyError with the install hint."""
    return require("nncf", "openvino", "nncf")


def target_backend() -> str:
    """Where NNCF's model is meant to run: OpenVINO when installed (NNCF installs it), else onnxruntime."""
    return "openvino" if find_spec("openvino") is not None else "onnxruntime"


@contextlib.contextmanager
def _quiet(progress: bool) -> Iterator[None]:
    """NNCF logs at INFO and draws rich progress bars on stdout: send them to stderr (stdout stays clean for
    --json), or nowhere when progress is off."""
    from nncf.common.logging.logger import nncf_logger

    level = nncf_logger.level
    if not progress:
        nncf_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr if progress else io.StringIO()):
            yield
    finally:
        nncf_logger.setLevel(level)


def model_type(src: Path) -> tuple[str | None, str]:
    """NNCF's model_type for the graph: 'transformer' with attention (Softmax and MatMul), else None."""
    onnx = require("onnx", "onnx")
    ops = {n.op_type for n in onnx.load(str(src), load_external_data=False).graph.node}
    if {"Softmax", "MatMul"} <= ops:
        return "transformer", "the graph has Softmax and MatMul (attention): NNCF's transformer patterns"
    return None, "no attention in the graph: NNCF's default (CNN) patterns"


def _samples(feeds: Sequence[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Batched calibration feeds as one-sample feeds."""
    out = []
    for feed in feeds:
        rows = len(next(iter(feed.values())))
        out += [{k: np.ascontiguousarray(v[i:i + 1]) for k, v in feed.items()} for i in range(rows)]
    return out


def quantizer(stage: Any, parent: Artifact, src: Path, work: Path,
              ) -> tuple[Callable[[Path, Sequence[str], Sequence[str] | None], None], dict[str, Any]]:
    """For ``Quantize``: a function ``(dst, exclude, only) -> None`` writing NNCF's INT8 ONNX, and what it does."""
    nncf = nncf_module()
    onnx = require("onnx", "onnx")
    from laser.compress.calibration import calibration_set

    calib = calibration_set(stage.calibration, parent.spec, parent.preprocessing, stage.samples)
    items = _samples(calib.feeds)
    kind, why = model_type(src)
    settings = _settings(nncf, kind, len(items))

    def run(dst: Path, exclude: Sequence[str], only: Sequence[str] | None) -> None:
        if only is not None:
            raise NotImplementedError("int8-nncf quantizes the whole graph; exclude nodes with exclude=")
        model = onnx.load(str(src))
        with _quiet(stage.progress):
            q = nncf.quantize(model, nncf.Dataset(items), ignored_scope=_ignored(nncf, exclude), **settings)
        onnx.save(q, str(dst))

    info = {"format": "QDQ (NNCF)", "engine": f"nncf {nncf.__version__}", "preset": "performance",
            "per_channel": True, "weights": "int8 symmetric per-channel", "target_device": "CPU",
            "model_type": kind or "default", "model_type_why": why, "fast_bias_correction": True,
            "calibration": {**calib.describe(), "fed": f"{len(items)} one-sample batches",
                            "method": "NNCF range estimators (min/max of weights; activations per NNCF preset)"},
            "runs_on": target_backend()}
    return run, info


def _settings(nncf: Any, kind: str | None, subset: int) -> dict[str, Any]:
    out: dict[str, Any] = {"subset_size": subset, "preset": nncf.QuantizationPreset.PERFORMANCE,
                           "target_device": nncf.TargetDevice.CPU, "fast_bias_correction": True}
    if kind == "transformer":
        out["model_type"] = nncf.ModelType.TRANSFORMER
        out["preset"] = nncf.QuantizationPreset.MIXED  # NNCF's advice for transformers: asymmetric activations
    return out


def _ignored(nncf: Any, exclude: Sequence[str]) -> Any:
    return nncf.IgnoredScope(names=list(exclude), validate=True) if exclude else None


def with_accuracy_control(stage: Any, parent: Artifact, src: Path, dst: Path, exclude: Sequence[str],
                          ) -> dict[str, Any]:
    """``nncf.quantize_with_accuracy_control`` into ``dst``: the task's metric on ``stage.data`` (every
    sample, on the target backend) may drop at most ``stage.max_accuracy_drop`` points."""
    nncf = nncf_module()
    onnx = require("onnx", "onnx")
    from laser.compress.calibration import calibration_set
    from laser.compress.mixed_precision import dataset

    ds = dataset(stage.data)
    calib = calibration_set(stage.calibration, parent.spec, parent.preprocessing, stage.samples)
    items = _samples(calib.feeds)
    kind, _ = model_type(src)
    names = parent.spec.input_names
    labels = np.asarray(ds.labels)  # dataset() checked that it is labelled
    samples = [({n: x[i:i + 1] for n, x in zip(names, ds.inputs, strict=True)}, int(labels[i]))
               for i in range(len(ds))]
    backend = target_backend()
    calls: list[float] = []

    def validate(model: Any, subset: Any) -> tuple[float, list[float] | None]:
        metric, per_sample = evaluate(parent, model, list(subset), backend)
        calls.append(metric)
        return metric, per_sample

    validation = nncf.Dataset(samples, lambda s: s[0])
    model = onnx.load(str(src))
    try:
        with _quiet(stage.progress):
            q = nncf.quantize_with_accuracy_control(
                model, nncf.Dataset(items), validation, validate, max_drop=stage.max_accuracy_drop / 100,
                drop_type=nncf.DropType.ABSOLUTE, ignored_scope=_ignored(nncf, exclude),
                **_settings(nncf, kind, len(items)))
    except nncf.ValidationError as exc:  # pragma: no cover - NNCF's own input checks
        raise BudgetError(f"int8-nncf with accuracy control failed: {exc}") from exc
    onnx.save(q, str(dst))
    fp32, _ = evaluate(parent, model, samples, backend)
    final, _ = evaluate(parent, q, samples, backend)
    drop = round((fp32 - final) * 100, 4)
    from laser.compress.mixed_precision import layer_names

    names_of = layer_names(src)
    kept = [{"node": n, "layer": names_of.get(n, n)} for n in _float_nodes(model, q)]
    result = {"budget_points": stage.max_accuracy_drop, "data": ds.name, "samples": len(ds),
              "metric": metric_name(parent.task), "fp32_top1": fp32, "final_top1": final, "drop_points": drop,
              "met": drop <= stage.max_accuracy_drop, "kept_in_float": kept, "excluded": list(exclude),
              "validations": len(calls), "method": f"measured: nncf.quantize_with_accuracy_control, "
              f"{metric_name(parent.task)} on every sample of {ds.name!r} on {backend}; NNCF returns the "
              "quantized ops that hurt the metric most to float until the drop holds"}
    if not result["met"]:
        raise BudgetError(f"int8-nncf: the {result['metric']} drop stays {drop:.2f} points > budget "
                          f"{stage.max_accuracy_drop} after NNCF's accuracy control; raise max_accuracy_drop, "
                          "calibrate on more representative data, or try laser.QAT")
    return result


def metric_name(task: str) -> str:
    return {"classification": "top1", "text-classification": "accuracy"}.get(task, "the task's first metric")


def evaluate(parent: Artifact, model: Any, samples: list[Any], backend: str) -> tuple[float, list[float] | None]:
    """(metric, per-sample values or None) of an ONNX ModelProto on ``samples`` ((feeds, label) pairs)."""
    onnx = require("onnx", "onnx")
    from laser.compress.mixed_precision import as_onnx_artifact
    from laser.data import Dataset
    from laser.measure.accuracy import evaluate as task_metrics
    from laser.measure.accuracy import predict
    from laser.runtime import run

    names = parent.spec.input_names
    data = Dataset("validation", tuple(np.concatenate([s[0][n] for s in samples]) for n in names),
                   np.asarray([s[1] for s in samples]))
    with tempfile.TemporaryDirectory(prefix="laser-nncf-") as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(model, str(path))
        with run(as_onnx_artifact(parent, path), backend=backend) as runner:
            if parent.task in PER_SAMPLE_TASKS:
                right = (predict(runner, data).argmax(axis=1) == data.labels).astype(np.float64)
                return float(right.mean()), [float(x) for x in right]
            metrics, _ = task_metrics(parent.task, runner, data)
            return float(next(v for k, v in metrics.items() if k != "samples")), None


def _float_nodes(fp32: Any, quantized: Any) -> list[str]:
    """Nodes with weights (Conv/Gemm/MatMul) whose inputs are not dequantized in ``quantized``."""
    produced_by_dq = {o for n in quantized.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    layer_ops = {"Conv", "Gemm", "MatMul", "ConvTranspose"}
    names = {n.name for n in fp32.graph.node if n.op_type in layer_ops}
    return sorted(n.name for n in quantized.graph.node
                  if n.name in names and not any(i in produced_by_dq for i in n.input))


def speed_check(parent: Artifact, quantized: Artifact, macs: int) -> dict[str, Any]:
    """FP32 vs INT8 latency (batch 1) on the backend NNCF's model is meant for, and a note when not faster."""
    from laser.compress.quant_check import BLOCK, MIN_MACS, PASSES, SLOWER, latency_pair

    backend = target_backend()
    ms = latency_pair(parent, quantized, backend=backend)
    ratio = ms["quantized"] / ms["fp32"]
    note = None
    if ratio >= SLOWER and macs >= MIN_MACS:
        note = (f"int8-nncf is not faster on {backend}: measured {ratio:.2f} x the FP32 latency ({ms['quantized']:.2f} "
                f"vs {ms['fp32']:.2f} ms, batch 1, this CPU); the quantize/dequantize conversions cost more than "
                "the int8 kernels save on this model. Keep FP32 for speed (the INT8 file is still smaller)")
    return {"fp32_p50_ms": round(ms["fp32"], 4), "quantized_p50_ms": round(ms["quantized"], 4),
            "ratio": round(ratio, 3), "macs": macs, "backend": backend, "note": note,
            "method": f"measured: {backend} CPU, batch 1, p50 of {BLOCK} calls per block after 3 warm-up, median "
                      f"of {PASSES} alternating passes (shared CPU: noisy)"}


__all__ = ["model_type", "quantizer", "speed_check", "target_backend", "with_accuracy_control"]
