"""laser: take a trained PyTorch model to a fast, small, verified, served model, and prove it with five
measured numbers: Latency, Accuracy, Size, Energy, Robustness.

    >>> import laser
    >>> art = laser.load("digits-cnn")            # a catalog name, bundle, .onnx, .pt or package.module:factory
    >>> runner = laser.run(art)                   # a Runner on the best backend for its format
"""

from __future__ import annotations

__version__ = "0.1.0"

from laser.artifact import Artifact, Step
from laser.errors import LaserError
from laser.loader import load
from laser.runtime import run
from laser.spec import ModelSpec, TensorSpec, Tolerance

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
]
