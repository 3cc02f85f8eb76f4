"""PyTorch -> ONNX through one of torch's two exporters.

- ``dynamo``: the torch.export-based exporter (the supported path since PyTorch 2.9). Needs a batch >= 2
  contiguous example to keep a dynamic batch dim; ``external_data=False`` keeps one self-contained
  file below protobuf's 2 GiB limit; 10-25x slower to export than legacy.
- ``legacy``: the TorchScript-based exporter (deprecated upstream; its DeprecationWarning is recorded,
  not shown). Traces, so data-dependent control flow is frozen at the example.

``export_onnx`` runs one path and ``onnx.checker`` (full check, with shape inference) on the result;
choosing/falling back between paths and validating is done by ``laser.export.Export``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from laser.errors import ExportError, require
from laser.export.adapter import SpecAdapter, torch_args
from laser.spec import ModelSpec

EXPORTERS = ("dynamo", "legacy")
PROTOBUF_LIMIT = 2 << 30  # bytes: bigger models need the weights in an external data file
MAX_WARNINGS = 5


def dynamic_axes(spec: ModelSpec, dynamic_batch: bool) -> dict[str, dict[int, str]]:
    """ONNX dynamic axes from the Spec's named dims (``batch`` left out when not dynamic_batch)."""
    out = {}
    for t in (*spec.inputs, *spec.outputs):
        dims = {i: d for i, d in t.dynamic_dims.items() if dynamic_batch or d != "batch"}
        if dims:
            out[t.name] = dims
    return out


def reason(exc: BaseException) -> str:
    """The informative line of an exporter's (often multi-page, colourised) error: the dynamo
    exporter's "Exception summary" when there is one, else the first line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(("File ", "^"))]
    for i, line in enumerate(lines):
        if line.startswith("## Exception summary") and i + 1 < len(lines):
            return lines[i + 1][:400]
    return f"{type(exc).__name__}: {(lines[0] if lines else '')[:400]}"


def dynamic_shapes(spec: ModelSpec, dynamic_batch: bool) -> dict[str, tuple[dict[int, Any], ...]]:
    """torch.export dynamic shapes for ``SpecAdapter.forward(*args)``: one ``Dim`` per dim name,
    shared by every input that names it (so input_ids and attention_mask share 'batch')."""
    import torch

    dims: dict[str, Any] = {}
    per_input = []
    for t in spec.inputs:
        per_input.append({i: dims.setdefault(d, torch.export.Dim(d)) for i, d in t.dynamic_dims.items()
                          if dynamic_batch or d != "batch"})
    return {"args": tuple(per_input)}


def export_onnx(module: Any, spec: ModelSpec, path: Path, *, exporter: str, opset: int | None,
                dynamic_batch: bool) -> dict[str, Any]:
    """Export ``module`` to ``path`` with one exporter; returns what happened (exporter, seconds,
    opset, warnings, files). Raises ExportError with the exporter's reason on failure."""
    import torch

    onnx = require("onnx", "onnx")
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown ONNX exporter {exporter!r}; use one of {EXPORTERS}")
    adapter = SpecAdapter(module, spec).eval()
    # batch 2: a size-1 example would be specialised away by torch.export
    args = torch_args(spec.example_inputs(batch=2 if dynamic_batch else 1), spec)
    axes = dynamic_axes(spec, dynamic_batch)
    params_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    kwargs: dict[str, Any] = dict(input_names=spec.input_names, output_names=spec.output_names,
                                  opset_version=opset)
    if exporter == "dynamo":
        kwargs.update(dynamo=True, external_data=params_bytes > PROTOBUF_LIMIT * 0.9, verbose=False,
                      dynamic_shapes=dynamic_shapes(spec, dynamic_batch) if axes else None)
    else:
        kwargs.update(dynamo=False, do_constant_folding=True, dynamic_axes=axes or None)
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # torch.export prints the traced graphs to stderr when it fails: its reason goes into the lineage instead
    with warnings.catch_warnings(record=True) as caught, torch.no_grad(), _quiet_loggers(), \
            contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("always")  # recorded into the lineage, not shown to the user
        try:
            torch.onnx.export(adapter, args, str(path), **kwargs)
        except Exception as exc:  # exporters raise many types (TorchExportError, RuntimeError, ...)
            _clean(path)
            raise ExportError(f"the {exporter} ONNX exporter failed on {type(module).__name__}: {reason(exc)}") from exc
    seconds = time.perf_counter() - start
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # onnx.checker.ValidationError, InferenceError
        raise ExportError(f"the {exporter} exporter wrote a graph that onnx.checker rejects: {reason(exc)}") from exc
    strip_debug_metadata(path)
    model = onnx.load(str(path), load_external_data=False)
    opset_used = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    notes = sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0][:200]}" for w in caught
                    if not issubclass(w.category, (DeprecationWarning, FutureWarning))
                    and "shares the same shape constraints" not in str(w.message)})  # shared dims are intended
    return {"exporter": exporter, "seconds": round(seconds, 3), "opset": opset_used, "checker": "passed (full_check)",
            "dynamic_axes": {k: {str(i): d for i, d in v.items()} for k, v in axes.items()},
            "nodes": len(model.graph.node), "warnings": notes[:MAX_WARNINGS],
            "external_data": sorted({e.value for i in model.graph.initializer for e in i.external_data
                                     if e.key == "location"})}


# Debug text the dynamo exporter attaches to every node: Python stack traces (absolute source paths of the
# install, so the same export differed between two clones) and FX node dumps, ~10 % of a small file and
# nothing a runtime reads. The module scopes (pkg.torch.onnx.name_scopes) are kept: laser diff reads them.
DEBUG_METADATA = ("pkg.torch.onnx.stack_trace", "pkg.torch.onnx.fx_node", "pkg.torch.onnx.class_hierarchy")


def strip_debug_metadata(path: Path) -> None:
    """Drop DEBUG_METADATA from every node (graph, subgraphs, functions) of the ONNX file at ``path``."""
    onnx = require("onnx", "onnx")
    model = onnx.load(str(path), load_external_data=False)  # external weights stay where they are
    changed = False
    for node in _nodes(model):
        keep = [(p.key, p.value) for p in node.metadata_props if p.key not in DEBUG_METADATA]
        if len(keep) != len(node.metadata_props):
            changed = True
            del node.metadata_props[:]
            for key, value in keep:
                node.metadata_props.add(key=key, value=value)
    if changed:
        onnx.save(model, str(path))


def _nodes(model: Any) -> Iterator[Any]:
    graphs = [model.graph]
    nodes = [*(n for f in model.functions for n in f.node)]
    while graphs:
        g = graphs.pop()
        for n in g.node:
            nodes.append(n)
            for a in n.attribute:
                graphs.extend([a.g] if a.HasField("g") else a.graphs)
    yield from nodes


@contextlib.contextmanager
def _quiet_loggers() -> Iterator[None]:
    """The dynamo exporter logs every graph rewrite at INFO and, when torch.export fails, dumps the
    traced graphs as WARNINGs on stderr; the failure's reason is recorded in the lineage instead."""
    prefixes = ("torch", "onnxscript", "onnx_ir")
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in prefixes]
    loggers = [logging.getLogger(n) for n in {*prefixes, *names}]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _clean(path: Path) -> None:
    for p in path.parent.glob(path.name + "*"):
        p.unlink(missing_ok=True)
