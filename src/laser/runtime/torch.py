"""PyTorch eager backend: inference mode, intra-op threads, optional channels-last."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from laser.artifact import Artifact
from laser.errors import BackendError
from laser.runtime.base import Runner


class TorchRunner(Runner):
    backend = "torch"

    def __init__(self, artifact: Artifact, threads: int | None = None, device: str = "cpu",
                 channels_last: bool = False, tf32: bool = False):
        import torch

        super().__init__(artifact, threads, device)
        if artifact.format != "torch":
            raise BackendError(f"the torch backend runs torch artifacts, {artifact.name!r} is {artifact.format}; "
                               "use backend='onnxruntime' or 'torchscript' for it")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"device {device!r} asked for, but torch sees no CUDA device; use device='cpu'")
        torch.set_num_threads(self.threads)
        if device.startswith("cuda"):
            # cuDNN convolutions default to TF32, which drifted ~1e-3 from FP32 on an H200: FP32 unless asked.
            # These switches are process-wide in torch.
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
        self.tf32 = tf32
        self.channels_last = channels_last
        self.module = artifact.module.eval().to(device)
        if channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        # A module with a ``stream`` generator (same arguments as forward) answers one call with several outputs
        self.decoupled = callable(getattr(self.module, "stream", None))

    def _run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            result = self.module(*self._args(inputs))
        return outputs_to_numpy(result, self.spec.output_names)

    def stream(self, inputs: Mapping[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        import torch

        if not self.decoupled:
            yield self(inputs)
            return
        self.spec.check_inputs(inputs)
        with torch.inference_mode():
            for result in getattr(self.module, "stream")(*self._args(inputs)):  # noqa: B009 (torch types it as a Tensor)
                yield outputs_to_numpy(result, self.spec.output_names)

    def _args(self, inputs: Mapping[str, np.ndarray]) -> list[Any]:
        import torch

        args = []
        for t in self.spec.inputs:
            arr = np.ascontiguousarray(inputs[t.name])
            x = torch.from_numpy(arr if arr.flags.writeable else arr.copy()).to(self.device)  # e.g. a request's bytes
            if self.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            args.append(x)
        return args

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "channels_last": self.channels_last, "tf32": self.tf32}


def call_module(module: Any, spec: Any, inputs: Mapping[str, np.ndarray], device: str) -> dict[str, np.ndarray]:
    """Run a torch callable (eager, scripted or compiled) on the spec's inputs, in inference mode."""
    import torch

    args = [torch.from_numpy(np.ascontiguousarray(inputs[t.name])).to(device) for t in spec.inputs]
    with torch.inference_mode():
        result = module(*args)
    return outputs_to_numpy(result, spec.output_names)


def outputs_to_numpy(result: object, names: list[str]) -> dict[str, np.ndarray]:
    """Map a module's return value (tensor, tuple/list, dict, or an object with .logits) to named arrays."""
    import torch

    if isinstance(result, torch.Tensor):
        values = [result]
    elif isinstance(result, Mapping):
        values = [result[n] for n in names] if all(n in result for n in names) else list(result.values())
    elif isinstance(result, (tuple, list)):
        values = list(result)
    elif hasattr(result, "logits"):  # transformers ModelOutput
        values = [result.logits]
    else:
        raise BackendError(f"cannot map a {type(result).__name__} model output to outputs {names}")
    if len(values) < len(names):
        raise BackendError(f"model returned {len(values)} output(s), spec names {len(names)}: {names}")
    return {n: v.detach().cpu().numpy() for n, v in zip(names, values)}
