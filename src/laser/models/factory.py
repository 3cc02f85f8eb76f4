"""Model-side helpers on top of the core architecture recipe (``laser.architecture``).

``build_architecture``, ``build_module``, ``load_weights``, ``read_state_dict``, ``resolve`` and
``save_weights`` live in ``laser.architecture`` (the core: artifacts rebuild their modules with them);
they are importable from here too.
"""

from __future__ import annotations

from typing import Any

import torch

from laser.architecture import (  # noqa: F401 - the former home of these names
    build_architecture,
    build_module,
    load_weights,
    read_state_dict,
    resolve,
    save_weights,
)


def reestimate_batchnorm(module: torch.nn.Module, *inputs: torch.Tensor) -> torch.nn.Module:
    """Replace BatchNorm running statistics by those of one forward pass over ``inputs``.

    A randomly initialised network keeps BatchNorm's default statistics (mean 0, var 1), which shrink
    activations layer after layer toward denormal floats: timings and calibration ranges of such a
    model are not those of a trained one. Benchmarks with random weights call this first."""
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches seen: here, exactly one
    module.train()
    with torch.no_grad():
        module(*inputs)
    return module.eval()


def with_batchnorm_statistics(artifact: Any, batch: int = 8, seed: int = 0, feeds: Any = None,
                              source: str | None = None) -> Any:
    """A torch artifact (random weights, usually) whose BatchNorm statistics come from one batch of spec
    example inputs (or of ``feeds``, named ``source`` in the lineage), one lineage step longer; the original
    is left untouched. See reestimate_batchnorm."""
    import copy

    from laser.artifact import Step

    torch.manual_seed(seed)
    params: dict[str, Any] = {"batch": batch, "seed": seed} if feeds is None else {"inputs": source}
    feeds = artifact.spec.example_inputs(batch=batch, seed=seed) if feeds is None else feeds
    inputs = [torch.from_numpy(feeds[t.name]) for t in artifact.spec.inputs]
    module = reestimate_batchnorm(copy.deepcopy(artifact.module), *inputs)
    return artifact.derive(Step("reestimate-batchnorm", params=params), module=module)
