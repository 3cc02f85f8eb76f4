"""Per-layer divergence between a parent and its ONNX child: where do they start to disagree?

- torch parent vs ONNX child: every submodule's output is recorded with forward hooks; on the ONNX side
  each node belongs to the module whose scope produced it (the dynamo exporter records it in the
  node's ``pkg.torch.onnx.name_scopes`` metadata, the legacy exporter in the node name
  ``/module/features/features.0/Conv``). A module's output is the last node of its scope (graph order
  is topological) whose shape matches; those tensors are exposed as extra graph outputs and read back.
- ONNX parent vs ONNX child (e.g. a quantized graph): tensors with the same name in both graphs.

Layers are listed in execution order; the first whose error is outside the Spec's tolerance is the
first divergent layer. Modules the exporter fused (a BatchNorm folded into its Conv: the fused node's
output is the BatchNorm's) have no tensor of their own and are listed as unmatched.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from laser.artifact import Artifact, workspace
from laser.errors import ConfigError, require
from laser.export.adapter import PREFIX


def node_scope(node: Any) -> str | None:
    """The module path (relative to the exported model) a node was produced in; '' for the top level,
    None when the graph does not say."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":  # dynamo: ['', 'module', 'module.features', ..., op]
            try:
                scopes = [s for s in ast.literal_eval(prop.value)[:-1] if s]
            except (ValueError, SyntaxError):
                return None
            deepest = scopes[-1] if scopes else ""
            return "" if deepest == "module" else deepest.removeprefix(PREFIX)
    if node.name.startswith("/"):  # legacy: /module/features/features.0/features.0.0/Conv
        parts = node.name.split("/")[1:-1]
        if parts and parts[0] == "module":
            parts = parts[1:]
        return parts[-1] if parts else ""
    return None


