"""``laser.load(source)``: one loader for every kind of model source.

- a catalog name (``digits-cnn``, ``resnet18`` ...)
- a bundle directory (holds ``laser.json``)
- an ``.onnx`` file made elsewhere (spec read from the graph)
- a TorchScript ``.pt`` file (spec embedded by laser, or passed as ``spec=``)
- ``package.module:factory`` (+ ``weights=`` a .safetensors file or a state-dict checkpoint)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from laser.artifact import MANIFEST, Artifact, Step
from laser.errors import ArtifactError, ConfigError, NotFoundError
from laser.spec import ModelSpec, TensorSpec

TS_SPEC_FILE = "laser_spec.json"  # extra file laser embeds in TorchScript archives


def load(source: str | os.PathLike[str], *, weights: str | os.PathLike[str] | None = None,
         spec: ModelSpec | None = None, input_shape: tuple[int, ...] | None = None,
         random_weights: bool = False, task: str | None = None, name: str | None = None) -> Artifact:
    """Load a model from any supported source as an Artifact (see the module docstring)."""
    text = os.fspath(source)
    path = Path(text)
    if path.is_dir():
        if not (path / MANIFEST).is_file():
            raise ArtifactError(f"{path} is a directory but not a laser bundle ({MANIFEST} is missing)")
        return Artifact.open(path)
    if path.suffix == ".onnx":
        return import_onnx(_existing(path), name=name, task=task)
    if path.suffix in (".pt", ".pth", ".ts", ".jit") and path.exists():
        return import_torchscript(path, spec=spec, name=name, task=task)
    if ":" in text and not path.exists():
        return from_factory(text, weights=weights, spec=spec, input_shape=input_shape,
                            random_weights=random_weights, task=task, name=name)
    if path.exists():
        raise ConfigError(f"cannot tell what {path} is; give a bundle directory, a .onnx file, a TorchScript "
                          ".pt file, or 'package.module:factory' with weights=")
    if "/" in text or os.sep in text or text.startswith("."):  # a path, not a catalog name
        raise NotFoundError(f"{text} does not exist (no file or directory at that path); check the path, or "
                            "give a catalog name (see `laser hub list`)")
    from laser import hub

    return hub.load(text, weights=weights, random_weights=random_weights)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise NotFoundError(f"{path} does not exist")
    return path


def from_factory(target: str, *, weights: str | os.PathLike[str] | None, spec: ModelSpec | None,
                 input_shape: tuple[int, ...] | None, random_weights: bool, task: str | None,
                 name: str | None) -> Artifact:
    from laser.architecture import build_architecture, load_weights

    architecture = {"factory": target, "kwargs": {}}
    module = build_architecture(architecture).eval()
    if weights is not None:
        load_weights(module, Path(weights))
    elif not random_weights:
        raise ConfigError(f"{target} builds an architecture only; pass weights=FILE (.safetensors or a state "
                          "dict) or random_weights=True for structure-only work")
    spec = spec or getattr(module, "spec", None) or spec_from_module(module, input_shape, target)
    step = Step("load", params={"source": target, "weights": str(weights) if weights else "random"})
    return Artifact.from_module(module, name=name or target.rpartition(":")[2], spec=spec, step=step,
                                task=task or _guess_task(spec), architecture=architecture)


def spec_from_module(module: Any, input_shape: tuple[int, ...] | None, what: str) -> ModelSpec:
    """Spec of a single-input float model, from a per-sample input shape (outputs found by running it)."""
    import torch

    if not input_shape:
        raise ConfigError(f"cannot tell the input shape of {what}; pass input_shape=(C, H, W) "
                          "(per sample, without the batch dim) or spec=ModelSpec(...)")
    try:
        with torch.inference_mode():
            out = module(torch.zeros((2, *input_shape)))
    except Exception as exc:  # the module's own shape checks raise RuntimeError, ValueError, ...
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ConfigError(f"{what} does not run on inputs of per-sample shape {tuple(input_shape)} ({first}); "
                          "pass the shape it expects, e.g. input_shape=(3, 224, 224)") from None
    outs = out if isinstance(out, (tuple, list)) else [out]
    names = ["logits"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))]
    return ModelSpec(
        inputs=(TensorSpec("input", "float32", ("batch", *input_shape)),),
        outputs=tuple(TensorSpec(n, "float32", ("batch", *o.shape[1:])) for n, o in zip(names, outs)),
    )


def _guess_task(spec: ModelSpec) -> str:
    out = spec.outputs[0]
    return "classification" if len(spec.outputs) == 1 and len(out.shape) == 2 else "generic"


ONNX_DTYPES = {1: "float32", 10: "float16", 11: "float64", 7: "int64", 6: "int32", 3: "int8", 2: "uint8", 9: "bool",
               8: "string"}


def import_onnx(path: Path, *, name: str | None = None, task: str | None = None) -> Artifact:
    """An ONNX file made elsewhere, as an Artifact with its spec read from the graph."""
    from laser.errors import require

    onnx = require("onnx", "onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ArtifactError(f"{path} is not a readable ONNX model ({str(exc)[:200]})") from exc
    inits = {i.name for i in model.graph.initializer}

    def tensor(v: Any) -> TensorSpec:
        tt = v.type.tensor_type
        dims = []
        for i, d in enumerate(tt.shape.dim):
            known = d.HasField("dim_value") and d.dim_value >= 0  # Paddle's exporter writes -1 for "any"
            named = d.dim_param if d.dim_param not in ("", "?") else ("batch" if i == 0 else f"{v.name}_{i}")
            dims.append(d.dim_value if known else named)
        dtype = ONNX_DTYPES.get(tt.elem_type)
        if dtype is None:
            raise ArtifactError(f"{path}: tensor {v.name!r} has ONNX element type {tt.elem_type}, which laser "
                                f"does not handle; supported: {sorted(ONNX_DTYPES.values())}")
        return TensorSpec(v.name, dtype, tuple(dims))

    spec = ModelSpec(inputs=tuple(tensor(v) for v in model.graph.input if v.name not in inits),
                     outputs=tuple(tensor(v) for v in model.graph.output))
    files: dict[str, Path | tuple[Path, str]] = {"model.onnx": path}
    for init in model.graph.initializer:  # external data files travel with the model
        for entry in init.external_data:
            if entry.key == "location":
                files[entry.value] = (path.parent / entry.value, "external-data")
    step = Step("import", params={"source": path.name, "opset": max((o.version for o in model.opset_import), default=0),
                                  "producer": f"{model.producer_name} {model.producer_version}".strip()})
    return Artifact.from_files(files, name=name or path.stem, task=task or _guess_task(spec), format="onnx",
                               spec=spec, step=step)


def import_torchscript(path: Path, *, spec: ModelSpec | None = None, name: str | None = None,
                       task: str | None = None) -> Artifact:
    """A TorchScript archive. laser-exported ones carry their spec; others need ``spec=``."""
    import torch

    extra = {TS_SPEC_FILE: ""}
    try:
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except RuntimeError as exc:
        if "constants.pkl" in str(exc) or "PytorchStreamReader" in str(exc):
            from laser.architecture import read_state_dict

            read_state_dict(path)  # raises the unsafe-pickle explanation when it is a pickled module
            raise ConfigError(f"{path} is a weights file, not a TorchScript model; load it with "
                              "laser.load('package.module:factory', weights=PATH)") from exc
        raise ArtifactError(f"{path} is not a loadable TorchScript model ({str(exc).splitlines()[0][:200]})") from exc
    if spec is None and extra[TS_SPEC_FILE]:
        spec = ModelSpec.from_dict(json.loads(extra[TS_SPEC_FILE]))
    if spec is None:
        raise ConfigError(f"{path} carries no laser spec; pass spec=ModelSpec(...) (inputs/outputs with shapes)")
    step = Step("import", params={"source": str(path)})
    return Artifact.from_files({"model.pt": path}, name=name or path.stem, task=task or _guess_task(spec),
                               format="torchscript", spec=spec, step=step)
