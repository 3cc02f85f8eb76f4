"""Structured pruning through torch-pruning (DepGraph), and the architecture transform that replays it.

``prune_structured`` removes whole channels in place and returns the ``reshape`` transform recorded in
the manifest; ``reshape`` shrinks a freshly built module to the recorded widths when a bundle is
rebuilt. Saved bundles name the transform ``laser.compress.prune:reshape``, so ``laser.compress.prune``
re-exports it under that name. Both ``Prune`` and the sensitivity analysis prune through this module.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from laser.compress.common import (
    PRUNABLE,
    check_traced,
    head_layers,
    named,
    output_shapes,
    taylor_gradients,
    untraceable,
)
from laser.errors import ArtifactError, ConfigError, require

RESHAPE = "laser.compress.prune:reshape"  # the transform's name in saved manifests: never change it


def _importance(criterion: str) -> Any:
    tp = require("torch_pruning", "compress", "torch-pruning")
    imp = tp.pruner.importance
    table: dict[str, Callable[[], Any]] = {
        "l1": lambda: imp.MagnitudeImportance(p=1),   # sum |w| over the coupled group, per channel
        "l2": lambda: imp.MagnitudeImportance(p=2),
        "bn": lambda: imp.BNScaleImportance(),        # |gamma| of the BatchNorm after the channel
        "taylor": lambda: imp.TaylorImportance(),     # |w * dL/dw|: needs gradients from labelled data
    }
    return table[criterion]()


CRITERIA = ("l1", "l2", "bn", "taylor")


def prune_structured(module: nn.Module, example: list[torch.Tensor], *, ratio: float,
                     per_layer: Mapping[str, float], criterion: str = "l1", round_to: int | None = 8,
                     exclude: Sequence[str] = (), global_pruning: bool = False, steps: int = 1,
                     grads: Any = None, seed: int = 0, after_step: Callable[[int], None] | None = None,
                     ) -> tuple[dict | None, dict]:
    """Prune ``module`` in place through torch-pruning; return (the reshape transform for the manifest,
    {layer: [channels before, after]}). ``grads`` (labelled data) feeds the taylor criterion;
    ``after_step(i)`` runs after each of the ``steps`` (fine-tuning)."""
    tp = require("torch_pruning", "compress", "torch-pruning")
    ignored = [named(module, n, "exclude") for n in exclude] + head_layers(module, example)
    ratio_dict = {named(module, n, "per_layer"): r for n, r in per_layer.items() if r > 0}
    if round_to and not global_pruning:
        ratio_dict = keep_one_multiple(module, ratio_dict, ratio, round_to, set(ignored))
    if criterion == "taylor" and grads is None:
        raise ConfigError("the taylor criterion needs labelled data for gradients; pass data=... or use 'l1'")
    shapes_before = output_shapes(module, example)
    pristine = copy.deepcopy(module)  # to check that the recorded transform rebuilds the pruned shapes
    try:
        with torch.enable_grad():  # the trace follows autograd; callers may be under no_grad
            pruner = tp.pruner.MetaPruner(
                module, example, importance=_importance(criterion), pruning_ratio=ratio,
                pruning_ratio_dict=ratio_dict or None, ignored_layers=ignored, round_to=round_to,
                global_pruning=global_pruning, iterative_steps=steps, max_pruning_ratio=0.95)
    except Exception as exc:  # torch-pruning fails inside tracing with TypeError/RuntimeError/...
        raise ConfigError(untraceable(module, f"{type(exc).__name__}: {str(exc)[:200]}")) from exc
    check_traced(module, pruner.DG, ignored, example)
    widths = channels(pruner.DG)
    for step in range(steps):
        if criterion == "taylor":
            taylor_gradients(module, grads, seed + step)
        pruner.step()
        module.zero_grad(set_to_none=True)
        if after_step:
            after_step(step)
    module.eval()
    try:
        shapes_after = output_shapes(module, example)
    except Exception as exc:
        raise ConfigError(
            f"the pruned {type(module).__name__} no longer runs ({type(exc).__name__}: {str(exc)[:160]}): its "
            "forward keeps a width torch-pruning cannot see (an attribute such as ViT's hidden_dim, or a "
            "hard-coded reshape). Exclude the layers of that width (exclude=[...]) or use structured=False"
        ) from exc
    if shapes_after != shapes_before:
        raise ConfigError(f"pruning changed the model's output shapes {shapes_before} -> {shapes_after}; "
                          "add the layer producing that output to exclude=[...]")
    new = channels(pruner.DG)
    out = {n: c for n, c in new["out"].items() if c != widths["out"][n]}
    inn = {n: c for n, c in new["in"].items() if c != widths["in"][n]}
    layers = {n: [widths["out"][n], c] for n, c in out.items() if isinstance(module.get_submodule(n), PRUNABLE)}
    if not out and not inn:
        return None, layers
    inputs = [{"shape": list(x.shape), "dtype": str(x.dtype).removeprefix("torch.")} for x in example]
    kwargs: dict[str, Any] = {"inputs": inputs, "out_channels": out, "in_channels": inn}
    try:
        same = shapes(reshape(pristine, **kwargs)) == shapes(module)
    except ArtifactError:
        same = False
    if not same:  # channel counts are ambiguous for this graph: record torch-pruning's exact history
        kwargs = {"inputs": inputs, "history": [[n, bool(o), [int(i) for i in idx]]
                                                for n, o, idx in pruner.pruning_history()]}
    return {"target": RESHAPE, "kwargs": kwargs}, layers


def shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def keep_one_multiple(module: nn.Module, ratio_dict: dict[nn.Module, float], ratio: float, round_to: int,
                      ignored: set[nn.Module]) -> dict[nn.Module, float]:
    """Cap ratios so every layer keeps at least ``round_to`` channels. (torch-pruning rounds the kept
    count down to a multiple of round_to; from 32 channels at 80 % that is 0, and the layer silently
    stays whole.) The cap keeps int(C * (1 - r)) == round_to."""
    out = dict(ratio_dict)
    for m in module.modules():
        width = getattr(m, "out_channels", getattr(m, "out_features", None))
        if not isinstance(m, PRUNABLE) or m in ignored or width is None or width <= round_to:
            continue
        r = out.get(m, ratio)
        if r > 0 and int(width * (1 - r)) < round_to:
            out[m] = 1 - (round_to + 0.5) / width
    return out


def channels(dg: Any) -> dict[str, dict[str, int]]:
    """Out/in channel counts of every module the dependency graph can prune, by qualified name."""
    out, inn = {}, {}
    for m in dg.module2node:
        name = dg._module2name.get(m)
        if not name or not isinstance(m, nn.Module) or dg.ops.module2type(m) not in dg.REGISTERED_PRUNERS:
            continue
        o, i = dg.get_out_channels(m), dg.get_in_channels(m)
        if o is not None:
            out[name] = int(o)
        if i is not None:
            inn[name] = int(i)
    return {"out": out, "in": inn}


def reshape(module: nn.Module, *, inputs: Sequence[Mapping[str, Any]], out_channels: Mapping[str, int] | None = None,
            in_channels: Mapping[str, int] | None = None, history: Sequence[Sequence[Any]] | None = None,
            ) -> nn.Module:
    """Architecture transform: shrink a freshly built ``module`` to the recorded pruned shapes.

    With channel counts, trailing channels are removed through the dependency graph (coupled layers
    follow; which channels go does not matter, the pruned weights are loaded right after). With
    ``history`` (torch-pruning's [layer, out?, indices] records), the exact prunings are replayed."""
    tp = require("torch_pruning", "compress", "torch-pruning")
    module.eval()
    example = [torch.zeros(x["shape"], dtype=getattr(torch, x["dtype"])) for x in inputs]
    with torch.enable_grad():  # the trace follows autograd; callers may be under no_grad/inference_mode
        dg = tp.DependencyGraph().build_dependency(module, example_inputs=example)
    if history is not None:
        for name, is_out, idxs in history:
            layer = named(module, name, "the recorded pruning history")
            pruner = dg.get_pruner_of_module(layer)
            fn = pruner.prune_out_channels if is_out else pruner.prune_in_channels
            dg.get_pruning_group(layer, fn, idxs=list(idxs)).prune(record_history=False)
        return module
    out_channels, in_channels = dict(out_channels or {}), dict(in_channels or {})
    # Conv/Linear outputs first: they are the roots torch-pruning pruned. A BatchNorm after a
    # concatenation shrinks with its sources; pruning it first would take whole sources away.
    for roots in (True, False):
        for counts, get, which in ((out_channels, dg.get_out_channels, "prune_out_channels"),
                                   (in_channels, dg.get_in_channels, "prune_in_channels")):
            for name, n in counts.items():
                layer = named(module, name, "the recorded pruning transform")
                current = get(layer) if isinstance(layer, PRUNABLE) == roots else None
                if current is not None and current > n:
                    fn = getattr(dg.get_pruner_of_module(layer), which)
                    dg.get_pruning_group(layer, fn, idxs=list(range(n, current))).prune(record_history=False)
    got = channels(dg)
    wrong = {n: (got[k].get(n), c) for k, rec in (("out", out_channels), ("in", in_channels))
             for n, c in rec.items() if got[k].get(n) != c}
    if wrong:
        raise ArtifactError(f"could not rebuild the pruned architecture: layers {dict(list(wrong.items())[:5])} "
                            "have (width now, recorded width); the model's code changed since it was pruned")
    return module
