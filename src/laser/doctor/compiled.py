"""Probe for compiled children (``compiled`` backend, ``aoti`` format): what the compiler saw.

Measured by ``torch._dynamo.explain`` on the parent module (graphs, graph breaks with their reasons) and by
``torch.export`` of it (the ATen ops Inductor has no lowering for and runs as fallback kernels, listed in
``torch._inductor.lowering.fallbacks``); recompiles come from the compiled runner's own counter.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from laser.artifact import Artifact


def compile_facts(parent: Artifact, child: Artifact, child_backend: str) -> dict[str, Any]:
    """Empty unless the child is compiled from a torch parent; else graphs, breaks, fallbacks, recompiles."""
    if parent.format != "torch" or not (child_backend == "compiled" or child.format == "aoti"):
        return {}
    import torch
    from torch._inductor.lowering import fallbacks

    from laser.export.adapter import SpecAdapter, torch_args

    adapter = SpecAdapter(parent.module.eval(), parent.spec)
    args = torch_args(parent.spec.example_inputs(batch=1), parent.spec)
    out: dict[str, Any] = {"method": "torch._dynamo.explain + torch.export ATen graph vs Inductor's fallbacks"}
    with torch.no_grad():
        ex = torch._dynamo.explain(adapter)(*args)
        out.update(graphs=int(ex.graph_count), graph_breaks=int(ex.graph_break_count),
                   break_reasons=[str(getattr(b, "reason", b)).splitlines()[0][:200] for b in ex.break_reasons][:3])
        try:
            program = torch.export.export(adapter, args).run_decompositions()
        except Exception as exc:  # what torch.export cannot capture is a graph break already counted above
            out["export_error"] = str(exc).splitlines()[0][:200]
        else:
            ops = Counter(str(n.target) for n in program.graph.nodes
                          if n.op == "call_function" and n.target in fallbacks)
            out["fallback_kernels"] = dict(ops)
    if child_backend == "compiled":
        from laser.runtime import run

        runner = run(child, backend="compiled")
        for batch in (1, 2):  # a second shape: a recompile shows up here
            runner(child.spec.example_inputs(batch=batch))
        out["recompiles"] = int(runner.describe()["recompiles"])  # type: ignore[call-overload]
        out["compile_seconds"] = runner.describe()["compile_seconds"]
        runner.close()
    return out
