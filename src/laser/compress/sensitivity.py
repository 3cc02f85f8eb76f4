"""Sensitivity analysis: how much accuracy each prunable layer group loses at several pruning ratios,
and a greedy allocation of per-layer ratios that reaches a cost target (MACs, or latency in nas.py)
where accuracy suffers least.

A "layer" here is the root of a torch-pruning group: layers coupled by a residual add or a concatenation
are pruned together, so they are measured together, named by their first member.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from laser.errors import BudgetError, ConfigError, require
from laser.spec import ModelSpec

RATIOS = (0.2, 0.4, 0.6, 0.8)  # default grid of channel ratios tried per layer group


@dataclass
class Sensitivity:
    """top-1 (measured, torch eager, on ``samples`` of ``data``) and MACs (counted, batch 1) of the model
    with one layer group pruned at each ratio, every other layer whole."""

    data: str
    samples: int
    criterion: str
    ratios: list[float]
    base_top1: float
    base_macs: int
    top1: dict[str, list[float]]   # layer -> top-1 at each ratio
    macs: dict[str, list[int]]     # layer -> MACs of the whole model at each ratio
    widths: dict[str, list[int]]   # layer -> [channels before, channels kept at each ratio...]

    @property
    def layers(self) -> list[str]:
        return list(self.top1)

    def drops(self, layer: str) -> list[float]:
        """Top-1 lost (fraction, >= 0 means worse) at each ratio."""
        return [self.base_top1 - t for t in self.top1[layer]]

    def macs_saved(self, layer: str) -> list[float]:
        return [float(self.base_macs - m) for m in self.macs[layer]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Sensitivity:
        return cls(**dict(d))

    def table(self) -> str:
        from laser.text import table

        header = ["layer group", "channels", *(f"@{r:.0%}: drop (kept)" for r in self.ratios),
                  f"MACs saved @{self.ratios[-1]:.0%}"]
        rows = [[layer, self.widths[layer][0],
                 *(f"{100 * d:+.2f} pt ({k})" for d, k in zip(self.drops(layer), self.widths[layer][1:])),
                 f"{self.macs_saved(layer)[-1] / max(1, self.base_macs):.1%}"] for layer in self.layers]
        note = (f"top-1 drop in points, measured (torch eager) on {self.samples} {self.data} samples, base "
                f"{100 * self.base_top1:.2f} %; kept channels after rounding; MACs counted at batch 1; "
                "each group pruned alone")
        return table(rows, header) + "\n" + note

    def plot(self, path: str | Path) -> Path:
        require("matplotlib", "report")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for layer in self.layers:
            w = self.widths[layer]
            removed = [1 - k / w[0] for k in w[1:]]  # after rounding, not the requested ratio
            ax.plot([0, *removed], [0, *(100 * d for d in self.drops(layer))], marker="o", label=layer)
        ax.set_xlabel("fraction of channels removed from the layer group")
        ax.set_ylabel(f"top-1 drop (points, measured on {self.data})")
        ax.set_title(f"pruning sensitivity ({self.criterion} criterion, base top-1 {100 * self.base_top1:.1f} %)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2 if len(self.layers) > 8 else 1)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def _width(layer: nn.Module) -> int:
    return int(getattr(layer, "out_channels", getattr(layer, "out_features", 0)))


def layer_groups(module: nn.Module, example: list[torch.Tensor], ignored: Sequence[nn.Module]) -> list[str]:
    """Names of the root layer of every prunable group (coupled layers share one root)."""
    from laser.compress.common import PRUNABLE, build_graph

    dg = build_graph(module, example, ignored)
    skip = set(ignored)
    names = []
    for g in dg.get_all_groups(ignored_layers=list(skip), root_module_types=list(PRUNABLE)):
        root = g[0].dep.target.module
        if root not in skip:
            names.append(dg._module2name[root])
    return names


def pruned_copy(module: nn.Module, example: list[torch.Tensor], per_layer: Mapping[str, float], *,
                criterion: str = "l1", round_to: int | None = 8, exclude: Sequence[str] = (),
                grads_data: Any = None) -> nn.Module:
    """A copy of ``module`` with only the named layer groups pruned (one torch-pruning step)."""
    from laser.compress.structured import prune_structured

    trial = copy.deepcopy(module)
    if any(r > 0 for r in per_layer.values()):
        prune_structured(trial, example, ratio=0.0, per_layer=per_layer, criterion=criterion,
                         round_to=round_to, exclude=exclude, grads=grads_data)
    return trial


def analyze(module: nn.Module, spec: ModelSpec, data: Any, *, ratios: Sequence[float] = RATIOS,
            criterion: str = "l1", round_to: int | None = 8, exclude: Sequence[str] = (),
            samples: int = 500, progress: bool = False) -> Sensitivity:
    """Prune each layer group alone at each ratio and measure top-1 on ``samples`` of ``data``."""
    from tqdm.auto import tqdm

    from laser.compress.common import example_tensors, head_layers, named, summary
    from laser.compress.train import evaluate_top1

    if data is None or data.labels is None:
        raise ConfigError("sensitivity analysis measures accuracy: pass labelled data that fits the model")
    if not ratios or not all(0 < r < 1 for r in ratios):
        raise ConfigError(f"sensitivity ratios must be in (0, 1), got {list(ratios)}")
    ratios = sorted(set(float(r) for r in ratios))
    data = data.take(samples)
    example = example_tensors(spec)
    ignored = [named(module, n, "exclude") for n in exclude] + head_layers(module, example)
    layers = layer_groups(module, example, ignored)
    base = summary(module, spec)["macs"]
    result = Sensitivity(data=data.name, samples=len(data), criterion=criterion, ratios=ratios,
                         base_top1=evaluate_top1(module, data), base_macs=base, top1={}, macs={}, widths={})
    for layer in tqdm(layers, desc="sensitivity", unit="layer", disable=not progress):
        result.top1[layer], result.macs[layer] = [], []
        result.widths[layer] = [_width(module.get_submodule(layer))]
        for r in ratios:
            trial = pruned_copy(module, example, {layer: r}, criterion=criterion, round_to=round_to,
                                exclude=exclude, grads_data=data)
            result.top1[layer].append(evaluate_top1(trial, data))
            result.macs[layer].append(summary(trial, spec)["macs"])
            result.widths[layer].append(_width(trial.get_submodule(layer)))
    return result


def allocate(sens: Sensitivity, savings: Mapping[str, Sequence[float]], base: float, target: float,
             evaluate: Callable[[dict[str, float]], float], what: str, max_evals: int = 16,
             ) -> tuple[dict[str, float], float]:
    """Per-layer ratios that bring a cost (MACs, latency) from ``base`` to ``target`` or below, losing the
    least measured top-1.

    Greedy: step one layer group to its next ratio, always the step with the least added top-1 drop per
    unit of estimated saving (``savings[layer][i]``: the cost saved with that group alone at ratio i).
    Savings of different groups are not exactly additive, so whenever the estimate reaches the target the
    real cost is measured with ``evaluate(per_layer)`` and the estimate re-anchored to it."""
    level = dict.fromkeys(sens.layers, -1)  # index into sens.ratios; -1 = not pruned

    def at(values: Sequence[float], i: int) -> float:
        return 0.0 if i < 0 else float(values[i])

    def chosen() -> dict[str, float]:
        return {layer: sens.ratios[i] for layer, i in level.items() if i >= 0}

    estimate, value, evals = float(base), float(base), 0
    while True:
        if estimate <= target:
            value, evals = float(evaluate(chosen())), evals + 1
            if value <= target:
                return chosen(), value
            estimate = value
        best = None
        for layer in sens.layers:
            i, drops, save = level[layer], sens.drops(layer), savings[layer]
            for j in range(i + 1, len(sens.ratios)):  # the next ratio that saves anything
                gain = at(save, j) - at(save, i)
                if gain > 0:
                    cost = max(0.0, at(drops, j)) - max(0.0, at(drops, i))
                    key = (max(cost, 0.0) / gain, -gain)
                    if best is None or key < best[0]:
                        best = (key, layer, j, gain)
                    break
        if best is None or evals >= max_evals:
            raise BudgetError(
                f"cannot bring {what} from {base:.4g} to {target:.4g}: the most pruned allocation tried, "
                f"{chosen()}, gives {value:.4g} (largest ratio tried {sens.ratios[-1]}); relax the target")
        _, layer, j, gain = best
        level[layer], estimate = j, estimate - gain


def choose_ratios(module: nn.Module, spec: ModelSpec, stage: Any) -> tuple[Sensitivity, dict[str, float]]:
    """Per-layer ratios for ``Prune(sensitivity=True)``: the MACs of uniform pruning at ``stage.ratio``,
    spent where the measured accuracy drop is smallest."""
    from laser.compress.common import example_tensors, load_data, summary

    data = load_data(stage.data, "val", spec, "sensitivity analysis", required=True)
    example = example_tensors(spec)
    sens = analyze(module, spec, data, ratios=sorted({*RATIOS, stage.ratio} - {0.0}), criterion=stage.criterion,
                   round_to=stage.round_to, exclude=stage.exclude, progress=stage.progress)
    uniform = pruned_copy(module, example, dict.fromkeys(sens.layers, stage.ratio), criterion=stage.criterion,
                          round_to=stage.round_to, exclude=stage.exclude, grads_data=data)
    target = summary(uniform, spec)["macs"]
    savings = {layer: sens.macs_saved(layer) for layer in sens.layers}

    def macs(per_layer: dict[str, float]) -> float:
        trial = pruned_copy(module, example, per_layer, criterion=stage.criterion, round_to=stage.round_to,
                            exclude=stage.exclude, grads_data=data)
        return summary(trial, spec)["macs"]

    per_layer, _ = allocate(sens, savings, sens.base_macs, target, macs, "MACs")
    return sens, {**per_layer, **dict(stage.per_layer or {})}
