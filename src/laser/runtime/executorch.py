"""ExecuTorch backend: runs ``executorch`` bundles (a ``.pte`` program) through ExecuTorch's Python runtime.

The program's XNNPACK partitions run on XNNPACK's CPU kernels, the rest on ExecuTorch's portable kernels.
``threads`` sizes ExecuTorch's process-wide thread pool (the one XNNPACK uses).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from laser.artifact import Artifact
from laser.errors import BackendError, DependencyError
from laser.runtime.base import Runner


def _runtime() -> Any:
    logging.getLogger("torchao").setLevel(logging.ERROR)
    try:
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime
    except ImportError as exc:
        raise DependencyError(f"ExecuTorch is not installed ({exc}); install it with: pip install 'laser[edge]'") from exc
    return Runtime.get(), portable_lib


class ExecuTorchRunner(Runner):
    backend = "executorch"

    def __init__(self, artifact: Artifact, threads: int | None = None, device: str = "cpu"):
        super().__init__(artifact, threads, device)
        if artifact.format != "executorch":
            raise BackendError(f"the executorch backend runs executorch artifacts, {artifact.name!r} is "
                               f"{artifact.format}; export it first: laser export MODEL --to executorch")
        if device != "cpu":
            raise BackendError(f"the executorch backend runs on the CPU (XNNPACK); device {device!r} is not one; "
                               "use device='cpu'")
        runtime, lib = _runtime()
        if lib._threadpool_get_thread_count() != self.threads:
            lib._unsafe_reset_threadpool(self.threads)
        try:
            self.program = runtime.load_program(os.fspath(artifact.model_file))
            self.method = self.program.load_method("forward")
        except (RuntimeError, ValueError) as exc:
            raise BackendError(f"{artifact.model_file.name} of {artifact.name!r} is not a loadable ExecuTorch "
                               f"program ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})") from exc

    def _run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(inputs[t.name])) for t in self.spec.inputs]
        try:
            result = self.method.execute(args)
        except RuntimeError as exc:
            raise BackendError(f"ExecuTorch failed to run {self.artifact.name!r}: {str(exc)[:200]}") from exc
        return {n: np.array(v.numpy()) for n, v in zip(self.spec.output_names, result, strict=False)}

    def describe(self) -> dict[str, object]:
        from importlib.metadata import version

        return {**super().describe(), "executorch": version("executorch"), "delegate": "XNNPACK"}
