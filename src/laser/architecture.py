"""Rebuild torch modules from a recorded recipe, and move weights in and out as safetensors.

Part of the core: ``Artifact.module`` and ``Artifact.from_module`` use it.

An architecture recipe is plain data stored in the manifest::

    {"factory": "laser.models.digits:digits_cnn", "kwargs": {"classes": 10},
     "transforms": [{"target": "laser.compress.prune:reshape", "kwargs": {...}}]}

``factory`` builds the module; each transform (e.g. pruning's channel surgery) is applied in order, so
a pruned model can be rebuilt without its pruned class definition; then the weights are loaded.
Weights are never unpickled: safetensors, or ``torch.load(weights_only=True)`` for state dicts.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from laser.errors import ArtifactError, ConfigError, NotFoundError, UnsafeCheckpointError


def resolve(target: str) -> Callable[..., Any]:
    """``"package.module:function"`` -> the function."""
    if not isinstance(target, str) or target.count(":") != 1:
        raise ConfigError(f"factory must look like 'package.module:function', got {target!r}")
    mod_name, _, attr = target.partition(":")
    if mod_name.split(".")[0] == "torchvision":  # the CPU torch here needs the compat import first
        from laser.vision_compat import torchvision

        torchvision()
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise NotFoundError(f"cannot import {mod_name!r} for factory {target!r} ({exc}); "
                            "install the package that defines it or fix the name") from exc
    fn: Any = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise NotFoundError(f"{mod_name!r} has no attribute {attr!r} (factory {target!r})")
    if not callable(fn):
        raise ConfigError(f"factory {target!r} is not callable")
    return fn


def build_architecture(architecture: Mapping[str, Any] | None) -> torch.nn.Module:
    if not architecture or "factory" not in architecture:
        raise ArtifactError("this torch artifact records no architecture factory, so its module cannot be "
                            "rebuilt; create it with laser.load('package.module:factory', weights=...)")
    # Transforms trace the module through autograd: build outside any caller's inference_mode.
    with torch.inference_mode(False), torch.enable_grad():
        module = resolve(architecture["factory"])(**dict(architecture.get("kwargs") or {}))
        for t in architecture.get("transforms") or ():
            module = resolve(t["target"])(module, **dict(t.get("kwargs") or {}))
    if not isinstance(module, torch.nn.Module):
        raise ArtifactError(f"factory {architecture['factory']!r} returned {type(module).__name__}, "
                            "not a torch.nn.Module")
    return module


def build_module(architecture: Mapping[str, Any] | None, weights: Path | None) -> torch.nn.Module:
    module = build_architecture(architecture)
    if weights is not None:
        load_weights(module, weights)
    return module.eval()


def save_weights(module: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_model

    save_model(module, str(path))


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read weights from .safetensors, or a state dict saved with torch.save (read with
    weights_only=True). A pickled module or arbitrary object is refused, with the way out."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ArtifactError(f"{path} is not a readable safetensors file ({exc}); re-download or re-save it") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError / RuntimeError with long texts
        raise UnsafeCheckpointError(
            f"{path} can only be read by unpickling it, and unpickling a file can run arbitrary code "
            f"(torch.load with weights_only=True refused it: {str(exc).splitlines()[0][:160]}). "
            "If you trust the file, re-save only its weights: `torch.save(model.state_dict(), 'w.pt')` or "
            "`safetensors.torch.save_model(model, 'w.safetensors')`, then load it with "
            "laser.load('package.module:factory', weights='w.safetensors')"
        ) from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ArtifactError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors; "
                            "save `model.state_dict()` instead")
    return dict(obj)


def load_weights(module: torch.nn.Module, path: Path) -> None:
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_model

        try:
            missing, unexpected = load_model(module, str(path), strict=False)
        except Exception as exc:
            raise ArtifactError(f"weights in {path} do not fit the architecture: {str(exc)[:300]}") from exc
    else:
        try:
            missing, unexpected = module.load_state_dict(read_state_dict(path), strict=False)
        except RuntimeError as exc:
            raise ArtifactError(f"weights in {path} do not fit the architecture: {str(exc)[:300]}") from exc
    if missing or unexpected:
        raise ArtifactError(
            f"weights in {path} do not fit the architecture: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}; check the factory and its kwargs"
        )
