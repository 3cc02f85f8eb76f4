"""TensorFlow SavedModel / Keras / TFLite / Paddle -> ONNX, checked against the source framework itself.

The bundle holds ONNX: laser's backends, quantizers and ``--to torch`` read ONNX. OpenVINO's frontends
read SavedModel, TFLite and Paddle ``.pdmodel`` without the frameworks, but they give an OpenVINO model,
which cannot be written as ONNX; so the ONNX comes from the field's own converters, tf2onnx (TF, Keras,
TFLite) and paddle2onnx (Paddle); where they cannot run, ``fallback.py`` imports an OpenVINO IR instead. Both import their framework, and the frameworks pin protobuf/numpy
versions that conflict with laser's, so they run in a separate Python (``make frameworks-venv`` builds
``.venv-frameworks``): ``--python PATH``, else ``$LASER_FRAMEWORKS_PYTHON``, else laser's own Python.
There ``fwworker.py`` (standard library + numpy only) converts, reads the source's inputs/outputs, and
runs the source model on laser's example inputs; laser compares that with onnxruntime on the ONNX, and
with OpenVINO's own reading of the source where OpenVINO reads the format (an independent converter).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from laser.errors import ConfigError, DependencyError, ParityError
from laser.spec import ModelSpec

WORKER = Path(__file__).with_name("fwworker.py")
ENV = "LASER_FRAMEWORKS_PYTHON"
CONVERTERS = {"savedmodel": "tf2onnx", "keras": "tf2onnx", "tflite": "tf2onnx", "paddle": "paddle2onnx"}
FRAMEWORKS = {"tf2onnx": "tensorflow", "paddle2onnx": "paddle"}  # module each converter imports
PIP = {"tf2onnx": "tensorflow-cpu==2.21.0 tf2onnx==1.17.0", "paddle2onnx": "paddlepaddle==3.3.1 paddle2onnx==2.1.0"}
OPSET = 17
PARITY_ATOL = 1e-4  # max |onnxruntime - source framework| accepted on the example inputs
NOT_INSTALLED = "source framework not installed: parity vs source not checked"


class ConverterMissing(DependencyError):
    """The converter is not importable by the frameworks Python: a set-up problem, exit code 2."""

    exit_code = 2


def python_for(fmt: str, explicit: str | None = None) -> str:
    """The Python that runs ``fmt``'s converter; fails with the install line when it lacks it."""
    python = explicit or os.environ.get(ENV) or sys.executable
    converter = CONVERTERS[fmt]
    where = "--python" if explicit else (f"${ENV}" if os.environ.get(ENV) else "laser's Python")
    if not Path(python).is_file():
        raise ConfigError(f"{where} {python} does not exist; give the Python of a venv with {converter} "
                          "(make frameworks-venv builds .venv-frameworks)")
    probe = "import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) for m in sys.argv[1:]) else 1)"
    done = subprocess.run([python, "-c", probe, converter, FRAMEWORKS[converter]], capture_output=True, timeout=120)
    if done.returncode:
        raise ConverterMissing(f"{converter} and {FRAMEWORKS[converter]} are not importable by {where} ({python}); "
                              f"install them there with `{python} -m pip install {PIP[converter]}`, or point "
                              f"--python / ${ENV} at a Python that has them (make frameworks-venv)")
    return python


