"""TF SavedModel / TFLite / Paddle ``.pdmodel`` -> OpenVINO IR with ``openvino.convert_model``: the fallback of
``laser import`` when tf2onnx / paddle2onnx cannot run (no frameworks Python, the usual case for a user who
installed laser only) or fail on the model, and the converter ``--converter openvino`` asks for.

OpenVINO's frontends read these formats without TensorFlow or Paddle installed. The result is an ``openvino``
artifact (``model.xml`` + ``model.bin``, FP32 weights: never compressed to FP16) that the openvino backend runs
(``laser run / bench / serve / optimize``). It is not ONNX, so ``--to onnx`` / ``--to torch`` need the field's
converters. The spec (names, dtypes, dynamic dims) is read from the OpenVINO model. Parity is checked against
the source framework when the frameworks Python has it; otherwise the manifest says it was not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from laser.errors import ConfigError, DependencyError
from laser.spec import ModelSpec, TensorSpec

READS = ("savedmodel", "tflite", "paddle")  # formats OpenVINO's frontends read (Paddle: .pdmodel programs only)
OV_DTYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "i64": "int64", "i32": "int32", "i8": "int8",
             "u8": "uint8", "boolean": "bool"}
Run = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


def reads(fmt: str, source: Path) -> str | None:
    """None when OpenVINO reads ``source``, else why not (one clause)."""
    from laser.importer.frameworks import _pdmodel

    if fmt not in READS:
        return "OpenVINO does not read Keras files (export a SavedModel: model.export(DIR))"
    if fmt == "paddle" and _pdmodel(source) is None:
        return "OpenVINO does not read Paddle 3 .json programs (save with FLAGS_enable_pir_api=0 for a .pdmodel)"
    return None


def convert(fmt: str, source: Path, out_dir: Path) -> tuple[Any, dict[str, Path | tuple[Path, str]]]:
    """(OpenVINO model, bundle files) of ``source`` converted and saved as IR in ``out_dir``."""
    from laser.importer.frameworks import _pdmodel

    try:
        import openvino as ov
    except ImportError as exc:
        raise DependencyError("OpenVINO is not installed: pip install 'laser[openvino]'") from exc
    why = reads(fmt, source)
    if why:
        raise ConfigError(f"--converter openvino cannot convert {source.name}: {why}")
    root = logging.getLogger()
    level = root.level  # convert_model's error path sets the root logger's level (openvino.tools.ovc.logger)
    try:
        model = ov.convert_model(str(_pdmodel(source) or source))
    except Exception as exc:  # OpenVINO raises OpConversionFailure / RuntimeError with long reports
        raise ConfigError(f"OpenVINO could not convert {source.name}: {_first_line(exc)}") from exc
    finally:
        root.setLevel(level)
    xml = out_dir / "model.xml"
    ov.save_model(model, str(xml), compress_to_fp16=False)  # the default halves the weights to FP16
    return model, {"model.xml": xml, "model.bin": (xml.with_suffix(".bin"), "weights")}


def _first_line(exc: Exception) -> str:
    """The line of OpenVINO's report that says what failed (the op list when there is one), not where in C++."""
    lines = [ln.strip().lstrip("- ") for ln in str(exc).strip().splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("Check '", "FrontEnd API failed", "To facilitate"))] or lines
    ops = [ln for ln in lines if "conversion rule" in ln or "operations:" in ln]
    return ((ops or lines)[0] if lines else type(exc).__name__)[:300]


def spec_of(model: Any) -> ModelSpec:
    """Names, dtypes and dims (dynamic: 'batch' first, else NAME_i) of the OpenVINO model's inputs/outputs."""
    def tensor(port: Any) -> TensorSpec:
        name = port.get_any_name()
        etype = port.get_element_type().get_type_name()
        if etype not in OV_DTYPES:
            raise ConfigError(f"tensor {name!r} has OpenVINO element type {etype}, which laser does not handle; "
                              f"supported: {sorted(OV_DTYPES)}")
        dims: list[int | str] = []
        for i, d in enumerate(port.get_partial_shape()):
            dims.append(d.get_length() if d.is_static else ("batch" if i == 0 else f"{name}_{i}"))
        return TensorSpec(name, OV_DTYPES[etype], tuple(dims))
    return ModelSpec(inputs=tuple(tensor(p) for p in model.inputs), outputs=tuple(tensor(p) for p in model.outputs))


def describe_io(spec: ModelSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The source's inputs/outputs as OpenVINO read them, in the manifest's ``source_inputs`` form."""
    def one(t: TensorSpec) -> dict[str, Any]:
        return {"name": t.name, "dtype": t.dtype, "shape": [d if isinstance(d, int) else None for d in t.shape],
                "from": "openvino"}
    return [one(t) for t in spec.inputs], [one(t) for t in spec.outputs]


def runner(model: Any) -> Run:
    """OpenVINO CPU in f32 (the openvino backend's default precision) on the model."""
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        res = compiled([feeds[p.get_any_name()] for p in compiled.inputs])
        return [np.asarray(res[o]) for o in compiled.outputs]
    return run


def parity(python: str | None, fmt: str, source: Path, spec: ModelSpec, run: Run, batch: int = 4) -> dict[str, Any]:
    """OpenVINO on the IR vs the source framework (run by ``python``; None: it is not installed)."""
    import tempfile

    from laser.importer import frameworks as fw

    feeds = spec.example_inputs(batch=batch, seed=0)
    out: dict[str, Any] = {"inputs": {t.name: list(feeds[t.name].shape) for t in spec.inputs},
                           "method": f"OpenVINO CPU (f32) on the converted IR vs the source framework, {batch} "
                                     "seeded N(0,1) example inputs; max |diff| over all outputs"}
    if python is None:
        out["vs_source"] = {"note": fw.NOT_INSTALLED}
        return out
    got = run(feeds)
    with tempfile.TemporaryDirectory(prefix="laser-fw-") as tmp:
        np.savez(Path(tmp) / "x.npz", *[feeds[t.name] for t in spec.inputs])
        try:
            ans = fw.worker(python, {"op": "reference", "format": fmt, "source": str(source.resolve()),
                                     "signature": None, "inputs": str(Path(tmp) / "x.npz"),
                                     "output": str(Path(tmp) / "y.npz")})
        except fw.ConverterMissing:
            out["vs_source"] = {"note": fw.NOT_INSTALLED}
            return out
        with np.load(Path(tmp) / "y.npz", allow_pickle=False) as z:
            ref = [z[f"arr_{i}"] for i in range(len(z.files))]
    out["vs_source"] = {**fw.compare(ref, got), "framework": ans["framework"]}
    return out


def framework_python(fmt: str, explicit: str | None) -> str | None:
    """The frameworks Python when it has the source framework (for the parity check), else None."""
    import os
    import subprocess
    import sys

    from laser.importer import frameworks as fw

    python = explicit or os.environ.get(fw.ENV) or sys.executable
    module = fw.FRAMEWORKS[fw.CONVERTERS[fmt]]
    if not Path(python).is_file():
        return None
    probe = "import importlib.util as u, sys; sys.exit(0 if u.find_spec(sys.argv[1]) else 1)"
    done = subprocess.run([python, "-c", probe, module], capture_output=True, timeout=120)
    return None if done.returncode else python
