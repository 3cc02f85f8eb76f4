"""Latency-aware width search: per-layer channel widths that meet a latency budget on a target backend
with the least accuracy lost (in the spirit of NetAdapt / AMC, on top of torch-pruning).

1. Measure the exported, unpruned model on the backend (p50 at ``batch_size``).
2. Sensitivity analysis: top-1 drop of each layer group pruned alone at each ratio (``sensitivity.py``).
3. Lookup table: the same trials exported and measured on the backend, so each (layer group, width)
   has a measured latency; its saving against (1) is the step's gain.
4. Greedy allocation: the step with the least top-1 drop per millisecond saved, until the (measured)
   latency of the whole pruned model is below the budget minus a noise margin.
5. Prune, fine-tune (distilling from the unpruned model by default), export, and measure again: the
   budget is checked on that final exported artifact, and a miss is an error, not a footnote.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from laser.artifact import Artifact, Step
from laser.compress.sensitivity import RATIOS
from laser.errors import BudgetError, ConfigError
from laser.stages import Stage

REPEATS = 3  # latency runs per measured configuration
_UNITS_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3}


def parse_ms(value: float | int | str) -> float:
    """``2``, ``"2ms"``, ``"500us"``, ``"0.002 s"`` -> milliseconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ms = float(value)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*([a-zµ]*)\s*", str(value))
        if not m or m.group(2) not in (*_UNITS_MS, ""):
            raise ConfigError(f"latency budget {value!r} is not a duration; write it like '2ms', '500us' or 0.8 "
                              f"(milliseconds); units: {list(_UNITS_MS)}")
        ms = float(m.group(1)) * _UNITS_MS[m.group(2) or "ms"]
    if not ms > 0:
        raise ConfigError(f"latency budget must be > 0, got {value!r}")
    return ms


