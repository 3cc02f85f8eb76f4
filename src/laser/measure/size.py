"""Size figures: parameters, non-zero parameters, MACs and FLOPs, bytes on disk, bytes by dtype,
peak activation memory.

FLOPs come from ``torch.utils.flop_counter``, which counts a multiply-accumulate as 2 FLOPs; MACs are
FLOPs / 2. Both are per *one sample* (batch 1) and always reported together, labelled. ONNX artifacts
count parameters from their initializers and take MACs from the lineage (recorded by the step that
made them from a torch model) or, failing that, count them from the graph whatever its dtype (fp32,
fp16, QDQ int8; see ``onnx_size``). TorchScript artifacts are loaded and counted like torch modules
(``torch.utils.flop_counter`` sees the ops the TorchScript interpreter dispatches); their parameters
are the tensor constants of the frozen graph (BatchNorm already folded into the convolutions).
"""

from __future__ import annotations

import weakref
import zlib
from collections import Counter
from typing import Any

from laser.artifact import Artifact


def parameters(module: Any) -> tuple[int, int]:
    """(parameters, non-zero parameters) of a torch module."""
    total = nonzero = 0
    for p in module.parameters():
        total += p.numel()
        nonzero += int((p != 0).sum())
    return total, nonzero


def _example_args(spec: Any, module: Any = None) -> list[Any]:
    """Batch-1 example inputs as tensors on the module's device."""
    import torch

    device = next((p.device for p in module.parameters()), "cpu") if module is not None else "cpu"
    feeds = spec.example_inputs(batch=1)
    return [torch.from_numpy(feeds[t.name]).to(device) for t in spec.inputs]


def flops(module: Any, spec: Any) -> int:
    """FLOPs of one forward pass at batch 1 (counted by torch.utils.flop_counter)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    args = _example_args(spec, module)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        module(*args)
    return int(counter.get_total_flops())


def load_torchscript(artifact: Artifact) -> Any:
    """The scripted module of a ``torchscript`` artifact, on the CPU, in eval mode."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript deprecation: stated by the runtime
        return torch.jit.load(str(artifact.model_file), map_location="cpu").eval()


def torchscript_tensors(module: Any) -> list[Any]:
    """Weights of a scripted module: parameters and buffers, or (frozen graphs, which have none) the
    tensor constants of its graph."""
    import torch

    tensors = [*module.parameters(), *module.buffers()]
    if tensors:
        return tensors
    out, seen = [], set()
    for node in module.graph.findAllNodes("prim::Constant", True):
        if node.output().type().kind() == "TensorType":
            t = node.output().toIValue()
            if isinstance(t, torch.Tensor) and id(t) not in seen:
                seen.add(id(t))
                out.append(t)
    return out


def bytes_by_dtype_torch(module: Any) -> dict[str, int]:
    """Bytes of parameters and buffers per dtype (what the weights file mostly holds)."""
    out: Counter[str] = Counter()
    for t in [*module.parameters(), *module.buffers()]:
        out[str(t.dtype).removeprefix("torch.")] += t.numel() * t.element_size()
    return dict(out)


def peak_activation_bytes(module: Any, spec: Any) -> int:
    """Peak bytes of live intermediate tensors during one batch-1 forward in torch eager.

    Every tensor an op returns is tracked by its storage until Python frees it; inputs, parameters
    and buffers are not counted. In-place ops (ReLU(inplace=True)) return an existing storage and so
    add nothing, as in reality.
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    args = _example_args(spec, module)
    static = {t.untyped_storage().data_ptr() for t in [*module.parameters(), *module.buffers(), *args]}
    live: dict[int, int] = {}  # storage data_ptr -> bytes
    refs: Counter[int] = Counter()  # storage data_ptr -> live Python tensors using it
    state = {"now": 0, "peak": 0}

    def release(ptr: int) -> None:
        refs[ptr] -= 1
        if refs[ptr] == 0 and ptr in live:
            state["now"] -= live.pop(ptr)

    class Tracker(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            out = func(*args, **(kwargs or {}))
            for t in (out if isinstance(out, (tuple, list)) else [out]):
                if not isinstance(t, torch.Tensor):
                    continue
                storage = t.untyped_storage()
                ptr = storage.data_ptr()
                if ptr in static or ptr == 0:
                    continue
                if ptr not in live:
                    live[ptr] = storage.nbytes()
                    state["now"] += live[ptr]
                    state["peak"] = max(state["peak"], state["now"])
                refs[ptr] += 1
                weakref.finalize(t, release, ptr)
            return out

    with Tracker(), torch.inference_mode():
        result = module(*args)
    del result
    return int(state["peak"])


def compressed_bytes(artifact: Artifact, level: int = 6) -> int:
    """Bytes of the artifact's files after zlib (DEFLATE, as gzip/zip use) at ``level``, summed."""
    total = 0
    for path in artifact.files.values():
        c = zlib.compressobj(level)
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                total += len(c.compress(chunk))
        total += len(c.flush())
    return total