def _torch_outputs(module: Any, feeds: Mapping[str, np.ndarray], spec: Any) -> list[tuple[str, str, np.ndarray]]:
    """(module name, module type, output) for every submodule call returning a tensor, in call order."""
    import torch

    records: list[tuple[str, str, np.ndarray]] = []
    handles = []
    for name, sub in module.named_modules():
        if not name:
            continue

        def hook(mod: Any, args: Any, out: Any, name: str = name) -> None:
            if isinstance(out, torch.Tensor) and out.is_floating_point():
                records.append((name, type(mod).__name__, out.detach().cpu().numpy().copy()))

        handles.append(sub.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            module(*[torch.from_numpy(feeds[t.name]) for t in spec.inputs])
    finally:
        for h in handles:
            h.remove()
    return records


def _with_outputs(path: Path, names: list[str], out_dir: Path) -> Path:
    """A copy of the ONNX model at ``path`` with ``names`` added as graph outputs."""
    onnx = require("onnx", "onnx")
    model = onnx.load(str(path))
    present = {o.name for o in model.graph.output}
    for n in names:
        if n not in present:
            model.graph.output.append(onnx.ValueInfoProto(name=n))
    target = out_dir / path.name
    onnx.save(model, str(target))
    return target


def _run_onnx(path: Path, feeds: Mapping[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    ort = require("onnxruntime", "onnx")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return dict(zip(names, sess.run(names, dict(feeds))))


def _stats(got: np.ndarray, ref: np.ndarray, tol: Any) -> dict[str, Any]:
    a, b = got.astype(np.float64), ref.astype(np.float64)
    err = np.nan_to_num(np.abs(a - b), nan=np.inf)
    ref_max = float(np.abs(b).max(initial=0.0))
    worst = float(err.max(initial=0.0))
    outside = int((err > tol.atol + tol.rtol * np.abs(b)).sum())
    return {"max_abs_error": worst, "max_rel_error": worst / ref_max if ref_max else float(worst > 0),
            "outside_tolerance": outside / max(1, err.size), "within_tolerance": outside == 0}


def diff(parent: Artifact, child: Artifact, data: Any = None, batch: int = 1) -> dict[str, Any]:
    """Per-layer errors of ``child`` against ``parent`` and the first layer beyond tolerance."""
    if child.format != "onnx" or parent.format not in ("torch", "onnx"):
        raise ConfigError(f"laser diff compares a torch or onnx parent with an onnx child; got parent "
                          f"{parent.format!r} and child {child.format!r}. Export the child to ONNX first")
    feeds, source = _feeds(child, data, batch)
    onnx = require("onnx", "onnx")
    graph = onnx.load(str(child.model_file), load_external_data=False).graph
    tol = child.spec.tolerance
    if parent.format == "torch":
        layers, unmatched = _torch_layers(parent, child, graph, feeds)
    else:
        layers, unmatched = _onnx_layers(parent, child, graph, feeds), []
    first = next((row for row in layers if not row["within_tolerance"]), None)
    return {"parent": parent.name, "parent_format": parent.format, "child": child.name, "inputs": source,
            "tolerance": {"atol": tol.atol, "rtol": tol.rtol}, "layers": layers, "unmatched": unmatched,
            "first_divergent": first,
            "method": "measured: intermediate outputs of both models on the same inputs; torch forward hooks vs "
                      "ONNX node outputs exposed as graph outputs; max_rel_error = max abs error / max |parent|"}


def _feeds(child: Artifact, data: Any, batch: int) -> tuple[dict[str, np.ndarray], str]:
    """The inputs both models run on, and how to name them: ``batch`` samples of ``data``, else spec examples."""
    if data is None:
        return child.spec.example_inputs(batch=batch), f"spec examples (batch {batch})"
    if isinstance(data, str):
        from laser import data as datasets

        data = datasets.load(data, "test")
    return data.feeds(child.spec.input_names, 0, batch), f"{data.name}: first {batch} sample(s)"


def _torch_layers(parent: Artifact, child: Artifact, graph: Any, feeds: Mapping[str, np.ndarray],
                  ) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, unmatched modules): every submodule's output against the ONNX tensor of its scope."""
    tol = child.spec.tolerance
    records = _torch_outputs(parent.module.eval(), feeds, parent.spec)
    by_scope: dict[str, list[tuple[int, str]]] = {}
    for i, node in enumerate(graph.node):
        scope = node_scope(node)
        if scope is not None and node.output and node.output[0]:
            by_scope.setdefault(scope, []).append((i, node.output[0]))
    # candidates per module: outputs of nodes in its subtree, last first (its output is usually last)
    candidates: dict[str, list[str]] = {}
    for name, _, _ in records:
        found = [(i, t) for s, items in by_scope.items() if s == name or s.startswith(name + ".") for i, t in items]
        candidates[name] = [t for _, t in sorted(found, reverse=True)][:4]
    wanted = sorted({t for ts in candidates.values() for t in ts})
    tmp = workspace(f"{child.name}-diff")
    got = _run_onnx(_with_outputs(child.model_file, wanted, tmp), feeds, wanted) if wanted else {}
    first_call: dict[str, int] = {}
    for k, (name, _, _) in enumerate(records):
        first_call.setdefault(name, k)
    layers: list[dict[str, Any]] = []
    unmatched: list[str] = []
    reported: set[str] = set()
    for k, (name, kind, ref) in enumerate(records):
        if first_call[name] != k:  # a module called twice (shared): compare its first call
            continue
        tensor = next((t for t in candidates.get(name, []) if got[t].shape == ref.shape), None)
        if tensor is None:
            unmatched.append(name)
            continue
        if tensor in reported:  # a container whose output is its last child's: already listed
            continue
        row = {"layer": name, "type": kind, "tensor": tensor, "shape": list(ref.shape), **_stats(got[tensor], ref, tol)}
        if not row["within_tolerance"]:
            # An exporter that folds a BatchNorm into its Conv gives the Conv's node the BN's output:
            # then the tensor matches a following module, and this one has no tensor of its own.
            later = next((n for n, _, r in records[k + 1:k + 3] if r.shape == ref.shape and n not in reported
                          and _stats(got[tensor], r, tol)["within_tolerance"]), None)
            if later is not None:
                unmatched.append(name)
                continue
        reported.add(tensor)
        layers.append(row)
    if not layers:
        raise ConfigError(f"no node of {child.model_file.name} could be tied to a module of {parent.name!r}: the "
                          "graph records no module scopes (was it exported by laser or torch.onnx?). Export "
                          "the parent with laser export, or diff two ONNX graphs whose tensors share names")
    return layers, unmatched


def _onnx_layers(parent: Artifact, child: Artifact, graph: Any, feeds: Mapping[str, np.ndarray],
                 ) -> list[dict[str, Any]]:
    """Rows for the tensors both ONNX graphs name, in the child's graph order."""
    onnx = require("onnx", "onnx")
    p_graph = onnx.load(str(parent.model_file), load_external_data=False).graph
    p_tensors = {o for n in p_graph.node for o in n.output if o}
    order = [(n.op_type, o) for n in graph.node for o in n.output[:1] if o in p_tensors]
    names = [o for _, o in order]
    got = _run_onnx(_with_outputs(child.model_file, names, workspace(f"{child.name}-diff")), feeds, names)
    ref_all = _run_onnx(_with_outputs(parent.model_file, names, workspace(f"{parent.name}-diff")), feeds, names)
    layers = []
    for kind, tensor in order:
        if got[tensor].dtype.kind != "f" or got[tensor].shape != ref_all[tensor].shape:
            continue
        layers.append({"layer": tensor, "type": kind, "tensor": tensor, "shape": list(got[tensor].shape),
                       **_stats(got[tensor], ref_all[tensor], child.spec.tolerance)})
    return layers
