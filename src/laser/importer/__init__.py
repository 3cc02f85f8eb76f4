"""``laser import``: a model made elsewhere, as a laser artifact.

ONNX files are imported as ONNX (``to="onnx"``) or converted to PyTorch (``to="torch"``, through
onnx2torch) and validated against onnxruntime on example inputs; the parity figures go into the
lineage step. TensorFlow, Keras, TFLite and Paddle sources are recognised and refused with what to do
(their converters are not wired in yet).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from laser.artifact import Artifact, Step
from laser.errors import ConfigError, NotFoundError, ParityError
from laser.spec import ModelSpec, TensorSpec

TARGETS = ("torch", "onnx")
FACTORY = "laser.importer.onnx_torch:rebuild"
PARITY_ATOL = 1e-4  # max |torch - onnxruntime| accepted on the example inputs


def source_format(path: Path) -> str:
    """'onnx', 'savedmodel', 'keras', 'tflite' or 'paddle', read from the path."""
    if not path.exists():
        raise NotFoundError(f"{path} does not exist; give an .onnx file, a SavedModel directory, a .keras/.h5, "
                            "a .tflite or a Paddle .pdmodel/.json")
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        if any(path.glob("*.pdmodel")):
            return "paddle"
    suffix = path.suffix.lower()
    table = {".onnx": "onnx", ".keras": "keras", ".h5": "keras", ".tflite": "tflite", ".pdmodel": "paddle"}
    if suffix in table:
        return table[suffix]
    if suffix == ".json" and path.with_suffix(".pdiparams").is_file():
        return "paddle"
    raise ConfigError(f"cannot tell what {path} is; laser import reads .onnx, SavedModel directories, .keras/.h5, "
                      ".tflite and Paddle .pdmodel/.json (+ .pdiparams)")


def import_model(source: str | os.PathLike[str], *, to: str = "onnx", name: str | None = None,
                 input_shape: tuple[int, ...] | None = None, preprocessing: Mapping[str, Any] | None = None,
                 labels: tuple[str, ...] = ()) -> Artifact:
    """Import ``source``; ``input_shape`` (per sample) fixes the dynamic dims of the first input."""
    if to not in TARGETS:
        raise ConfigError(f"--to must be one of {TARGETS}, got {to!r}")
    path = Path(source)
    fmt = source_format(path)
    if fmt != "onnx":
        raise ConfigError(f"{path} is a {fmt} model; converting it needs tf2onnx / paddle2onnx, which this laser "
                          f"does not wire in yet. Convert it to ONNX first (`python -m tf2onnx.convert` or "
                          f"`paddle2onnx`), then run laser import on the .onnx file")
    from laser.loader import import_onnx

    art = import_onnx(path, name=name)
    spec = _fixed_spec(art.spec, input_shape)
    extra: dict[str, Any] = {"preprocessing": dict(preprocessing or {}), "labels": tuple(labels)}
    params = {"source": str(path), "framework": "onnx", "to": to}
    if to == "onnx":  # dynamic dims stay dynamic: onnxruntime runs any size
        return art.derive(Step("import", params={**params, "converter": None}), spec=spec, **extra)
    return _to_torch(path, art, spec, params, extra)


def _ort_runner(path: Path) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda feeds: sess.run(None, feeds)


def _torch_runner(module: Any, spec: ModelSpec) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    import torch

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.inference_mode():
            out = module(*[torch.from_numpy(feeds[t.name]) for t in spec.inputs])
        return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else [out])]
    return run


def _fixed_spec(spec: ModelSpec, input_shape: tuple[int, ...] | None) -> ModelSpec:
    """``input_shape`` (per sample) replaces the first input's dims after the batch."""
    if input_shape is None:
        return spec
    t = spec.inputs[0]
    if len(input_shape) != len(t.shape) - 1:
        raise ConfigError(f"--input-shape {','.join(map(str, input_shape))} has {len(input_shape)} dims; "
                          f"input {t.name!r} has {len(t.shape) - 1} per sample ({t.describe()})")
    first = TensorSpec(t.name, t.dtype, (t.shape[0], *input_shape), t.value_range)
    return ModelSpec(inputs=(first, *spec.inputs[1:]), outputs=spec.outputs, tolerance=spec.tolerance)