def size_of(artifact: Artifact, activations: bool = True) -> dict[str, Any]:
    """Size figures of an artifact; ``method`` says how each was obtained (with its unit)."""
    out: dict[str, Any] = {"bytes": artifact.bytes, "bytes_compressed": compressed_bytes(artifact),
                           "files": {k: p.stat().st_size for k, p in artifact.files.items()}}
    method = {"bytes": "measured: file sizes on disk (B)",
              "bytes_compressed": "measured: zlib level 6 (DEFLATE, as gzip) of each file, summed (B)"}
    if artifact.format == "torch":
        module = artifact.module
        out["params"], out["nonzero_params"] = parameters(module)
        f = flops(module, artifact.spec)
        out["flops"], out["macs"] = f, f // 2
        out["bytes_by_dtype"] = bytes_by_dtype_torch(module)
        method.update({"params": "counted: torch parameters (count)",
                       "nonzero_params": "counted: torch parameters != 0 (count)",
                       "flops": "counted: torch.utils.flop_counter, batch 1 (FLOPs per sample)",
                       "macs": "counted: FLOPs / 2, as 1 MAC = 2 FLOPs (MACs per sample)",
                       "bytes_by_dtype": "counted: parameters + buffers, numel × element size (B)"})
        if activations:
            out["peak_activation_bytes"] = peak_activation_bytes(module, artifact.spec)
            method["peak_activation_bytes"] = ("measured: peak bytes of live intermediate tensors in one batch-1 "
                                               "torch eager forward, tracked with TorchDispatchMode (B)")
    elif artifact.format == "torchscript":
        figures, how = torchscript_size(artifact, activations=activations)
        out.update(figures)
        method.update(how)
    elif artifact.format == "onnx":
        from laser.measure.size_onnx import onnx_size

        figures, how = onnx_size(artifact)
        out.update(figures)
        method.update(how)
    out["method"] = method
    return out


def torchscript_size(artifact: Artifact, activations: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
    """(figures, method per figure) of a TorchScript artifact: params from its weights (or graph
    constants), FLOPs from ``torch.utils.flop_counter`` on the loaded module, else from the lineage."""
    from laser.measure.size_onnx import macs_from_lineage

    module = load_torchscript(artifact)
    tensors = torchscript_tensors(module)
    by_dtype: Counter[str] = Counter()
    for t in tensors:
        by_dtype[str(t.dtype).removeprefix("torch.")] += t.numel() * t.element_size()
    figures: dict[str, Any] = {"params": sum(t.numel() for t in tensors),
                               "nonzero_params": sum(int((t != 0).sum()) for t in tensors),
                               "bytes_by_dtype": dict(by_dtype)}
    what = "parameters and buffers" if [*module.parameters(), *module.buffers()] else \
        "tensor constants of the frozen graph (BatchNorm folded)"
    method = {"params": f"counted: TorchScript {what} (count)",
              "nonzero_params": f"counted: TorchScript {what} != 0 (count)",
              "bytes_by_dtype": f"counted: TorchScript {what}, numel × element size (B)"}
    f = 0
    try:
        f = flops(module, artifact.spec)
    except Exception as exc:  # the scripted graph may hold ops flop_counter cannot run under a dispatch mode
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
    else:
        reason = "flop_counter counted 0 FLOPs"
    if f > 0:
        figures["flops"], figures["macs"] = f, f // 2
        method["flops"] = "counted: torch.utils.flop_counter on the loaded TorchScript module, batch 1 (FLOPs per sample)"
        method["macs"] = "counted: FLOPs / 2, as 1 MAC = 2 FLOPs (MACs per sample)"
    elif (recorded := macs_from_lineage(artifact)) is not None:
        figures["macs"], figures["flops"] = recorded[0], 2 * recorded[0]
        method["macs"] = (f"counted: taken from the lineage, recorded by the {recorded[1]!r} step on the torch model "
                          f"({reason} on the TorchScript module) (MACs per sample)")
        method["flops"] = "counted: 2 × MACs, as 1 MAC = 2 FLOPs (FLOPs per sample)"
    if activations:
        figures["peak_activation_bytes"] = peak_activation_bytes(module, artifact.spec)
        method["peak_activation_bytes"] = ("measured: peak bytes of live intermediate tensors in one batch-1 "
                                           "TorchScript forward, tracked with TorchDispatchMode (B)")
    return figures, method
