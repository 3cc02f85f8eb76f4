"""PyTorch -> ExecuTorch ``.pte``: ``torch.export``, then lowering with the XNNPACK delegate.

The program is exported at a fixed batch of 1 (what a phone or a board runs). ``to_edge_transform_and_lower``
hands every subgraph XNNPACK supports to the delegate; what it refuses stays on ExecuTorch's portable
kernels, which are reference C++ loops and slow. The delegation report (delegated vs portable ops, per
operator, with the module path of every portable one) goes into the lineage; the doctor reads it.

A graph torch.export cannot trace, or an op ExecuTorch cannot lower, is an ExportError naming the module path
(and the source line and op, where the traceback or the graph says) and how much was delegated.

INT8 (``quantize="int8"``): PT2E quantization with ExecuTorch's XNNPACK quantizer (symmetric, per-channel
weights, static activations calibrated on the given batches), so the ``.pte`` carries quantized XNNPACK
kernels.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from laser.errors import DependencyError, ExportError
from laser.export.adapter import PREFIX, SpecAdapter, torch_args
from laser.export.onnx import reason
from laser.spec import ModelSpec

log = logging.getLogger("laser.export")
PORTABLE_SHOWN = 20  # portable ops listed by name in the report (the count is always complete)


def executorch_modules() -> Any:
    """The ExecuTorch lowering API, or a DependencyError with the install line."""
    try:
        logging.getLogger("torchao").setLevel(logging.ERROR)  # its CUDA-only kernels fail to load on CPU
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir import to_edge_transform_and_lower
    except ImportError as exc:
        raise DependencyError(f"ExecuTorch is not installed ({exc}); install it with: pip install "
                              "'laser[edge]' (executorch, pinned to a build for this torch)") from exc
    return to_edge_transform_and_lower, XnnpackPartitioner


def _module_path(node: Any) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "(top level)"
    path = str(list(stack.values())[-1][0]).removeprefix("L['self'].")
    path = "" if path == "module" else path.removeprefix("module.")  # SpecAdapter holds the model as .module
    return path or "(top level)"


def delegation_report(graph_module: Any) -> dict[str, Any]:
    """Delegated (XNNPACK) vs portable op counts, per operator, and where the portable ones are."""
    delegated: Counter[str] = Counter()
    portable: Counter[str] = Counter()
    where: list[dict[str, str]] = []
    partitions = 0
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and node.name.startswith("lowered_module_"):
            partitions += 1
            lowered = getattr(graph_module, node.name)
            for inner in lowered.original_module.graph.nodes:
                if inner.op == "call_function":
                    delegated[_op_name(inner.target)] += 1
        elif node.op == "call_function":
            name = _op_name(node.target)
            if name in ("executorch_call_delegate", "getitem"):
                continue
            portable[name] += 1
            if len(where) < PORTABLE_SHOWN:
                where.append({"op": name, "module": _module_path(node)})
    total = sum(delegated.values()) + sum(portable.values())
    return {"backend": "XnnpackBackend", "partitions": partitions, "delegated_ops": sum(delegated.values()),
            "portable_ops": sum(portable.values()),
            "delegated_fraction": round(sum(delegated.values()) / total, 4) if total else 0.0,
            "by_operator": {op: {"delegated": delegated[op], "portable": portable[op]}
                            for op in sorted(set(delegated) | set(portable))},
            "portable_where": where}


def failure_site(exc: BaseException, root: Any) -> dict[str, str]:
    """Where in ``root`` (a SpecAdapter) an export failed: the innermost submodule whose forward was running
    (its path, as ``named_modules`` names it), the source line, and the op being traced (the ``func`` of
    the innermost ``__torch_dispatch__`` / ``__torch_function__`` frame: an aten op, or e.g. Tensor.__bool__)."""
    import linecache

    import torch

    names = {id(m): "" if n in ("", "module") else n.removeprefix(PREFIX) for n, m in root.named_modules()}
    site: dict[str, str] = {}
    ops: dict[str, str] = {}
    seen: set[int] = set()
    err: BaseException | None = exc
    while err is not None and id(err) not in seen:  # the raised error and what caused it
        seen.add(id(err))
        tb = err.__traceback__
        while tb is not None:
            owner = tb.tb_frame.f_locals.get("self")
            if isinstance(owner, torch.nn.Module) and id(owner) in names and tb.tb_frame.f_code.co_name == "forward":
                line = linecache.getline(tb.tb_frame.f_code.co_filename, tb.tb_lineno).strip()
                site = {"module": names[id(owner)] or "(top level)", "class": type(owner).__name__,
                        "line": line.split("  #")[0][:160]}
            func = tb.tb_frame.f_locals.get("func")
            if func is not None and tb.tb_frame.f_code.co_name in ("__torch_dispatch__", "__torch_function__"):
                ops[tb.tb_frame.f_code.co_name] = _func_name(func)
            tb = tb.tb_next
        err = err.__cause__ or err.__context__
    op = ops.get("__torch_dispatch__") or ops.get("__torch_function__")
    if op:
        site["op"] = op
    return site


def _func_name(func: Any) -> str:
    """``aten.item.default`` for an OpOverload, ``Tensor.__bool__`` for a tensor method, else its name."""
    qual = getattr(func, "__qualname__", "")
    if "TensorBase." in qual or "Tensor." in qual:
        return "Tensor." + qual.rpartition(".")[2]
    return str(func) if "aten" in str(func) else (qual or str(func))


def _export_error(exc: BaseException, module: Any, adapter: Any) -> ExportError:
    """torch.export's failure in one line: the module path, the op and source line, and what to do."""
    site = failure_site(exc, adapter)
    where = f" at {site.get('module', '(top level)')}"
    if site.get("class"):
        where += f" ({site['class']}.forward" + (f": `{site['line']}`" if site.get("line") else "") + ")"
    op = f", op {site['op']}" if site.get("op") else ""
    data_dependent = "data-dependent" in str(exc)
    hint = ("data-dependent control flow (a branch or a value read from a tensor): express it with torch.where "
            "or torch.cond, or move it out of the model" if data_dependent else
            "make that code traceable by torch.export (no numpy, no Python-side data), or move it out of the model")
    err = ExportError(f"torch.export failed on {type(module).__name__}{where}{op}: {reason(exc)}; nothing was "
                      f"lowered (0 ops delegated to XNNPACK); {hint}")
    err.site = site  # type: ignore[attr-defined]
    return err


