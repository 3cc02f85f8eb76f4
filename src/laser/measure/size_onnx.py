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


def _infer(model: Any) -> Any:
    """A copy of ``model`` with shapes inferred at batch 1 (every dynamic dim of the graph inputs = 1).

    The exporter's own ``value_info`` and output shapes are dropped first: they carry the symbolic
    batch dim ('batch'), which shape inference keeps rather than replacing with 1, leaving every
    activation shape unknown (fp16 graphs from onnxconverter-common, QDQ graphs from
    quant_pre_process). When inference rejects the graph (some custom-domain graphs), the original
    annotations are used with the graph inputs' symbolic dims read as 1."""
    onnx = require("onnx", "onnx")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name for i in m.graph.initializer}
    batch_params: set[str] = set()
    for v in m.graph.input:
        if v.name in inits:
            continue
        for d in v.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                if d.dim_param:
                    batch_params.add(d.dim_param)
                d.dim_value = 1
    stripped = onnx.ModelProto()
    stripped.CopyFrom(m)
    _topological(stripped.graph)
    del stripped.graph.value_info[:]
    for v in stripped.graph.output:
        v.type.tensor_type.ClearField("shape")
    try:
        return onnx.shape_inference.infer_shapes(stripped, data_prop=True)
    except Exception:  # onnx raises several error types (InferenceError, ValidationError, ...)
        pass
    for v in [*m.graph.value_info, *m.graph.output]:
        for d in v.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in batch_params:
                d.dim_value = 1
    return m


def _topological(graph: Any) -> None:
    """Sort ``graph.node`` so that every node comes after the producers of its inputs (shape inference
    walks nodes in order; the fp16 converter appends its input Casts at the end of the list)."""
    produced = {o for n in graph.node for o in n.output}
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for n in pending:
            if all(not i or i in ready or i not in produced for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):  # a cycle or a dangling input: keep the remaining order
            ordered.extend(rest)
            break
        pending = rest
    if [id(n) for n in ordered] != [id(n) for n in graph.node]:
        copies = [type(n)() for n in ordered]
        for c, n in zip(copies, ordered, strict=True):
            c.CopyFrom(n)
        del graph.node[:]
        graph.node.extend(copies)


def tensor_types(model: Any, inferred: Any = None) -> dict[str, tuple[list[int | None], int]]:
    """Tensor name -> (shape at batch 1, ONNX elem_type), from shape inference and the initializers."""
    m = inferred if inferred is not None else _infer(model)
    out: dict[str, tuple[list[int | None], int]] = {}
    for v in [*m.graph.input, *m.graph.value_info, *m.graph.output]:
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        out[v.name] = (dims, t.elem_type)
    for i in m.graph.initializer:
        out[i.name] = (list(i.dims), i.data_type)
    return out


def _shapes(model: Any) -> dict[str, list[int | None]]:
    """Tensor name -> shape at batch 1 (see ``_infer``)."""
    return {k: shape for k, (shape, _) in tensor_types(model).items()}


def _known(shape: list[int | None] | None) -> bool:
    return shape is not None and all(isinstance(d, int) and d > 0 for d in shape)


# op type -> index of the weight input; the data input is always 0.
_CONV = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "ConvTranspose": 1}
_MATMUL = {"MatMul": 0, "MatMulInteger": 0, "QLinearMatMul": 0, "Gemm": 0}  # op -> index of input A


def node_macs(node: Any, shapes: dict[str, list[int | None]]) -> int | None:
    """MACs of one Conv/Gemm/MatMul-family node at batch 1 (any dtype: fp32, fp16, QDQ, integer ops);
    0 for other ops; None when a shape it needs is unknown."""
    def known(i: int, names: Any) -> list[int] | None:
        if i >= len(names) or not names[i]:
            return None
        shape = shapes.get(names[i])
        if shape is None or not _known(shape):
            return None
        return [d for d in shape if d is not None]

    op = node.op_type
    if op in _CONV:
        x, w, y = known(0, node.input), known(_CONV[op], node.input), known(0, node.output)
        if x is None or w is None or y is None:
            return None
        if op == "ConvTranspose":  # each input pixel scatters into Cout/groups × kernel outputs
            return prod(x) * prod(w[1:])
        return prod(y) * prod(w[1:])  # output elements × (Cin / groups × kernel); w is (Cout, Cin/g, kh, kw)
    if op in _MATMUL:
        a, y = known(_MATMUL[op], node.input), known(0, node.output)
        if not a or y is None:
            return None
        trans_a = op == "Gemm" and any(att.name == "transA" and att.i for att in node.attribute)
        k = a[0] if trans_a and len(a) == 2 else a[-1]
        return prod(y) * k  # every output element is a K-long dot product
    return 0


def graph_macs(model: Any) -> tuple[int, list[str]]:
    """(MACs at batch 1, op types skipped because a shape was unknown) counted from the graph."""
    shapes = _shapes(model)
    total, skipped = 0, []
    for node in model.graph.node:
        macs = node_macs(node, shapes)
        if macs is None:
            skipped.append(node.op_type)
        else:
            total += macs
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