@dataclass(frozen=True)
class WidthSearch(Stage):
    """Choose per-layer widths so the exported model's p50 latency on ``backend`` at ``batch_size``
    is at most ``latency_budget_ms``; prune, then fine-tune for ``finetune_epochs`` (with knowledge
    distillation from the unpruned model when ``distill``)."""

    op: ClassVar[str] = "search"
    latency_budget_ms: float | str = 2.0
    backend: str = "onnxruntime"
    data: str = "digits"
    batch_size: int = 1
    ratios: tuple[float, ...] = RATIOS
    criterion: str = "l1"
    round_to: int | None = 8
    exclude: tuple[str, ...] = ()
    finetune_epochs: int = 5
    distill: bool = True
    # The legacy (TorchScript-based) exporter: the lookup table takes dozens of exports and the dynamo
    # exporter is 10-25x slower to export; the final artifact is measured with the same exporter.
    exporter: str = "legacy"
    margin: float = 0.05  # aim this fraction under the budget: the final measurement is noisy too
    max_seconds: float = 0.6  # timing budget of each measured configuration (split over REPEATS runs)
    threads: int | None = None
    lr: float = 1e-3
    seed: int = 0
    progress: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        from laser.compress.prune import CRITERIA

        object.__setattr__(self, "latency_budget_ms", parse_ms(self.latency_budget_ms))
        object.__setattr__(self, "ratios", tuple(sorted({float(r) for r in self.ratios})))
        object.__setattr__(self, "exclude", tuple(self.exclude or ()))
        if not self.ratios or not all(0 < r < 1 for r in self.ratios):
            raise ConfigError(f"ratios must be in (0, 1), got {list(self.ratios)}; try (0.2, 0.4, 0.6, 0.8)")
        if self.criterion not in CRITERIA:
            raise ConfigError(f"unknown criterion {self.criterion!r}; use one of {CRITERIA}")
        if self.batch_size < 1 or self.finetune_epochs < 0 or not 0 <= self.margin < 0.5 or self.max_seconds <= 0:
            raise ConfigError(f"need batch_size >= 1, finetune_epochs >= 0, 0 <= margin < 0.5, max_seconds > 0; "
                              f"got {self.batch_size}, {self.finetune_epochs}, {self.margin}, {self.max_seconds}")
        if not self.data:
            raise ConfigError("the width search ranks layers by measured accuracy: pass data='digits' (or another)")

    def apply(self, artifact: Artifact) -> Artifact:
        from tqdm.auto import tqdm

        from laser.compress.common import (
            head_layers,
            load_data,
            named,
            summary,
            top1,
            torch_module,
        )
        from laser.compress.prune import prune_structured, with_transform
        from laser.compress.sensitivity import allocate, analyze, layer_groups, pruned_copy

        spec, budget = artifact.spec, float(self.latency_budget_ms)
        module, example = torch_module(artifact, "search")
        val = load_data(self.data, "val", spec, "the width search", required=True)
        train = load_data(self.data, "train", spec, "fine-tuning", required=self.finetune_epochs > 0)
        test = load_data(self.data, "test", spec, "accuracy", required=False)
        base = self._latency(artifact, module)
        results: dict[str, Any] = {"budget_ms": budget, "base_latency_ms": base, **self._method()}
        if base <= budget * (1 - self.margin):
            results.update(final_latency_ms=base, budget_met=True, per_layer={},
                           note="the unpruned model already meets the budget; nothing was pruned")
            return artifact.derive(Step("search", params=self.params(), results=results), module=module)

        opts: dict[str, Any] = dict(criterion=self.criterion, round_to=self.round_to, exclude=self.exclude,
                                    grads_data=val)
        ignored = [named(module, n, "exclude") for n in self.exclude] + head_layers(module, example)
        smallest = dict.fromkeys(layer_groups(module, example, ignored), self.ratios[-1])
        floor = self._latency(artifact, pruned_copy(module, example, smallest, **opts))
        if floor > budget * (1 - self.margin):
            raise BudgetError(f"cannot bring p50 latency (ms) from {base:.4g} to {budget * (1 - self.margin):.4g} "
                              f"(budget {budget:.4g} less the {self.margin:.0%} margin): every layer group pruned "
                              f"at {self.ratios[-1]} still measures {floor:.4g} ms on {self.backend} at batch "
                              f"{self.batch_size}; relax the budget or allow a larger ratio")
        results["smallest_latency_ms"] = floor
        sens = analyze(module, spec, val, ratios=self.ratios, criterion=self.criterion, round_to=self.round_to,
                       exclude=self.exclude, progress=self.progress)
        lut: dict[str, dict[str, float]] = {}
        savings: dict[str, list[float]] = {}
        for layer in tqdm(sens.layers, desc="latency table", unit="layer", disable=not self.progress):
            lats = [self._latency(artifact, pruned_copy(module, example, {layer: r}, **opts)) for r in sens.ratios]
            lut[layer] = {f"{r:g}: {w} ch": ms for r, w, ms in zip(sens.ratios, sens.widths[layer][1:], lats)}
            savings[layer] = lats  # turned into savings below, against a re-measured base
        # Load from other processes drifts over a search: measure the base again, keep the least.
        base = results["base_latency_ms"] = min(base, self._latency(artifact, module))
        savings = {layer: [base - ms for ms in lats] for layer, lats in savings.items()}

        def measured(per_layer: dict[str, float]) -> float:
            return self._latency(artifact, pruned_copy(module, example, per_layer, **opts))

        per_layer, _ = allocate(sens, savings, base, budget * (1 - self.margin), measured, "p50 latency (ms)")
        before = summary(module, spec)
        top1_before = top1(module, test)
        teacher = pruned_copy(module, example, {}) if self.distill else None
        transform, layers = prune_structured(module, example, ratio=0.0, per_layer=per_layer, criterion=self.criterion,
                                             round_to=self.round_to, exclude=self.exclude, grads=val)
        if self.finetune_epochs:
            self._finetune(module, teacher, train, val)
        final = self._latency(artifact, module, max_seconds=3 * self.max_seconds)
        after = summary(module, spec)
        results.update(
            final_latency_ms=final, budget_met=final <= budget, per_layer=per_layer, layers=layers,
            lookup_table_ms=lut, sensitivity=sens.to_dict(), macs_before=before["macs"], macs_after=after["macs"],
            params_before=before["params"], params_after=after["params"], top1_before=top1_before,
            top1_after=top1(module, test), accuracy_data=test.name if test else None)
        if final > budget:
            raise BudgetError(f"the searched model measures {final:.3f} ms p50 on {self.backend} (batch "
                              f"{self.batch_size}) after export, over the {budget:.3f} ms budget (it measured "
                              f"under {budget * (1 - self.margin):.3f} ms during the search: the machine is "
                              "noisy); raise margin= or the budget, or measure on a quieter machine")
        return artifact.derive(Step("search", params=self.params(), results=results), module=module,
                             architecture=with_transform(artifact.manifest.architecture, transform))

    # -- helpers ----------------------------------------------------------------------------
    def _method(self) -> dict[str, str]:
        return {"method": f"measured: least p50 of {REPEATS} runs of {self.backend} runner calls at batch "
                          f"{self.batch_size} on the model exported to ONNX ({self.exporter} exporter); top-1 "
                          "measured with torch eager"}

    def _latency(self, artifact: Artifact, module: nn.Module, max_seconds: float | None = None) -> float:
        """p50 (ms) of ``module`` exported to ONNX and run on the backend: measured, not estimated."""
        from laser.measure.latency import latency
        from laser.runtime import run

        trial = artifact.derive(Step("search-trial"), module=module, architecture=None)
        exported = _export(trial, self.exporter)
        options = {"threads": self.threads} if self.threads else {}
        seconds = (max_seconds or self.max_seconds) / REPEATS
        with run(exported, backend=self.backend, **options) as runner:
            # The least p50 of a few short runs: other processes only ever add time, never remove it.
            return min(float(latency(runner, batch_size=self.batch_size, warmup=3, min_iters=10,
                                     max_seconds=seconds).p50_ms) for _ in range(REPEATS))

    def _finetune(self, module: nn.Module, teacher: nn.Module | None, train: Any, val: Any) -> None:
        import torch

        from laser.compress.common import finetune
        from laser.compress.distill import kd_loss

        loss_fn = None
        if teacher is not None:
            teach = teacher.eval()

            def loss_fn(m: nn.Module, xs: Any, labels: Any) -> Any:
                with torch.no_grad():
                    t_logits = teach(*xs)
                return kd_loss(m(*xs), t_logits, labels)

        finetune(module, train, val, self.finetune_epochs, self.lr, self.seed, self.progress, loss_fn=loss_fn)


def _export(trial: Artifact, exporter: str) -> Artifact:
    """The trial exported to ONNX without parity checks (a timing probe: its numbers are not used)."""
    import logging

    from laser.export import Export

    log = logging.getLogger("laser.export")
    level = log.level
    log.setLevel(logging.ERROR)  # Export warns on every verify=False export; here it is deliberate
    try:
        return Export(to="onnx", exporter=exporter, verify=False)(trial)
    finally:
        log.setLevel(level)


def lookup_rows(results: Mapping[str, Any]) -> list[list[str]]:
    """The lookup table of a search step as printable rows: layer group, width, p50 (ms)."""
    return [[layer, width, f"{ms:.3f}"] for layer, widths in (results.get("lookup_table_ms") or {}).items()
            for width, ms in widths.items()]
