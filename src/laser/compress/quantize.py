"""Quantize: INT8 (static, dynamic), FP16 and BF16, in the ONNX domain with onnxruntime.quantization.

    >>> q = laser.Quantize("int8-static", calibration="digits")(laser.load("digits-cnn"))
    >>> q.format, q.lineage[-1].results["bytes"]["ratio"]        # ('onnx', 0.28...)

A torch artifact is exported first through the export stage (exporting torch-quantized graphs to ONNX
is broken upstream), pre-processed with ``quant_pre_process`` (shape inference + graph optimisation),
then quantized:

- ``int8-static``: QDQ format, ranges calibrated once on a bounded calibration set (MinMax, Entropy or
  Percentile), per-channel weights. Types default from measurements on the target CPU (below).
- ``int8-dynamic``: weights INT8 offline, activations quantized at run time; MatMul/Gemm only by
  default, because dynamic Conv becomes ConvInteger, which is slower than FP32 on CPU.
- ``int8-nncf``: NNCF's post-training INT8 (``laser.compress.nncf``): QDQ placed for OpenVINO's CPU
  plugin, fast bias correction; runs on openvino (its target) and onnxruntime. With ``max_accuracy_drop``
  it is ``nncf.quantize_with_accuracy_control`` on ``data``, measured on OpenVINO.
- ``fp16``: weights and compute in float16, float32 inputs/outputs kept (the spec does not change).
- ``bf16``: only where the runtime has bfloat16 kernels; checked, never assumed.

With ``max_accuracy_drop`` (percentage points, top-1 on ``data``, measured with onnxruntime) the most
sensitive layers are kept in float until the budget holds (``laser.compress.mixed_precision``).
Then FP32 and quantized are timed on onnxruntime (``check_speed``); an INT8 model that measures slower
gets a warning that says why, from the graph onnxruntime runs (``laser.compress.quant_check``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from laser.artifact import Artifact, Step, workspace
from laser.compress.quant_check import MEASURED_RESNET18_MS
from laser.compress.quant_graph import (
    bf16_probe,
    fp16_quantizer,
    preprocess,
    quiet,
)
from laser.errors import ConfigError, ExportError, require
from laser.stages import Stage

log = logging.getLogger("laser.quantize")

METHODS = ("int8-static", "int8-dynamic", "int8-nncf", "fp16", "bf16")
CALIBRATED = ("int8-static", "int8-nncf")
QTYPES = ("uint8", "int8")
DYNAMIC_OPS = ("MatMul", "Gemm")

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


class QuantizeWarning(UserWarning):
    """A quantization choice that will likely not make the model faster on this machine."""


def int8_defaults(cpu: dict[str, Any] | None = None) -> dict[str, Any]:
    """INT8 types for this CPU, from its ISA flags (``laser.measure.hardware.cpu_info``).

    u8 activations / s8 weights is the only combination ORT runs with its fast u8s8 kernels (s8/s8
    left 11 of 20 ResNet-18 convs in FP32: 16.8 vs 6.4 ms in an example measured on a 2-core AMD EPYC). With VNNI (or AMX) the u8×s8 dot product
    accumulates in 32 bits; without it, x86 uses pmaddubsw, whose 16-bit pair sums can saturate, so
    weights are reduced to 7 bits (``reduce_range``).
    """
    if cpu is None:
        from laser.measure.hardware import cpu_info

        cpu = cpu_info()
    flags = set(cpu.get("isa", ()))
    vnni = sorted(flags & set(VNNI_FLAGS))
    x86 = cpu.get("arch") in ("x86_64", "AMD64", "i686", "x86")
    reduce_range = x86 and not vnni
    if vnni:
        why = f"{'/'.join(vnni)} present: u8 activations x s8 per-channel weights, full 8-bit range"
    elif x86:
        why = "x86 without VNNI: u8 x s8 with 7-bit weights (reduce_range) to avoid pmaddubsw saturation"
    else:
        why = f"{cpu.get('arch')}: u8 activations x s8 weights (ORT's default kernels on this architecture)"
    return {"activation_type": "uint8", "weight_type": "int8", "reduce_range": reduce_range, "why": why}


@dataclasses.dataclass(frozen=True)
class Quantize(Stage):
    """Quantize an artifact (a torch model is exported to ONNX first); returns an ONNX artifact.

    ``calibration``: dataset name, ``laser.data.Dataset``, folder of images or .npy files, list of
    .npy files, iterable of input dicts, or 'random' (int8-static only). ``exclude``: node names kept
    in float. ``max_accuracy_drop``: top-1 budget in percentage points on ``data`` (a labelled dataset
    or its name; test split). ``activation_type``/``weight_type``/``reduce_range``: None = chosen for
    this CPU by ``int8_defaults``. ``check_speed``: time FP32 vs quantized on onnxruntime and warn,
    with the reason, when INT8 is not faster.
    """

    op: ClassVar[str] = "quantize"
    method: str = "int8-static"
    calibration: Any = None
    calibration_method: str = "minmax"
    samples: int = 256
    per_channel: bool = True
    activation_type: str | None = None
    weight_type: str | None = None
    reduce_range: bool | None = None
    exclude: tuple[str, ...] = ()
    op_types: tuple[str, ...] | None = None
    max_accuracy_drop: float | None = None
    data: Any = None
    check_speed: bool = True
    progress: bool = dataclasses.field(default=True, repr=False, compare=False)

    def __post_init__(self) -> None:
        from laser.compress.calibration import CALIBRATION_METHODS, check_source

        check_source(self.calibration)
        if self.method not in METHODS:
            hint = " (quantization-aware training is laser.QAT / --method qat)" if self.method == "qat" else ""
            raise ConfigError(f"unknown quantization method {self.method!r}; use one of {METHODS}{hint}, "
                              "e.g. Quantize(method='int8-static', calibration='digits')")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise ConfigError(f"unknown calibration_method {self.calibration_method!r}; use one of "
                              f"{CALIBRATION_METHODS}")
        if not isinstance(self.samples, int) or self.samples < 1:
            raise ConfigError(f"samples must be an int >= 1, got {self.samples!r}; e.g. samples=256")
        for name in ("activation_type", "weight_type"):
            value = getattr(self, name)
            if value is not None and value not in QTYPES:
                raise ConfigError(f"{name} must be one of {QTYPES} or None (chosen for this CPU), got {value!r}")
        object.__setattr__(self, "exclude", tuple(self.exclude))
        if self.op_types is not None:
            object.__setattr__(self, "op_types", tuple(self.op_types))
        if self.method == "int8-nncf":
            self._check_nncf_options()
        if self.method in CALIBRATED and self.calibration is None:
            raise ConfigError(f"{self.method} needs calibration data: pass calibration='digits' (a dataset name), a "
                              "folder of images or .npy files, an iterable of input dicts, or 'random' for "
                              "latency-only work on random weights")
        if self.method not in CALIBRATED and self.activation_type is not None:
            raise ConfigError(f"activation_type applies to int8-static only; {self.method} "
                              "quantizes activations at run time (uint8) or not at all")
        if self.max_accuracy_drop is not None:
            if not isinstance(self.max_accuracy_drop, (int, float)) or self.max_accuracy_drop < 0:
                raise ConfigError(f"max_accuracy_drop is in percentage points and must be >= 0, got "
                                  f"{self.max_accuracy_drop!r}; e.g. max_accuracy_drop=0.5")
            if self.data is None:
                raise ConfigError("max_accuracy_drop needs data= (a labelled dataset or its name, e.g. "
                                  "data='digits') to measure the drop on")

    def _check_nncf_options(self) -> None:
        """int8-nncf takes its types, ranges and op choice from NNCF: say so instead of ignoring options."""
        fixed = [(name, getattr(self, name)) for name in ("activation_type", "weight_type", "reduce_range", "op_types")
                 if getattr(self, name) is not None]
        if self.calibration_method != "minmax":
            fixed.append(("calibration_method", self.calibration_method))
        if not self.per_channel:
            fixed.append(("per_channel", False))
        if fixed:
            raise ConfigError(f"int8-nncf chooses {', '.join(n for n, _ in fixed)} itself (NNCF's CPU preset: "
                              "symmetric per-channel int8 weights, its own range estimators and op patterns); "
                              "drop those options, or use method='int8-static' to set them")

    def params(self) -> dict[str, Any]:
        """Plain-data fields for lineage and recipes; an in-memory calibration source is recorded by what
        it is, not element by element."""
        out = super().params()
        for name in ("calibration", "data"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                out[name] = describe_source(value)
            elif isinstance(value, os.PathLike):
                out[name] = os.fspath(value)
        return out

    # -------------------------------------------------------------------------------------------
    def apply(self, artifact: Artifact) -> Artifact:
        from laser.compress import mixed_precision as mp

        if self.method == "bf16":
            bf16_probe()  # fail before the export when this runtime has no bfloat16 kernels
        parent = self._onnx_parent(artifact)
        work = Path(tempfile.mkdtemp(prefix="quantize-", dir=workspace(f"{artifact.name}-q")))
        src, pre_note = preprocess(parent.model_file, work / "pre.onnx")
        notes = [pre_note] if pre_note else []
        results: dict[str, Any] = {"preprocess": pre_note or "onnxruntime quant_pre_process"}
        raw, info = self._quantizer(parent, src, work, notes)
        from laser.export.onnx import strip_debug_metadata

        def quantizer(dst: Path, exclude: Sequence[str], only: Sequence[str] | None) -> None:
            raw(dst, exclude, only)
            strip_debug_metadata(dst)

        results.update(info)
        out = work / "model.onnx"
        exclude = list(self.exclude)
        nncf = self.method == "int8-nncf"
        target = info.get("runs_on", "onnxruntime")  # where accuracy and speed are measured
        if nncf and self.max_accuracy_drop is not None:  # NNCF's own accuracy-aware loop quantizes
            from laser.compress.nncf import with_accuracy_control

            results["accuracy_aware"] = with_accuracy_control(self, parent, src, out, exclude)
            strip_debug_metadata(out)
        else:
            quantizer(out, exclude, None)
        if nncf and self.max_accuracy_drop is not None:
            exclude = [*exclude, *(k["node"] for k in results["accuracy_aware"]["kept_in_float"])]
        elif self.max_accuracy_drop is not None:
            search = mp.keep_sensitive_layers_in_float(parent, src, quantizer, out, self.max_accuracy_drop,
                                                       self.data, exclude, progress=self.progress)
            results["accuracy_aware"] = search
            exclude = list(search["excluded"])
        elif self.data is not None:
            results["accuracy"] = mp.accuracy_delta(parent, out, self.data, backend=target)
        else:
            results["accuracy"] = {"measured": False, "note": "pass data= to measure the top-1 delta"}
        if self.check_speed:
            from laser.compress import nncf as nncf_q
            from laser.compress import quant_check

            check = nncf_q.speed_check if nncf else quant_check.speed_check
            speed = check(parent, mp.as_onnx_artifact(parent, out), quant_check.mac_split(src)["total"])
            note = speed.pop("note")
            if note and self.method.startswith("int8") and not notes:  # not when a note already says why
                notes.append(note)
            results["speed"] = speed
        results["excluded"] = exclude
        results["layer_names"] = mp.layer_names(src, exclude)
        if self.method in CALIBRATED:
            results["int8_macs"] = mp.int8_macs(src, out, parent)
        qbytes, fbytes = out.stat().st_size, parent.model_file.stat().st_size
        results["bytes"] = {"fp32": fbytes, "quantized": qbytes, "ratio": round(qbytes / fbytes, 4),
                            "method": "measured: model file sizes on disk"}
        for note in notes:
            warnings.warn(note, QuantizeWarning, stacklevel=3)
        results["notes"] = notes
        step = Step(self.op, params=self.params(), results=results)
        return parent.derive(step, files={"model.onnx": out}, format="onnx", architecture=None)

    def _onnx_parent(self, artifact: Artifact) -> Artifact:
        if artifact.format == "torch":
            from laser.export import export

            return export(artifact, to="onnx", dynamic_batch=True)
        if artifact.format != "onnx":
            raise ExportError(f"{artifact.name!r} is a {artifact.format} artifact; quantization works on ONNX "
                              "graphs: give the torch model (it is exported first) or an .onnx artifact")
        onnx = require("onnx", "onnx")
        ops = {n.op_type for n in onnx.load(str(artifact.model_file), load_external_data=False).graph.node}
        done = sorted(ops & {"QuantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"})
        if done:
            raise ConfigError(f"{artifact.name!r} is already quantized (it has {done} nodes); quantize the FP32 "
                              "model instead")
        return artifact

    def _quantizer(self, parent: Artifact, src: Path, work: Path, notes: list[str],
                   ) -> tuple[Callable[[Path, Sequence[str], Sequence[str] | None], None], dict[str, Any]]:
        """A function ``(dst, exclude, only) -> None`` writing the quantized model, and what it does."""
        if self.method == "int8-static":
            return self._static(parent, src, work)
        if self.method == "int8-dynamic":
            return self._dynamic(parent, src, notes)
        if self.method == "int8-nncf":
            from laser.compress.nncf import quantizer

            return quantizer(self, parent, src, work)
        if self.method == "fp16":
            return fp16_quantizer(src, notes)
        return bf16_probe()

    def _types(self) -> dict[str, Any]:
        auto = int8_defaults()
        chosen = {
            "activation_type": self.activation_type or auto["activation_type"],
            "weight_type": self.weight_type or auto["weight_type"],
            "reduce_range": auto["reduce_range"] if self.reduce_range is None else self.reduce_range,
            "per_channel": self.per_channel,
        }
        chosen["defaults_from"] = auto["why"]
        return chosen

    def _static(self, parent: Artifact, src: Path, work: Path):
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        from laser.compress.calibration import calibrate, calibration_set

        types = self._types()
        calib = calibration_set(self.calibration, parent.spec, parent.preprocessing, self.samples)
        cache = calibrate(src, calib, self.calibration_method, work / "calibration.json", progress=self.progress)
        qt = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[self.calibration_method]

        def run(dst: Path, exclude: Sequence[str], only: Sequence[str] | None) -> None:
            with quiet():
                quantize_static(str(src), str(dst), None, calibration_cache_path=cache,
                                quant_format=QuantFormat.QDQ, per_channel=types["per_channel"],
                                reduce_range=types["reduce_range"], activation_type=qt[types["activation_type"]],
                                weight_type=qt[types["weight_type"]], calibrate_method=method,
                                nodes_to_exclude=list(exclude), nodes_to_quantize=list(only or []),
                                op_types_to_quantize=list(self.op_types or []))

        return run, {**types, "format": "QDQ", "calibration": {**calib.describe(), "method": self.calibration_method}}

    def _dynamic(self, parent: Artifact, src: Path, notes: list[str]):
        from onnxruntime.quantization import QuantType, quantize_dynamic

        from laser.compress.quant_check import mac_split

        op_types = list(self.op_types or DYNAMIC_OPS)
        types = self._types()
        weight = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[types["weight_type"]]
        split = mac_split(src)
        conv_share = split["conv"] / max(1, split["total"])
        if "Conv" in op_types:
            notes.append(f"int8-dynamic with Conv: dynamic Conv becomes ConvInteger, which ran ResNet-18 at "
                         f"{MEASURED_RESNET18_MS['int8-dynamic with Conv (ConvInteger)']} ms vs "
                         f"{MEASURED_RESNET18_MS['fp32']} ms FP32 in an example measured elsewhere (not in this run): expect it to "
                         "be slower. Use "
                         "int8-static (calibrated QDQ) for convolutions")
        elif conv_share > 0.5:
            notes.append(f"int8-dynamic on a conv-heavy model: {conv_share:.0%} of {parent.name}'s MACs are in "
                         f"Conv layers, which stay FP32 (only {op_types} are quantized dynamically), so it will "
                         "likely be no faster, only smaller; quantizing Conv dynamically would be slower still "
                         f"(ConvInteger: {MEASURED_RESNET18_MS['int8-dynamic with Conv (ConvInteger)']} ms vs "
                         f"{MEASURED_RESNET18_MS['fp32']} ms FP32 for ResNet-18). Use int8-static instead")

        def run(dst: Path, exclude: Sequence[str], only: Sequence[str] | None) -> None:
            with quiet():
                quantize_dynamic(str(src), str(dst), per_channel=types["per_channel"],
                                 reduce_range=types["reduce_range"], weight_type=weight,
                                 op_types_to_quantize=op_types, nodes_to_exclude=list(exclude),
                                 nodes_to_quantize=list(only or []))

        info = {k: types[k] for k in ("weight_type", "reduce_range", "per_channel", "defaults_from")}
        return run, {**info, "activation_type": "uint8 (at run time)", "op_types": op_types,
                     "macs": {**split, "method": "counted from the ONNX graph, batch 1"}}


def describe_source(value: Any) -> str:
    """A short name for a calibration/evaluation source that is not a name or a path."""
    from laser.data import Dataset

    if isinstance(value, Dataset):
        return f"dataset {value.name!r} ({len(value)} samples)"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of {len(value)} items"
    return type(value).__name__


def quantize(artifact: Artifact, method: str = "int8-static", **options: Any) -> Artifact:
    """``Quantize(method, **options)(artifact)``."""
    return Quantize(method=method, **options)(artifact)


__all__ = ["MEASURED_RESNET18_MS", "METHODS", "Quantize", "QuantizeWarning", "int8_defaults", "quantize"]
