"""Pruning: structured (whole channels, through torch-pruning's dependency graph) and unstructured
(magnitude, made permanent), in one or several steps with fine-tuning between them.

Structured pruning (``laser.compress.structured``) wraps torch-pruning (DepGraph): coupled layers -
residual adds, concatenations, depthwise and grouped convolutions, attention projections - are found by
tracing, never by hand, so they stay consistent. The pruned widths are recorded in the manifest as an architecture transform::

    {"target": "laser.compress.prune:reshape",
     "kwargs": {"inputs": [...], "out_channels": {"features.0.0": 16, ...}, "in_channels": {...}}}

``laser.architecture.build_architecture`` applies it after the factory and before the weights are
loaded, so a pruned bundle reloads (and exports) without any class that knows the pruned shapes.

Unstructured pruning zeroes individual weights. Dense runtimes (ONNX Runtime, OpenVINO, torch on CPU)
run zeros as fast as any other number: the model gets more compressible, not faster. laser says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from laser.artifact import Artifact, Step
from laser.compress.common import (
    PRUNABLE,
    finetune,
    head_layers,
    load_data,
    named,
    summary,
    top1,
    torch_module,
)
from laser.compress.sensitivity import choose_ratios
from laser.compress.structured import CRITERIA, prune_structured
from laser.compress.structured import reshape as reshape  # saved manifests name laser.compress.prune:reshape
from laser.errors import ConfigError
from laser.stages import Stage


class UnstructuredSparsityWarning(UserWarning):
    """Zeros in dense weights save no time on dense runtimes."""


@dataclass(frozen=True)
class Prune(Stage):
    """Remove channels (``structured=True``) or zero weights (``structured=False``).

    ``ratio`` is the fraction of channels (or weights) removed from every prunable layer; ``per_layer``
    overrides it for named layers (``{"features.1.0": 0.25}``); ``exclude`` names layers to keep whole
    (the classifier head is always kept: pruning it would change the output). With ``steps > 1`` the
    ratio is reached in equal steps, with ``finetune_epochs`` of training on ``data`` after each.
    With ``sensitivity=True`` per-layer ratios are chosen from a sensitivity analysis on ``data`` so the
    pruned model has the MACs of uniform pruning at ``ratio``, taken where accuracy suffers least.
    """

    op: ClassVar[str] = "prune"
    ratio: float = 0.5
    structured: bool = True
    criterion: str = "l1"
    round_to: int | None = 8
    per_layer: Mapping[str, float] | None = None
    exclude: tuple[str, ...] = ()
    global_pruning: bool = False
    steps: int = 1
    finetune_epochs: int = 0
    data: str | None = "digits"
    sensitivity: bool = False
    lr: float = 1e-3
    seed: int = 0
    progress: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude", tuple(self.exclude or ()))
        if not 0 <= self.ratio < 1:
            raise ConfigError(f"ratio must be in [0, 1) (the fraction of channels removed), got {self.ratio}; "
                              "try Prune(ratio=0.5)")
        for name, r in (self.per_layer or {}).items():
            if not 0 <= r < 1:
                raise ConfigError(f"per_layer ratio of {name!r} must be in [0, 1), got {r}")
        if self.ratio == 0 and not any((self.per_layer or {}).values()):
            raise ConfigError("ratio is 0 and no per_layer ratio is set: nothing would be pruned; "
                              "try Prune(ratio=0.3)")
        if self.criterion not in CRITERIA:
            raise ConfigError(f"unknown criterion {self.criterion!r}; use one of {CRITERIA}")
        if not self.structured and self.criterion not in ("l1", "l2"):
            raise ConfigError(f"unstructured pruning ranks single weights by magnitude (criterion 'l1' or "
                              f"'l2'), got {self.criterion!r}")
        if self.round_to is not None and self.round_to < 1:
            raise ConfigError(f"round_to must be >= 1 or None, got {self.round_to}")
        if self.steps < 1 or self.finetune_epochs < 0:
            raise ConfigError(f"steps must be >= 1 and finetune_epochs >= 0, got steps={self.steps}, "
                              f"finetune_epochs={self.finetune_epochs}")
        if self.sensitivity and not self.structured:
            raise ConfigError("sensitivity analysis picks per-layer channel ratios; use it with structured=True")
        if (self.finetune_epochs or self.sensitivity or self.criterion == "taylor") and not self.data:
            raise ConfigError("fine-tuning, sensitivity analysis and the taylor criterion need labelled data; "
                              "pass data='digits' (or another dataset name)")

    def apply(self, artifact: Artifact) -> Artifact:
        spec = artifact.spec
        module, example = torch_module(artifact, "prune")
        before = summary(module, spec)
        test = load_data(self.data, "test", spec, "accuracy", required=False)
        train = load_data(self.data, "train", spec, "fine-tuning and the taylor criterion",
                          required=self.finetune_epochs > 0 or self.criterion == "taylor")
        val = load_data(self.data, "val", spec, "fine-tuning", required=False)
        top1_before = top1(module, test)
        per_layer = dict(self.per_layer or {})
        results: dict[str, Any] = {}
        if self.sensitivity:
            analysis, per_layer = choose_ratios(module, spec, self)
            results["sensitivity"] = analysis.to_dict()

        def after_step(step: int) -> None:
            if self.finetune_epochs:
                finetune(module, train, val, self.finetune_epochs, self.lr, self.seed + step, self.progress)

        kwargs: dict[str, Any] = dict(per_layer=per_layer, exclude=self.exclude, global_pruning=self.global_pruning,
                      steps=self.steps, after_step=after_step)
        if self.structured:
            transform, results["layers"] = prune_structured(
                module, example, ratio=0.0 if self.sensitivity else self.ratio, criterion=self.criterion,
                round_to=self.round_to, grads=train, seed=self.seed, **kwargs)
        else:
            transform = None
            results["sparsity"] = prune_unstructured(module, example, ratio=self.ratio, **kwargs)
        after = summary(module, spec)
        results.update(
            params_before=before["params"], params_after=after["params"],
            nonzero_params_after=after["nonzero_params"],
            macs_before=before["macs"], macs_after=after["macs"], macs_ratio=after["macs"] / before["macs"],
            method="MACs = FLOPs / 2, counted by torch.utils.flop_counter at batch 1 (dense: zeros count); "
                   "top-1 measured with torch eager on the test split",
            top1_before=top1_before, top1_after=top1(module, test), accuracy_data=test.name if test else None,
        )
        params = {**self.params(), "per_layer": per_layer or None}
        return artifact.derive(Step("prune", params=params, results=results), module=module,
                             architecture=with_transform(artifact.manifest.architecture, transform))


def with_transform(architecture: Mapping[str, Any] | None, transform: Mapping[str, Any] | None):
    if architecture is None or transform is None:
        return architecture
    return {**architecture, "transforms": [*(architecture.get("transforms") or ()), dict(transform)]}


# -- unstructured ----------------------------------------------------------------------------
def prune_unstructured(module: nn.Module, example: list[torch.Tensor], *, ratio: float,
                       per_layer: Mapping[str, float], exclude: Sequence[str] = (), global_pruning: bool = False,
                       steps: int = 1, after_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Zero the smallest weights (per layer, or ranked globally), in steps; masks made permanent."""
    from torch.nn.utils import prune as tprune

    skip = {id(named(module, n, "exclude")) for n in exclude} | {id(m) for m in head_layers(module, example)}
    ratios = {id(named(module, n, "per_layer")): r for n, r in per_layer.items()}
    layers = [m for m in module.modules() if isinstance(m, PRUNABLE) and id(m) not in skip]
    # Single weights are ranked by |w| for both 'l1' and 'l2' (the norm of one number is its magnitude).
    ranked_globally = [m for m in layers if id(m) not in ratios] if global_pruning else []
    for step in range(1, steps + 1):
        def amount(r: float, step: int = step) -> float:
            # torch applies an amount to the weights still unpruned: step to the cumulative target r*step/N.
            return 1 - (1 - r * step / steps) / (1 - r * (step - 1) / steps)

        if ranked_globally and ratio > 0:
            tprune.global_unstructured([(m, "weight") for m in ranked_globally],
                                       pruning_method=tprune.L1Unstructured, amount=amount(ratio))
        for m in layers:
            r = ratios.get(id(m), 0.0 if global_pruning else ratio)
            if r > 0:
                tprune.l1_unstructured(m, "weight", amount=amount(r))
        if after_step:
            after_step(step - 1)
    for m in layers:
        if tprune.is_pruned(m):
            tprune.remove(m, "weight")
    zeros = sum(int((m.weight == 0).sum()) for m in layers)
    total = sum(m.weight.numel() for m in layers)
    all_params = sum(p.numel() for p in module.parameters())
    all_zeros = sum(int((p == 0).sum()) for p in module.parameters())
    warnings.warn(f"unstructured pruning zeroed {zeros:,} of {total:,} weights ({zeros / total:.1%}); dense "
                  "runtimes (ONNX Runtime, OpenVINO, torch on CPU) gain no speed from zeros: the model only "
                  "compresses better. Use structured=True to make it faster.", UnstructuredSparsityWarning,
                  stacklevel=3)
    return {"pruned_layers_sparsity": zeros / total, "model_sparsity": all_zeros / all_params,
            "zeros": zeros, "weights_in_pruned_layers": total,
            "note": "measured: fraction of exactly-zero weights; dense runtimes gain no speed from zeros"}
