"""Backends, one file each. ``laser.run(artifact, backend=...)`` returns a ready Runner.

BACKENDS maps a backend name to ``module:class`` (imported on use, so a missing optional runtime only
matters when asked for) and the artifact formats it runs.
"""

from __future__ import annotations

import importlib
from typing import Any

from laser.artifact import Artifact
from laser.errors import BackendError, NotFoundError
from laser.runtime.base import Runner, default_threads

BACKENDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "torch": ("laser.runtime.torch:TorchRunner", ("torch",)),
    "echo": ("laser.runtime.echo:EchoRunner", ("torch", "onnx", "torchscript", "ort")),
}


def backends_for(artifact: Artifact) -> list[str]:
    """Backends that can run this artifact's format (echo excluded: it computes nothing real)."""
    return [b for b, (_, formats) in BACKENDS.items() if artifact.format in formats and b != "echo"]


def run(artifact: Artifact | str, backend: str = "auto", **options: Any) -> Runner:
    """A Runner for the artifact on the backend ('auto': the first that can run its format)."""
    if isinstance(artifact, str):
        from laser.loader import load

        artifact = load(artifact)
    if backend == "auto":
        candidates = backends_for(artifact)
        if not candidates:
            raise BackendError(f"no backend runs {artifact.format} artifacts; known backends: {sorted(BACKENDS)}")
        backend = candidates[0]
    if backend not in BACKENDS:
        raise NotFoundError(f"unknown backend {backend!r}; use one of {sorted(BACKENDS)} or 'auto'")
    target, formats = BACKENDS[backend]
    if artifact.format not in formats:
        raise BackendError(f"backend {backend!r} runs {list(formats)} artifacts, {artifact.name!r} is "
                           f"{artifact.format}; export it first (laser export) or pick another backend")
    mod, _, cls = target.partition(":")
    return getattr(importlib.import_module(mod), cls)(artifact, **options)


__all__ = ["BACKENDS", "Runner", "backends_for", "default_threads", "run"]