def _lowering_error(exc: BaseException, module: Any, program: Any) -> ExportError:
    """ExecuTorch refused the exported graph (an op outside the Core ATen opset, mismatched dtypes...): name
    the ops the error mentions and the module path of each, as the graph records them."""
    named = set(re.findall(r"aten\.([A-Za-z0-9_]+)", str(exc)))
    nodes = [n for n in program.graph_module.graph.nodes if n.op == "call_function"]
    hits = [n for n in nodes if _op_name(n.target) in named] or [  # else a variant (linalg_inv -> linalg_inv_ex)
        n for n in nodes if any(name.startswith(_op_name(n.target) + "_") for name in named)]
    where = list(dict.fromkeys(f"aten.{_op_name(n.target)} at {_module_path(n)}" for n in hits))
    at = f": {', '.join(where[:PORTABLE_SHOWN])}" if where else ""
    return ExportError(f"ExecuTorch could not lower {type(module).__name__}{at}; nothing was delegated to XNNPACK "
                       f"(0 of {len(nodes)} ops; no program was built): {reason(exc)}; replace that op with Core "
                       "ATen ops ExecuTorch compiles, or keep it out of the exported model")


def _op_name(target: Any) -> str:
    name = getattr(target, "__name__", None) or str(target)
    return str(name).removeprefix("aten.").split(".default")[0]


def _quantize(adapter: Any, args: tuple[Any, ...], calibration: Iterable[tuple[Any, ...]]) -> tuple[Any, dict]:
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    graph = torch.export.export(adapter, args).module()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(graph, quantizer)  # type: ignore[arg-type]
    batches = 0
    with torch.no_grad():
        for batch in calibration:
            prepared(*batch)
            batches += 1
    if not batches:
        raise ExportError("INT8 ExecuTorch export needs calibration data; pass data= (a dataset or its name)")
    return convert_pt2e(prepared), {"method": "pt2e", "quantizer": "XNNPACKQuantizer (symmetric, per-channel "
                                    "weights, static per-tensor activations)", "calibration_batches": batches}


def calibration_batches(data: Any, spec: ModelSpec, preprocessing: Mapping[str, Any] | None = None,
                        limit: int = 128) -> list[tuple[Any, ...]]:
    """Batch-1 tensors for PT2E calibration from any calibration source (``laser.compress.calibration``): a
    dataset or its name (train split), an image folder, .npy/.npz files, or 'random' (spec examples).
    ``spec``: the parent's (batch dim dynamic)."""
    return [torch_args(feeds, spec) for feeds in _rows(data, spec, preprocessing, limit, seed=0)[1]]


