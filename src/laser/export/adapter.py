"""What every exporter traces: the model with the Spec's positional inputs and a flat tuple of outputs.

Models return a tensor, a tuple, a dict or a transformers ``ModelOutput``; exporters want tensors in a
known order. ``SpecAdapter`` calls the model with the inputs in Spec order and returns the outputs the
Spec names, in Spec order. The model sits under the attribute ``module``, so layer names seen by
exporters are ``module.<name>`` (``diff.py`` strips that prefix).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from laser.errors import ExportError
from laser.spec import ModelSpec

PREFIX = "module."


def select_outputs(result: Any, names: Sequence[str]) -> tuple[torch.Tensor, ...]:
    """The model's return value as a tuple of tensors in the order of ``names``."""
    if isinstance(result, torch.Tensor):
        values = [result]
    elif isinstance(result, Mapping):  # dicts and transformers ModelOutput
        values = [result[n] for n in names] if all(n in result for n in names) else list(result.values())
    elif isinstance(result, (tuple, list)):
        values = list(result)
    elif hasattr(result, "logits"):
        values = [result.logits]
    else:
        raise ExportError(f"the model returns a {type(result).__name__}; exporters need tensors, a tuple, "
                          f"a dict or an object with .logits for outputs {list(names)}")
    if len(values) < len(names):
        raise ExportError(f"the model returns {len(values)} output(s), its spec names {len(names)}: {list(names)}")
    return tuple(values[: len(names)])


class SpecAdapter(torch.nn.Module):
    """``forward(*inputs in Spec order) -> tuple(outputs in Spec order)``."""

    def __init__(self, module: torch.nn.Module, spec: ModelSpec):
        super().__init__()
        self.module = module
        self.output_names = tuple(spec.output_names)

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return select_outputs(self.module(*args), self.output_names)


def torch_args(feeds: Mapping[str, np.ndarray], spec: ModelSpec) -> tuple[torch.Tensor, ...]:
    """Example inputs as contiguous tensors in Spec order (the dynamo exporter cannot make a dim
    dynamic from a zero-stride or size-1 example)."""
    return tuple(torch.from_numpy(np.ascontiguousarray(feeds[t.name])).contiguous() for t in spec.inputs)


def fixed_batch_spec(spec: ModelSpec, batch: int = 1) -> ModelSpec:
    """The spec with every ``batch`` dim replaced by a fixed size (export without a dynamic batch); when the
    spec had a batch dim, ``fixed_batch`` records the size so measurement and serving keep to it."""
    from dataclasses import replace

    def fix(t: Any) -> Any:
        return replace(t, shape=tuple(batch if d == "batch" else d for d in t.shape))

    had_batch = any("batch" in t.shape for t in spec.inputs)
    return replace(spec, inputs=tuple(fix(t) for t in spec.inputs), outputs=tuple(fix(t) for t in spec.outputs),
                   fixed_batch=batch if had_batch else spec.fixed_batch)
