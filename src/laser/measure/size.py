"""Size figures: parameters, non-zero parameters, MACs and FLOPs, bytes on disk.

FLOPs come from ``torch.utils.flop_counter``, which counts a multiply-accumulate as 2 FLOPs; MACs are
FLOPs / 2. Both are per *one sample* (batch 1) and always reported together, labelled.
"""

from __future__ import annotations

from typing import Any

from laser.artifact import Artifact


def parameters(module: Any) -> tuple[int, int]:
    """(parameters, non-zero parameters) of a torch module."""
    total = nonzero = 0
    for p in module.parameters():
        total += p.numel()
        nonzero += int((p != 0).sum())
    return total, nonzero


def flops(module: Any, spec: Any) -> int:
    """FLOPs of one forward pass at batch 1 (counted by torch.utils.flop_counter)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    feeds = spec.example_inputs(batch=1)
    args = [torch.from_numpy(feeds[t.name]) for t in spec.inputs]
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        module(*args)
    return int(counter.get_total_flops())


def size_of(artifact: Artifact) -> dict[str, Any]:
    """Size figures of an artifact, each labelled with its unit and method."""
    out: dict[str, Any] = {"bytes": artifact.bytes, "files": {k: p.stat().st_size for k, p in artifact.files.items()}}
    if artifact.format == "torch":
        module = artifact.module()
        out["params"], out["nonzero_params"] = parameters(module)
        f = flops(module, artifact.spec)
        out["flops"], out["macs"] = f, f // 2
        out["method"] = {"params": "counted (torch parameters)", "flops": "torch.utils.flop_counter, batch 1",
                         "macs": "FLOPs / 2 (1 MAC = 2 FLOPs)", "bytes": "file sizes on disk"}
    return out
