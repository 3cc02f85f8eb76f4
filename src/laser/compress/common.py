"""Helpers shared by pruning, sensitivity analysis, distillation and the width search: private module
copies, example inputs, counted size, datasets that fit a model, tracing checks, fine-tuning."""

from __future__ import annotations

import copy
import difflib
import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from laser.artifact import Artifact
from laser.errors import ConfigError, InputError, NotFoundError, require
from laser.spec import ModelSpec

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def torch_module(artifact: Artifact, what: str) -> tuple[nn.Module, list[torch.Tensor]]:
    """A private copy of the artifact's module (artifacts are never mutated) and batch-1 example inputs."""
    if artifact.format != "torch":
        raise ConfigError(f"{what} works on torch artifacts, {artifact.name!r} is {artifact.format}; "
                          f"{what} the torch model first, then export it")
    module = copy.deepcopy(artifact.module).eval()
    example = example_tensors(artifact.spec)
    try:
        with torch.no_grad():
            module(*example)
    except Exception as exc:
        raise ConfigError(f"{artifact.name!r} does not run on example inputs of its spec "
                          f"({type(exc).__name__}: {str(exc)[:200]}); fix the spec (input_shape=...)") from exc
    return module, example


def example_tensors(spec: ModelSpec, batch: int = 1) -> list[torch.Tensor]:
    feeds = spec.example_inputs(batch=batch)
    return [torch.from_numpy(feeds[t.name]) for t in spec.inputs]


def summary(module: nn.Module, spec: ModelSpec) -> dict[str, int]:
    from laser.measure.size import flops, parameters

    params, nonzero = parameters(module)
    return {"params": params, "nonzero_params": nonzero, "macs": flops(module, spec) // 2}


def load_data(name: str | None, split: str, spec: ModelSpec, purpose: str, required: bool):
    """The labelled dataset split if it fits the model's inputs; None (or an error if required) if not."""
    if not name:
        if required:
            raise ConfigError(f"{purpose} needs labelled data; pass data='digits' (or another dataset name)")
        return None
    ds = _dataset(name, split)
    try:
        spec.check_inputs(ds.feeds(spec.input_names, 0, 2))
        fits = ds.labels is not None
    except (InputError, ConfigError) as exc:
        if required:
            raise ConfigError(f"dataset {name!r} does not fit the model ({exc}); {purpose} needs labelled "
                              "samples shaped like the model's inputs") from exc
        return None
    if not fits and required:
        raise ConfigError(f"dataset {name!r} has no labels; {purpose} needs labelled samples")
    return ds if fits else None


@functools.lru_cache(maxsize=8)
def _dataset(name: str, split: str) -> Any:
    """Datasets are read-only arrays here; a search reads the same splits many times."""
    from laser import data as datasets

    return datasets.load(name, split)


def top1(module: nn.Module, data: Any) -> float | None:
    """Top-1 on ``data`` (measured, torch eager), or None when no fitting labelled data was given."""
    from laser.compress.train import evaluate_top1

    return None if data is None else evaluate_top1(module, data)


def named(module: nn.Module, name: str, what: str) -> nn.Module:
    try:
        return module.get_submodule(name)
    except AttributeError:
        names = [n for n, m in module.named_modules() if n and isinstance(m, PRUNABLE)]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"did you mean {close}?" if close else f"prunable layers are {names[:8]}{' ...' if len(names) > 8 else ''}"
        raise NotFoundError(f"{what} names layer {name!r}, which the model does not have; {hint}") from None


def executed_layers(module: nn.Module, example: list[torch.Tensor]) -> list[nn.Module]:
    """Conv/Linear layers in the order the forward pass ran them."""
    order: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(m))
             for m in module.modules() if isinstance(m, PRUNABLE)]
    try:
        with torch.no_grad():
            module(*example)
    finally:
        for h in hooks:
            h.remove()
    return order


def head_layers(module: nn.Module, example: list[torch.Tensor]) -> list[nn.Module]:
    """The classifier head: the last Conv/Linear the forward pass runs (its outputs are the model's)."""
    order = executed_layers(module, example)
    return order[-1:]


def output_shapes(module: nn.Module, example: list[torch.Tensor]) -> list[tuple[int, ...]]:
    with torch.no_grad():
        out = module(*example)
    outs = out if isinstance(out, (tuple, list)) else [getattr(out, "logits", out)]
    return [tuple(o.shape) for o in outs if isinstance(o, torch.Tensor)]


def build_graph(module: nn.Module, example: list[torch.Tensor], ignored: Sequence[nn.Module]) -> Any:
    """torch-pruning's dependency graph of ``module``, with errors a user can act on."""
    tp = require("torch_pruning", "compress", "torch-pruning")
    try:
        with torch.enable_grad():
            dg = tp.DependencyGraph().build_dependency(module, example_inputs=example)
    except Exception as exc:
        raise ConfigError(untraceable(module, f"{type(exc).__name__}: {str(exc)[:200]}")) from exc
    check_traced(module, dg, ignored, example)
    return dg


def untraceable(module: nn.Module, why: str) -> str:
    return (f"torch-pruning cannot trace {type(module).__name__} ({why}); structured pruning needs a forward "
            "pass it can follow (tensor outputs; no torch.no_grad()/.detach()/.item() inside; reshapes and "
            "shuffles it understands). "
            "Use structured=False (unstructured pruning needs no tracing)")


def check_traced(module: nn.Module, dg: Any, ignored: Sequence[nn.Module], example: list[torch.Tensor]) -> None:
    """Refuse a graph with nothing prunable in it, naming the layers the trace did not see."""
    skip = set(ignored)
    groups = [g for g in dg.get_all_groups(ignored_layers=list(skip), root_module_types=list(PRUNABLE))
              if g[0].dep.target.module not in skip]
    if groups:
        return
    unseen = [n for n, m in module.named_modules() if isinstance(m, PRUNABLE) and m not in dg.module2node]
    raise ConfigError(untraceable(module, f"no prunable layer group found; layers the trace did not see: "
                                          f"{unseen[:6]}"))


def taylor_gradients(module: nn.Module, data: Any, seed: int, samples: int = 256) -> None:
    """Fill .grad with dL/dw of cross-entropy on a seeded sample of ``data`` (for the taylor criterion)."""
    import numpy as np

    idx = np.random.default_rng(seed).permutation(len(data))[:samples]
    module.zero_grad(set_to_none=True)
    xs = [torch.from_numpy(a[idx]) for a in data.inputs]
    with torch.enable_grad():
        nn.functional.cross_entropy(module(*xs), torch.from_numpy(data.labels[idx])).backward()


def finetune(module: nn.Module, train: Any, val: Any, epochs: int, lr: float, seed: int, progress: bool,
             loss_fn: Any = None) -> Any:
    from laser.compress.train import TrainConfig, cross_entropy, fit

    config = TrainConfig(epochs=epochs, lr=lr, seed=seed, progress=progress, patience=None)
    return fit(module, train, val, config, loss_fn=loss_fn or cross_entropy)
