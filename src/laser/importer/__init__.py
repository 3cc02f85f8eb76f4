"""``laser import``: a model made elsewhere, as a laser artifact.

ONNX files are imported as ONNX (``to="onnx"``) or converted to PyTorch (``to="torch"``, through
onnx2torch) and validated against onnxruntime on example inputs; the parity figures go into the
lineage step. TensorFlow SavedModels, Keras files, TFLite flatbuffers and Paddle inference models are
converted to ONNX first (tf2onnx / paddle2onnx in the frameworks Python, see ``frameworks.py``) and
checked against the source framework's own outputs; ``to="torch"`` then goes on as for ONNX. Where those
converters cannot run (no frameworks Python) or fail, and no ``to`` was asked for, OpenVINO's frontends
convert SavedModel / TFLite / Paddle .pdmodel into an OpenVINO IR bundle instead (``openvino_ir.py``);
``converter=`` picks one explicitly. The lineage step records which converter ran and why.
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
CONVERTERS = ("openvino", "tf2onnx", "paddle2onnx")
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
        if any(path.glob("*.pdmodel")) or any(path.glob("*.pdiparams")):  # Paddle 3: .json + .pdiparams
            return "paddle"
    suffix = path.suffix.lower()
    table = {".onnx": "onnx", ".keras": "keras", ".h5": "keras", ".tflite": "tflite", ".pdmodel": "paddle"}
    if suffix in table:
        return table[suffix]
    if suffix == ".json" and path.with_suffix(".pdiparams").is_file():
        return "paddle"
    raise ConfigError(f"cannot tell what {path} is; laser import reads .onnx, SavedModel directories, .keras/.h5, "
                      ".tflite and Paddle .pdmodel/.json (+ .pdiparams)")


def import_model(source: str | os.PathLike[str], *, to: str | None = None, name: str | None = None,
                 input_shape: tuple[int, ...] | None = None, preprocessing: Mapping[str, Any] | None = None,
                 labels: tuple[str, ...] = (), signature: str | None = None, python: str | None = None,
                 converter: str | None = None) -> Artifact:
    """Import ``source``; ``input_shape`` (per sample) fixes the dynamic dims of the first input.
    ``signature`` picks a SavedModel signature; ``python`` runs the TF/Paddle converters (see frameworks.py).
    ``to`` None: ONNX, or an OpenVINO IR when only OpenVINO could convert; ``converter`` picks one of CONVERTERS."""
    if to is not None and to not in TARGETS:
        raise ConfigError(f"--to must be one of {TARGETS}, got {to!r}")
    if converter is not None and converter not in CONVERTERS:
        raise ConfigError(f"--converter must be one of {CONVERTERS}, got {converter!r}")
    path = Path(source)
    fmt = source_format(path)
    extra: dict[str, Any] = {"preprocessing": dict(preprocessing or {}), "labels": tuple(labels)}
    if fmt != "onnx":
        from laser.importer.fallback import from_framework

        return from_framework(path, fmt, to, converter, name, input_shape, extra, signature, python)
    if converter is not None:
        raise ConfigError("--converter picks the converter of a TF/TFLite/Paddle model; an ONNX file is read as it is")
    if signature is not None:
        raise ConfigError("--signature picks a TF SavedModel signature; an ONNX file has one graph")
    to = to or "onnx"
    from laser.loader import import_onnx

    art = import_onnx(path, name=name)
    spec = _fixed_spec(art.spec, input_shape)
    params = {"source": path.name, "framework": "onnx", "to": to}  # no local paths inside artifacts
    if to == "onnx":  # dynamic dims stay dynamic: onnxruntime runs any size
        return art.derive(Step("import", params={**params, "converter": None}), spec=spec, **extra)
    return _to_torch(path, art, spec, {**params, "converter": "onnx2torch"}, extra)


def via_onnx(path: Path, fmt: str, to: str, name: str | None, input_shape: tuple[int, ...] | None,
             extra: dict[str, Any], signature: str | None, py: str, why: str) -> Artifact:
    """TF / Keras / TFLite / Paddle -> ONNX (checked against the source framework) -> ONNX or torch bundle,
    with the Python ``py`` that has the converter."""
    from laser.artifact import tool_versions, workspace
    from laser.importer import frameworks as fw
    from laser.loader import import_onnx

    onnx_path = workspace("import") / "model.onnx"
    info = fw.convert(py, fmt, path, onnx_path, signature)
    art = import_onnx(onnx_path, name=name or path.stem)
    spec = _fixed_spec(art.spec, input_shape)
    run = _ort_runner(onnx_path)
    probed = probe_dims(path, spec, run) if spec.named_dims else spec  # concrete example inputs
    results = {"parity_vs_source": fw.parity(py, fmt, path, info["signature"], probed, run)}
    fw.fill_io(info, art.spec)
    fw.check(results["parity_vs_source"])
    params = {"source": path.name, "framework": fmt, "converter": info["converter"], "signature": info["signature"],
              "opset": fw.OPSET, "source_inputs": info["inputs"], "source_outputs": info["outputs"], "to": to,
              "converter_reason": why}
    versions = {**tool_versions(), **info["versions"]}
    if to == "onnx":
        step = Step("import", params=params, results=results, versions=versions)
        return Artifact.from_files({"model.onnx": onnx_path}, name=art.name, task=art.task, format="onnx", spec=spec,
                                   step=step, **extra)
    return _to_torch(onnx_path, art, probed, {**params, "converter": f"{info['converter']}+onnx2torch"}, extra,
                     results, versions)


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


def probe_dims(path: Path, spec: ModelSpec, run: Callable[[dict[str, np.ndarray]], list[np.ndarray]]) -> ModelSpec:
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


def _to_torch(path: Path, art: Artifact, spec: ModelSpec, params: dict[str, Any], extra: dict[str, Any],
              results: dict[str, Any] | None = None, versions: dict[str, str] | None = None) -> Artifact:
    import onnx

    from laser.artifact import tool_versions
    from laser.importer import onnx_torch

    prepared = onnx_torch.prepare(onnx.load(str(path)))
    module = onnx_torch.convert(prepared)
    graph = onnx_torch.encode(prepared)
    rebuilt = onnx_torch.rebuild(graph)  # what Artifact.module will build: it must take these weights
    rebuilt.load_state_dict(module.state_dict(), strict=True)
    if spec.named_dims:
        spec = probe_dims(path, spec, _torch_runner(rebuilt, spec))
    parity = check_parity(path, rebuilt, spec)
    if parity["max_abs_diff"] > PARITY_ATOL:
        raise ParityError(f"the converted torch model differs from onnxruntime by up to {parity['max_abs_diff']:.3g} "
                          f"(> {PARITY_ATOL}) on example inputs; keep the model as ONNX (--to onnx)")
    versions = {**(versions or tool_versions()), "onnx2torch": _version("onnx2torch")}
    params = {"converter": "onnx2torch", **params}
    step = Step("import", params=params, results={**(results or {}), "parity": parity}, versions=versions)
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