PROBE_SIZES = (16, 32, 64, 128, 224)


def _probe_dims(path: Path, spec: ModelSpec, run: Callable[[dict[str, np.ndarray]], list[np.ndarray]]) -> ModelSpec:
    """Fix dynamic dims other than the batch at the smallest size of PROBE_SIZES the model runs on with
    non-empty, finite outputs (pruning and parity checks need concrete example inputs); --input-shape
    chooses instead."""
    for size in PROBE_SIZES:
        dims = dict.fromkeys(spec.named_dims, size)
        try:
            outs = run(spec.example_inputs(batch=1, dims=dims))
        except Exception:  # onnxruntime and torch raise their own error types
            continue
        if not all(o.size and np.isfinite(o).all() for o in outs if o.dtype.kind == "f"):
            continue
        inputs = tuple(TensorSpec(t.name, t.dtype, tuple(dims.get(d, d) if isinstance(d, str) else d for d in t.shape),
                                  t.value_range) for t in spec.inputs)
        return ModelSpec(inputs=inputs, outputs=spec.outputs, tolerance=spec.tolerance)
    raise ConfigError(f"{path} has dynamic dims {spec.named_dims} and runs at none of the sizes {PROBE_SIZES}; "
                      "pass --input-shape (per sample, e.g. 3,48,192)")


def _to_torch(path: Path, art: Artifact, spec: ModelSpec, params: dict[str, Any], extra: dict[str, Any]) -> Artifact:
    import onnx

    from laser.artifact import tool_versions
    from laser.importer import onnx_torch

    prepared = onnx_torch.prepare(onnx.load(str(path)))
    module = onnx_torch.convert(prepared)
    graph = onnx_torch.encode(prepared)
    rebuilt = onnx_torch.rebuild(graph)  # what Artifact.module will build: it must take these weights
    rebuilt.load_state_dict(module.state_dict(), strict=True)
    if spec.named_dims:
        spec = _probe_dims(path, spec, _torch_runner(rebuilt, spec))
    parity = check_parity(path, rebuilt, spec)
    if parity["max_abs_diff"] > PARITY_ATOL:
        raise ParityError(f"the converted torch model differs from onnxruntime by up to {parity['max_abs_diff']:.3g} "
                          f"(> {PARITY_ATOL}) on example inputs; keep the model as ONNX (--to onnx)")
    versions = {**tool_versions(), "onnx2torch": _version("onnx2torch")}
    step = Step("import", params={**params, "converter": "onnx2torch"}, results={"parity": parity}, versions=versions)
    return Artifact.from_module(rebuilt, name=art.name, task=art.task, spec=spec, step=step,
                                architecture={"factory": FACTORY, "kwargs": {"graph": graph}}, **extra)


def check_parity(path: Path, module: Any, spec: ModelSpec, batch: int = 4) -> dict[str, Any]:
    """Torch eager vs onnxruntime on seeded example inputs (N(0,1) floats): max |diff| and top-1 agreement."""
    feeds = spec.example_inputs(batch=batch, seed=0)
    ref = _ort_runner(path)(feeds)
    outs = _torch_runner(module, spec)(feeds)
    diff = max(float(np.abs(a.astype(np.float64) - b).max()) for a, b in zip(ref, outs, strict=True))
    agree = (float((ref[0].argmax(-1) == outs[0].argmax(-1)).mean()) if ref[0].ndim == 2 else None)
    shapes = {t.name: list(feeds[t.name].shape) for t in spec.inputs}
    return {"max_abs_diff": diff, "top1_agreement": agree, "inputs": shapes,
            "method": f"torch eager vs onnxruntime CPU on {batch} seeded N(0,1) example inputs"}


def _version(pkg: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return "unknown"
