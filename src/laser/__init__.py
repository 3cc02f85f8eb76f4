"""laser: take a trained PyTorch model to a fast, small, verified, served model, and prove it with five
measured numbers: Latency, Accuracy, Size, Energy, Robustness.

    >>> import laser
    >>> art = laser.load("digits-cnn")            # a catalog name, bundle, .onnx, .pt or package.module:factory
    >>> runner = laser.run(art)                   # a Runner on the best backend for its format

Heavy parts are imported on first use: ``import laser`` stays fast and needs only the core deps.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from laser.artifact import Artifact, Step
from laser.errors import LaserError
from laser.loader import load
from laser.runtime import run
from laser.spec import ModelSpec, TensorSpec, Tolerance

# Public names imported on first use: name -> "module:attribute".
_LAZY: dict[str, str] = {
    "hub": "laser.hub:",
    "pipeline": "laser.hub.pipelines:pipeline",
    "data": "laser.data:",
    "load_recipe": "laser.stages:load_recipe",
    "save_recipe": "laser.stages:save_recipe",
    "export": "laser.export:export",
    "Export": "laser.export:Export",
    # the package, callable as laser.measure(...) (a function here would shadow laser.measure.<module>)
    "measure": "laser.measure:",
    "Report": "laser.measure.report:Report",
    # the function; the laser.serve package is callable too (see laser/serve/__init__.py)
    "serve": "laser.serve:serve",
    # the package, callable as laser.web(artifact, out_dir) (see laser/web/__init__.py)
    "web": "laser.web:",
    "Prune": "laser.compress.prune:Prune",
    "Distill": "laser.compress.distill:Distill",
    "WidthSearch": "laser.compress.nas:WidthSearch",
    "Quantize": "laser.compress.quantize:Quantize",
    "Precision": "laser.runtime.precision:Precision",
    "QAT": "laser.compress.qat:QAT",
    "optimize": "laser.optimize:optimize",
    "doctor": "laser.doctor:doctor",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'laser' has no attribute {name!r}")
    mod, _, attr = _LAZY[name].partition(":")
    module = importlib.import_module(mod)
    value = getattr(module, attr) if attr else module
    globals()[name] = value
    return value


__all__ = [
    "Artifact",
    "LaserError",
    "ModelSpec",
    "Step",
    "TensorSpec",
    "Tolerance",
    "__version__",
    "load",
    "run",
    *_LAZY,
]
