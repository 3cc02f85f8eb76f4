"""Which of a model's operators onnxruntime-web can run, from the files of the pinned npm package.

The WASM build registers ONNX Runtime's CPU kernels; its binary names every kernel's operator, so an
operator whose name is not in it cannot run there. The WebGPU operator table
(``docs/webgpu-operators.md`` of the package) lists what runs on the GPU; other nodes fall back to WASM.
The authoritative test is building a session in a browser: ``laser web --check``.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from laser.errors import BackendError

DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")  # operator domains the web build registers kernels in


def model_ops(model: Path) -> list[tuple[str, str]]:
    """Sorted (domain, op_type) of every node, subgraphs included."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    found: set[tuple[str, str]] = set()
    stack = [graph]
    while stack:
        g = stack.pop()
        for node in g.node:
            found.add((node.domain or "", node.op_type))
            stack.extend(a.g for a in node.attribute if a.type == a.GRAPH)
            stack.extend(sub for a in node.attribute if a.type == a.GRAPHS for sub in a.graphs)
    return sorted(found)


@cache
def _wasm_names(wasm: Path) -> bytes:
    return wasm.read_bytes()


def unsupported(model: Path, dist: Path) -> list[str]:
    """Operators of ``model`` that onnxruntime-web's WASM build has no kernel for ("domain:Op" or "Op")."""
    names = _wasm_names(dist / "ort-wasm-simd-threaded.wasm")
    bad = []
    for domain, op in model_ops(model):
        if domain not in DOMAINS or op.encode() not in names:
            bad.append(f"{domain}:{op}" if domain else op)
    return bad


def webgpu_ops(dist: Path) -> set[str]:
    """Operators the WebGPU execution provider runs (empty when the package ships no table)."""
    table = dist.parent / "docs" / "webgpu-operators.md"
    if not table.is_file():
        return set()
    return set(re.findall(r"^\|\s*([A-Za-z0-9_]+)\s*\|", table.read_text(encoding="utf-8"), re.M)) - {"Operator"}


def check(model: Path, dist: Path, name: str) -> dict[str, list[str]]:
    """Refuse a model with operators the WASM build cannot run; else the ops that leave WebGPU for WASM."""
    bad = unsupported(model, dist)
    if bad:
        raise BackendError(f"{name!r} uses operator(s) {bad} that onnxruntime-web cannot run (no kernel in its "
                           "WASM build); re-export with standard ONNX operators (e.g. laser export --opset 17) "
                           "or run it with laser run/serve instead")
    gpu = webgpu_ops(dist)
    return {"not_on_webgpu": sorted({op for d, op in model_ops(model) if gpu and op not in gpu})}
