"""Backends, one file each. ``laser.run(artifact, backend=...)`` returns a ready Runner.

BACKENDS maps a backend name to ``module:class`` (imported on use, so a missing optional runtime only
matters when asked for) and the artifact formats it runs. ``backend="auto"`` measures the backends
that run the artifact's format on this machine and returns the fastest (see ``runtime/auto.py``).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from laser.artifact import FORMATS, Artifact
from laser.errors import BackendError, ConfigError, NotFoundError
from laser.runtime.base import Runner, default_threads

BACKENDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "torch": ("laser.runtime.torch:TorchRunner", ("torch",)),
    "torchscript": ("laser.runtime.torchscript:TorchScriptRunner", ("torchscript",)),
    "aoti": ("laser.runtime.aoti:AOTIRunner", ("aoti",)),
    "compiled": ("laser.runtime.compiled:CompiledRunner", ("torch",)),
    "onnxruntime": ("laser.runtime.onnxruntime:OnnxRuntimeRunner", ("onnx", "ort")),
    "openvino": ("laser.runtime.openvino:OpenVINORunner", ("onnx", "openvino")),
    "executorch": ("laser.runtime.executorch:ExecuTorchRunner", ("executorch",)),
    "echo": ("laser.runtime.echo:EchoRunner", FORMATS),
    "browser": ("laser.runtime.browser:BrowserRunner", ("onnx",)),
    "ssh": ("laser.runtime.ssh:SSHRunner", ("onnx", "ort", "executorch")),
}
# Run only when asked for by name: echo computes nothing real; browser starts headless Chromium;
# compiled spends seconds to minutes compiling before its first answer; ssh runs on another machine (on=...).
BY_NAME_ONLY = ("echo", "browser", "compiled", "ssh")


def backends_for(artifact: Artifact) -> list[str]:
    """Backends that can run this artifact's format, for ``backend="auto"`` (BY_NAME_ONLY excluded)."""
    return [b for b, (_, formats) in BACKENDS.items() if artifact.format in formats and b not in BY_NAME_ONLY]


def runner_class(backend: str) -> type[Runner]:
    if backend not in BACKENDS:
        raise NotFoundError(f"unknown backend {backend!r}; use one of {sorted(BACKENDS)} or 'auto'")
    mod, _, cls = BACKENDS[backend][0].partition(":")
    return getattr(importlib.import_module(mod), cls)


def run(artifact: Artifact | str, backend: str = "auto", **options: Any) -> Runner:
    """A Runner for the artifact on the backend.

    ``backend="auto"`` times every backend that runs the artifact's format on example inputs and
    returns the fastest; ``runner.choice`` says what was picked and why. Options (``threads``,
    ``device``, ``providers`` ...) go to the backend; with 'auto', each candidate gets those it takes.
    """
    if isinstance(artifact, str):
        from laser.loader import load

        artifact = load(artifact)
    if backend == "auto":
        from laser.runtime.auto import choose

        def build(name: str) -> Runner:
            cls = runner_class(name)
            accepted = inspect.signature(cls.__init__).parameters
            return cls(artifact, **{k: v for k, v in options.items() if k in accepted})

        return choose(artifact, backends_for(artifact), build, options)
    cls = runner_class(backend)
    formats = BACKENDS[backend][1]
    if artifact.format not in formats:
        raise BackendError(f"backend {backend!r} runs {list(formats)} artifacts, {artifact.name!r} is "
                           f"{artifact.format}; export it first (laser export) or pick another backend")
    accepted = inspect.signature(cls.__init__).parameters
    unknown = sorted(k for k in options if k not in accepted)
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        raise ConfigError(f"backend {backend!r} takes no option(s) {unknown}; it takes "
                          f"{sorted(k for k in accepted if k not in ('self', 'artifact'))}")
    return cls(artifact, **options)


__all__ = ["BACKENDS", "BY_NAME_ONLY", "Runner", "backends_for", "default_threads", "run", "runner_class"]
