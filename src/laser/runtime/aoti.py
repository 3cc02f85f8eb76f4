"""AOTInductor backend: runs ``aoti`` artifacts (a ``.pt2`` package) with ``torch._inductor.aoti_load_package``.

The package holds a compiled shared library; no Python model code runs. The same package runs in C++
(``laser deploy cpp``)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from laser.artifact import Artifact
from laser.errors import BackendError
from laser.runtime.base import Runner
from laser.runtime.torch import outputs_to_numpy


class AOTIRunner(Runner):
    backend = "aoti"

    def __init__(self, artifact: Artifact, threads: int | None = None, device: str = "cpu"):
        import torch

        super().__init__(artifact, threads, device)
        if artifact.format != "aoti":
            raise BackendError(f"the aoti backend runs aoti artifacts, {artifact.name!r} is {artifact.format}; "
                               "export it first: laser export MODEL --to aoti")
        if device != "cpu":
            raise BackendError(f"{artifact.name!r} was compiled for the CPU; device {device!r} needs a package "
                               "compiled on that device")
        torch.set_num_threads(self.threads)
        try:
            self.package = torch._inductor.aoti_load_package(str(artifact.model_file))
        except Exception as exc:  # RuntimeError from the loader: a torn file, another torch's ABI
            raise BackendError(f"{artifact.model_file.name} of {artifact.name!r} is not a loadable AOTInductor "
                               f"package for torch {torch.__version__} ({str(exc).splitlines()[0][:200]}); "
                               "export it again with this torch") from exc

    def _run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(inputs[t.name])) for t in self.spec.inputs]
        with torch.inference_mode():
            result = self.package(*args)
        return outputs_to_numpy(result, self.spec.output_names)