def _rows(data: Any, spec: ModelSpec, preprocessing: Mapping[str, Any] | None, limit: int,
          seed: int) -> tuple[str, list[dict[str, np.ndarray]]]:
    """(what they are, up to ``limit`` single-sample feeds) from a calibration source."""
    from laser.compress.calibration import calibration_set

    calib = calibration_set(data, spec, preprocessing, samples=limit, seed=seed)
    rows = [{k: v[i:i + 1] for k, v in feeds.items()} for feeds in calib.feeds
            for i in range(len(next(iter(feeds.values()))))]
    return calib.source, rows


def export_executorch(module: Any, spec: ModelSpec, path: Path, *, quantize: str | None = None,
                      calibration: Iterable[tuple[Any, ...]] = ()) -> dict[str, Any]:
    """Export ``module`` (batch 1) to ``path`` (.pte) lowered with XNNPACK; returns what happened."""
    import torch

    lower, partitioner = executorch_modules()
    adapter = SpecAdapter(module, spec).eval()
    args = torch_args(spec.example_inputs(batch=1), spec)
    start = time.perf_counter()
    quant: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExecuTorch's own deprecation/future warnings, nothing about the model
        try:
            graph = adapter
            if quantize == "int8":
                graph, quant = _quantize(adapter, args, calibration)
            program = torch.export.export(graph, args)
        except ExportError:
            raise
        except Exception as exc:  # torch.export raises Unsupported/UserError/RuntimeError with long texts
            raise _export_error(exc, module, adapter) from exc
        try:
            edge = lower(program, partitioner=[partitioner()])
        except Exception as exc:
            raise _lowering_error(exc, module, program) from exc
        report = delegation_report(edge.exported_program().graph_module)
        try:
            buffer = edge.to_executorch().buffer
        except Exception as exc:  # an op with neither an XNNPACK nor a portable kernel
            portable = ", ".join(f"{w['op']} at {w['module']}" for w in report["portable_where"]) or "none"
            raise ExportError(f"ExecuTorch cannot build a program for {type(module).__name__}: {reason(exc)}; "
                              f"{report['delegated_ops']} ops delegated to XNNPACK, not delegated: {portable}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer)
    from importlib.metadata import version

    info: dict[str, Any] = {"executorch": version("executorch"), "delegate": "XNNPACK", "batch": 1,
                            "seconds": round(time.perf_counter() - start, 3), "delegation": report}
    if quant:
        info["quantization"] = quant
    if report["portable_ops"]:
        log.warning("%d of %d ops of %s run on ExecuTorch's portable kernels (slow): %s", report["portable_ops"],
                    report["portable_ops"] + report["delegated_ops"], type(module).__name__,
                    ", ".join(sorted({w["op"] for w in report["portable_where"]})))
    return info


def to_numpy(values: Any, names: Iterable[str]) -> dict[str, np.ndarray]:
    return {n: np.asarray(v.detach().numpy() if hasattr(v, "detach") else v) for n, v in zip(names, values, strict=False)}


def report_line(report: Mapping[str, Any]) -> str:
    return (f"{report['delegated_ops']} ops in {report['partitions']} XNNPACK partition(s), "
            f"{report['portable_ops']} on portable kernels")


def to_executorch(stage: Any, artifact: Any) -> Any:
    """The Export stage's ``to='executorch'`` branch: a validated executorch artifact (batch 1)."""
    from dataclasses import replace as dc_replace

    from laser.artifact import Artifact, Step, workspace
    from laser.errors import ConfigError
    from laser.export.adapter import fixed_batch_spec

    spec = fixed_batch_spec(artifact.spec, 1)
    suffix = "-int8" if stage.quantize else ""
    path = workspace(f"{artifact.name}-executorch{suffix}") / "model.pte"
    if stage.quantize and stage.data is None:
        raise ConfigError("INT8 ExecuTorch export calibrates on data: pass data= (a dataset name such as 'digits', "
                          "an image folder, .npy/.npz files, or 'random' for latency work only)")
    calibration = calibration_batches(stage.data, artifact.spec, artifact.preprocessing) if stage.quantize else ()
    info = export_executorch(artifact.module.eval(), spec, path, quantize=stage.quantize, calibration=calibration)
    child = artifact.derive(Step("export", params=stage.params()), files={"model.pte": path}, format="executorch",
                            spec=spec, architecture=None)
    results = {"exporter_used": "torch.export + ExecuTorch XNNPACK lowering", "export": info,
               "delegation": info["delegation"]}
    if not stage.quantize:
        return stage._finish(artifact, child, results)
    results.update(_int8_check(artifact, child, stage.data), quantization=info.get("quantization"))
    step = Step("export", params=stage.params(), results=results)
    return Artifact(dc_replace(child.manifest, lineage=(*artifact.lineage, step)), child.files)


def _int8_check(parent: Any, child: Any, data: Any) -> dict[str, Any]:
    """INT8 is not within FP32 tolerance by design: it is held to the Spec's top-1 agreement with its parent
    on real data (ParityError below it); on random inputs the agreement is reported, not judged."""
    from laser.errors import ParityError

    check = int8_agreement(parent, child, data)
    required = child.spec.tolerance.top1_agreement
    if data == "random":  # N(0, 1) inputs say nothing about accuracy
        log.warning("INT8 ExecuTorch program of %s was calibrated and checked on random inputs (top-1 agreement "
                    "%.1f %% on %d of them): fine for latency work, no accuracy claim; calibrate on real data "
                    "(data='digits', an image folder, .npy files) to hold it to the spec", parent.name,
                    100 * check["top1_agreement"], check["samples"])
        return {"validation": check, "verified": False,
                "unverified_reason": "calibrated and checked on random N(0, 1) inputs (latency work only)"}
    if check["top1_agreement"] < required:
        exc = ParityError(f"INT8 ExecuTorch program of {parent.name!r} agrees with its parent on "
                          f"{100 * check['top1_agreement']:.1f} % of {check['samples']} samples ({check['data']}), "
                          f"below the required {100 * required:g} %; calibrate on more representative data")
        exc.child = child  # type: ignore[attr-defined]
        raise exc
    return {"validation": check, "verified": True}


def _check_set(data: Any, parent: Any, limit: int) -> tuple[str, Any]:
    """(name, iterable of (feeds, labels or None) at batch 1) the INT8 program is checked on: a dataset's
    test split, else samples of the unlabelled calibration source (for 'random': another seed)."""
    from laser import data as datasets
    from laser.data import Dataset

    if isinstance(data, Dataset) or (isinstance(data, str) and data in datasets.LOADERS):
        dataset = (datasets.load(data, "test") if isinstance(data, str) else data).take(limit)
        return dataset.name, dataset.batches(parent.spec.input_names, 1)
    source, rows = _rows(data, parent.spec, parent.preprocessing, min(limit, 64), seed=1)
    held = " (held out: another seed than calibration)" if data == "random" else ""
    return f"{source}{held}", ((f, None) for f in rows)


def int8_agreement(parent: Any, child: Any, data: Any, limit: int = 512) -> dict[str, Any]:
    """Top-1 agreement of ``child`` with ``parent`` at batch 1 on a labelled dataset's test split (and the
    accuracy of both on its labels, percentage points), or on samples of an unlabelled source."""
    from laser.runtime import run

    name, batches = _check_set(data, parent, limit)
    agree = right_parent = right_child = n = 0
    labelled = False
    err2 = ref2 = 0.0
    with run(parent, backend="torch", threads=1) as p_run, run(child, backend="executorch", threads=1) as c_run:
        for feeds, labels in batches:
            want_out = next(iter(p_run(feeds).values())).astype(np.float64)
            got_out = next(iter(c_run(feeds).values())).astype(np.float64)
            err2 += float(((got_out - want_out) ** 2).sum())
            ref2 += float((want_out ** 2).sum())
            want, got = want_out.argmax(-1), got_out.argmax(-1)
            agree += int((want == got).sum())
            n += len(got)
            if labels is not None:
                labelled = True
                right_parent += int((want == np.asarray(labels)).sum())
                right_child += int((got == np.asarray(labels)).sum())
    scored = labelled and n
    return {"data": name, "samples": n, "top1_agreement": agree / n if n else 0.0,
            "rel_l2": (err2 / ref2) ** 0.5 if ref2 else None,
            "parent_accuracy": 100 * right_parent / n if scored else None,
            "accuracy": 100 * right_child / n if scored else None,
            "accuracy_delta_pts": 100 * (right_child - right_parent) / n if scored else None,
            "method": "argmax of the first output (rel_l2: its relative L2 vs the parent), batch 1, "
                      + ("test split" if labelled else "held-out inputs")}
