"""TorchScript backend: runs frozen ``torchscript`` artifacts (``torch.jit.load``) in inference mode.

TorchScript is deprecated upstream since PyTorch 2.11; laser keeps it as a legacy target.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

from laser.artifact import Artifact
from laser.errors import BackendError
from laser.runtime.base import Runner
from laser.runtime.torch import call_module


class TorchScriptRunner(Runner):
    backend = "torchscript"

    def __init__(self, artifact: Artifact, threads: int | None = None, device: str = "cpu",
                 allow_tf32: bool = False):
        import torch

        super().__init__(artifact, threads, device)
        self.allow_tf32 = allow_tf32
        if artifact.format != "torchscript":
            raise BackendError(f"the torchscript backend runs torchscript artifacts, {artifact.name!r} is "
                               f"{artifact.format}; export it first: laser export MODEL --to torchscript")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"device {device!r} asked for, but torch sees no CUDA device; use device='cpu'")
        torch.set_num_threads(self.threads)
        if device.startswith("cuda"):
            # PyTorch runs CUDA convolutions in TF32 by default: ~1e-3 errors that fail export parity.
            # FP32 unless asked; this switch is process-wide in torch.
            torch.backends.cudnn.allow_tf32 = allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = allow_tf32
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript deprecation: stated above
            try:
                self.module = torch.jit.load(str(artifact.model_file), map_location=device).eval()
            except RuntimeError as exc:
                raise BackendError(f"{artifact.model_file.name} of {artifact.name!r} is not a loadable "
                                   f"TorchScript archive ({str(exc).splitlines()[0][:200]})") from exc

    def _run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return call_module(self.module, self.spec, inputs, self.device)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), **({"allow_tf32": self.allow_tf32} if self.device.startswith("cuda") else {})}