def worker(python: str, request: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
    """One fwworker.py request in ``python``; its error answers become one-line laser errors."""
    with tempfile.TemporaryDirectory(prefix="laser-fw-") as tmp:
        req = Path(tmp) / "request.json"
        req.write_text(json.dumps(request))
        try:
            done = subprocess.run([python, str(WORKER), str(req)], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise ConfigError(f"the {request['format']} converter ran past {timeout:.0f} s on {request['source']}") from exc
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    name = Path(request["source"]).name
    if not lines and (done.returncode < 0 or done.returncode in (134, 139)):  # TFLite segfaults on a truncated file
        raise ConfigError(f"{request['format']} crashed reading {name} (exit {done.returncode}): the file is "
                          "truncated or corrupt; re-export it")
    if not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        raise ConfigError(f"the frameworks Python {python} failed on {name}: {tail}")
    answer: dict[str, Any] = json.loads(lines[-1])
    if "error" not in answer:
        return answer
    kind, message, ops = answer["error"], answer["message"], answer.get("ops") or []
    if kind == "unsupported":
        raise ConfigError(f"{name}: {message}; unsupported ops: {', '.join(ops)}")
    if kind == "corrupt":
        raise ConfigError(f"{name} is not a readable {request['format']} model ({message}); re-export it")
    if kind == "missing":
        raise ConverterMissing(f"the frameworks Python {python} lacks a module ({message}); install "
                              f"{PIP[CONVERTERS[request['format']]]} there")
    raise ConfigError(f"{name}: {message}")


def convert(python: str, fmt: str, source: Path, out: Path, signature: str | None) -> dict[str, Any]:
    """Convert ``source`` to ONNX at ``out``; the source's inputs/outputs, converter and versions."""
    if fmt == "tflite" and source.read_bytes()[4:8] != b"TFL3":
        raise ConfigError(f"{source.name} is not a TFLite flatbuffer (no 'TFL3' identifier); re-export it")
    info = worker(python, {"op": "convert", "format": fmt, "source": str(source.resolve()), "output": str(out),
                           "signature": signature, "opset": OPSET})
    name_batch_dims(out)
    return info


def name_batch_dims(path: Path) -> None:
    """A dynamic first dim of each graph input/output is called 'batch' (tf2onnx writes 'unk__20',
    paddle2onnx 'DynamicDimension.0'), which is what laser's spec calls the batch dim."""
    import onnx

    model = onnx.load(str(path))
    for v in (*model.graph.input, *model.graph.output):
        dims = v.type.tensor_type.shape.dim
        if dims and not (dims[0].HasField("dim_value") and dims[0].dim_value > 0):
            dims[0].dim_param = "batch"
    onnx.save(model, str(path))


def fill_io(info: dict[str, Any], spec: ModelSpec) -> None:
    """Source tensors the framework describes by name only (Paddle's predictor) take the converted graph's
    dtype and dims (None = dynamic), marked ``"from": "onnx"``."""
    for side, tensors in (("inputs", spec.inputs), ("outputs", spec.outputs)):
        for t, src in zip(tensors, info[side], strict=False):
            if src.get("shape") is None:
                src.update(dtype=t.dtype, shape=[d if isinstance(d, int) else None for d in t.shape], **{"from": "onnx"})


Run = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


def parity(python: str, fmt: str, source: Path, signature: str | None, spec: ModelSpec, onnx_run: Run,
           batch: int = 4) -> dict[str, Any]:
    """onnxruntime on the ONNX vs the source framework, and vs OpenVINO's reading of the source."""
    feeds = spec.example_inputs(batch=batch, seed=0)
    got = onnx_run(feeds)
    out: dict[str, Any] = {"inputs": {t.name: list(feeds[t.name].shape) for t in spec.inputs},
                           "method": f"onnxruntime CPU on the converted ONNX vs the reference, {batch} seeded "
                                     "N(0,1) example inputs; max |diff| over all outputs"}
    with tempfile.TemporaryDirectory(prefix="laser-fw-") as tmp:
        np.savez(Path(tmp) / "x.npz", *[feeds[t.name] for t in spec.inputs])
        try:
            ans = worker(python, {"op": "reference", "format": fmt, "source": str(source.resolve()),
                                  "signature": signature, "inputs": str(Path(tmp) / "x.npz"),
                                  "output": str(Path(tmp) / "y.npz")})
        except ConverterMissing:
            ans = None
        ref = None
        if ans is None:
            out["vs_source"] = {"note": NOT_INSTALLED}
        else:
            with np.load(Path(tmp) / "y.npz", allow_pickle=False) as z:
                ref = [z[f"arr_{i}"] for i in range(len(z.files))]
            out["vs_source"] = {**compare(ref, got), "framework": ans["framework"]}
    out["vs_openvino"], ov_out = _vs_openvino(fmt, source, signature, feeds, spec, got)
    if ref is not None and ov_out is not None:  # how faithful the other converter is, for comparison
        out["openvino_vs_source"] = compare(ref, ov_out)
    return out


def compare(ref: list[np.ndarray], got: list[np.ndarray]) -> dict[str, Any]:
    if len(ref) != len(got):
        raise ParityError(f"the reference gives {len(ref)} outputs, the converted ONNX {len(got)}")
    diff = max(float(np.abs(np.asarray(a, np.float64) - b).max()) for a, b in zip(ref, got, strict=True))
    agree = float((ref[0].argmax(-1) == got[0].argmax(-1)).mean()) if ref[0].ndim == 2 else None
    return {"max_abs_diff": diff, "top1_agreement": agree}


def _vs_openvino(fmt: str, source: Path, signature: str | None, feeds: dict[str, np.ndarray], spec: ModelSpec,
                 got: list[np.ndarray]) -> tuple[dict[str, Any], list[np.ndarray] | None]:
    """OpenVINO's frontend on the source file itself (f32), where it reads the format: the comparison
    with the ONNX outputs, and OpenVINO's outputs."""
    if signature not in (None, "serving_default"):
        return {"note": f"OpenVINO reads a SavedModel's default signature only, not {signature!r}"}, None
    if fmt == "keras" or (fmt == "paddle" and not _pdmodel(source)):
        return {"note": f"OpenVINO does not read {'Keras files' if fmt == 'keras' else 'Paddle .json programs'}"}, None
    try:
        import openvino as ov
    except ImportError:
        return {"note": "openvino not installed (pip install 'laser[openvino]')"}, None
    try:
        model = ov.convert_model(str(_pdmodel(source) or source))
        compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        res = compiled([feeds[t.name] for t in spec.inputs])
        ref = [res[o] for o in compiled.outputs]
    except Exception as exc:  # OpenVINO raises RuntimeError/OpConversionFailure with long reports
        return {"note": f"OpenVINO could not run it: {str(exc).strip().splitlines()[0][:200]}"}, None
    return {**compare(ref, got), "openvino": ov.__version__.split("-")[0]}, ref


def _pdmodel(source: Path) -> Path | None:
    if source.is_dir():
        found = sorted(source.glob("*.pdmodel"))
        return found[0] if found else None
    return source if source.suffix == ".pdmodel" else None


def check(results: dict[str, Any]) -> None:
    src = results["vs_source"]
    if "max_abs_diff" in src and src["max_abs_diff"] > PARITY_ATOL:
        raise ParityError(f"the converted ONNX differs from the source framework by up to {src['max_abs_diff']:.3g} "
                          f"(> {PARITY_ATOL}) on example inputs; the converter mistranslated an op")
