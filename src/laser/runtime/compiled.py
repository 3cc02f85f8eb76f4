"""torch.compile backend: a torch artifact compiled by Inductor in this process (``mode="default"`` or
``"max-autotune"``). Compilation happens in the constructor, on Spec example inputs at batch 1, and its
time is kept apart from inference latency: ``runner.compile_seconds`` and ``describe()["compile_seconds"]``.
Later calls with a new shape recompile (counted in ``describe()["recompiles"]``)."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from laser.artifact import Artifact
from laser.errors import BackendError, ConfigError
from laser.runtime.base import Runner
from laser.runtime.torch import call_module

MODES = ("default", "max-autotune", "reduce-overhead", "max-autotune-no-cudagraphs")


class CompiledRunner(Runner):
    backend = "compiled"

    def __init__(self, artifact: Artifact, threads: int | None = None, device: str = "cpu", mode: str = "default",
                 dynamic: bool | None = None):
        import torch

        from laser.export.adapter import SpecAdapter
        from laser.export.aoti import compile_cache_dir

        super().__init__(artifact, threads, device)
        if artifact.format != "torch":
            raise BackendError(f"the compiled backend runs torch artifacts (torch.compile), {artifact.name!r} is "
                               f"{artifact.format}; load the PyTorch model, or use backend='aoti' on an aoti export")
        if mode not in MODES:
            raise ConfigError(f"mode={mode!r} is not a torch.compile mode; use one of {MODES}")
        if device != "cpu" and not torch.cuda.is_available():
            raise BackendError(f"device {device!r} asked for, but torch sees no CUDA device; use device='cpu'")
        compile_cache_dir()
        torch.set_num_threads(self.threads)
        self.mode, self.dynamic = mode, dynamic
        self.module = torch.compile(SpecAdapter(artifact.module.eval().to(device), self.spec), mode=mode,
                                    dynamic=dynamic)
        start = time.perf_counter()
        frames_before = _frames()
        try:
            self._run(self.spec.example_inputs(batch=1))
        except Exception as exc:  # torch._dynamo / inductor errors (BackendCompilerFailed ...)
            raise BackendError(f"torch.compile failed on {artifact.name!r}: {str(exc).splitlines()[0][:300]}; "
                               "run it on backend='torch' instead") from exc
        self.compile_seconds = round(time.perf_counter() - start, 3)
        self._frames_after_compile = _frames()
        self.compiled_frames = self._frames_after_compile - frames_before

    def _run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return call_module(self.module, self.spec, inputs, self.device)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "mode": self.mode, "compile_seconds": self.compile_seconds,
                "recompiles": max(0, _frames() - self._frames_after_compile)}


def _frames() -> int:
    """Frames Dynamo compiled so far in this process (its own counter)."""
    from torch._dynamo.utils import counters

    return int(sum(counters["stats"].get(k, 0) for k in ("unique_graphs",)))
