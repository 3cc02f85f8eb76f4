"""Size figures of ONNX artifacts: parameters from initializers, MACs from the lineage or the graph.

MACs of an ONNX artifact are taken, in this order, from
1. the lineage: the latest step whose ``results`` (or ``params``) record ``macs`` — the export or
   compression step measured them on the torch model it started from (same network, same count);
2. the graph: shapes inferred at batch 1 (``onnx.shape_inference``), then MACs counted for the ops
   that dominate compute — Conv / ConvInteger / QLinearConv, Gemm, MatMul / MatMulInteger /
   QLinearMatMul, ConvTranspose. Element-wise ops, pooling and normalisation are not counted (in a
   CNN they are typically < 2 % of the total), which the method string says.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from math import prod
from typing import Any

from laser.artifact import Artifact
from laser.errors import require


def macs_from_lineage(artifact: Artifact) -> tuple[int, str] | None:
    """(MACs, which step recorded them) from the newest lineage step that recorded MACs."""
    for step in reversed(artifact.lineage):
        for where in (step.results, step.params):
            if isinstance(where.get("macs"), (int, float)) and where["macs"] > 0:
                return int(where["macs"]), step.op
    return None


def _shapes(model: Any) -> dict[str, list[int | None]]:
    """Tensor name -> shape, with every dynamic dim of the graph inputs set to 1 (batch 1)."""
    onnx = require("onnx", "onnx")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name for i in m.graph.initializer}
    for v in m.graph.input:
        if v.name in inits:
            continue
        for d in v.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.dim_value = 1
    # Shape inference rejects some custom-domain graphs: then count what the graph already knows.
    with contextlib.suppress(Exception):
        m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    shapes: dict[str, list[int | None]] = {}
    for v in [*m.graph.input, *m.graph.value_info, *m.graph.output]:
        dims = v.type.tensor_type.shape.dim
        shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    for i in m.graph.initializer:
        shapes[i.name] = list(i.dims)
    return shapes


def _known(shape: list[int | None] | None) -> bool:
    return shape is not None and all(isinstance(d, int) and d > 0 for d in shape)


# op type -> index of the weight input; the data input is always 0.
_CONV = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "ConvTranspose": 1}
_MATMUL = {"MatMul": 0, "MatMulInteger": 0, "QLinearMatMul": 0, "Gemm": 0}  # op -> index of input A


def graph_macs(model: Any) -> tuple[int, list[str]]:
    """(MACs at batch 1, op types skipped because a shape was unknown) counted from the graph."""
    shapes = _shapes(model)

    def known(name: str) -> list[int] | None:
        shape = shapes.get(name)
        if shape is None or not _known(shape):
            return None
        return [d for d in shape if d is not None]

    total, skipped = 0, []
    for node in model.graph.node:
        op = node.op_type
        if op in _CONV:
            x, w, y = known(node.input[0]), known(node.input[_CONV[op]]), known(node.output[0])
            if x is None or w is None or y is None:
                skipped.append(op)
                continue
            if op == "ConvTranspose":  # each input pixel scatters into Cout/groups × kernel outputs
                total += prod(x) * prod(w[1:])
            else:  # output elements × (Cin / groups × kernel) weights each; w is (Cout, Cin/g, kh, kw)
                total += prod(y) * prod(w[1:])
        elif op in _MATMUL:
            a, y = known(node.input[_MATMUL[op]]), known(node.output[0])
            if not a or y is None:
                skipped.append(op)
                continue
            trans_a = op == "Gemm" and any(att.name == "transA" and att.i for att in node.attribute)
            k = a[0] if trans_a and len(a) == 2 else a[-1]
            total += prod(y) * k  # every output element is a K-long dot product
    return int(total), skipped


def onnx_size(artifact: Artifact) -> tuple[dict[str, Any], dict[str, str]]:
    """(figures, method per figure) of an ONNX artifact."""
    onnx = require("onnx", "onnx")
    from onnx import numpy_helper

    model = onnx.load(str(artifact.model_file))
    total = nonzero = 0
    by_dtype: Counter[str] = Counter()
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        total += arr.size
        nonzero += int((arr != 0).sum())
        by_dtype[str(arr.dtype)] += arr.nbytes
    figures: dict[str, Any] = {"params": total, "nonzero_params": nonzero, "bytes_by_dtype": dict(by_dtype)}
    method = {"params": "counted: elements of the ONNX initializers (count; includes constants such as "
                        "quantization scales and BatchNorm statistics folded into weights)",
              "nonzero_params": "counted: initializer elements != 0 (count)",
              "bytes_by_dtype": "counted: initializer bytes per dtype (B)"}
    recorded = macs_from_lineage(artifact)
    if recorded:
        figures["macs"] = recorded[0]
        method["macs"] = (f"counted: taken from the lineage, recorded by the {recorded[1]!r} step on the torch "
                          "model (MACs per sample)")
    else:
        macs, skipped = graph_macs(model)
        figures["macs"] = macs
        note = f"; skipped (shape unknown): {sorted(set(skipped))}" if skipped else ""
        method["macs"] = ("counted: from the ONNX graph at batch 1: Conv/ConvInteger/QLinearConv/ConvTranspose, "
                          f"Gemm/MatMul/MatMulInteger/QLinearMatMul only (MACs per sample){note}")
    figures["flops"] = 2 * figures["macs"]
    method["flops"] = "counted: 2 × MACs, as 1 MAC = 2 FLOPs (FLOPs per sample)"
    return figures, method
