"""Is the quantized model actually faster? Measured, and explained from the graph the runtime executes.

Smaller is not faster by itself. For example, on one 2-core Xeon (measured with bench/quantize.py), INT8
ResNet-18 ran at ~0.4 x FP32, while INT8 MobileNetV3-small ran *slower* than FP32 (1.2-3.3 x over several runs):
after onnxruntime fuses the QDQ graph, dozens of QuantizeLinear/DequantizeLinear conversions remain
around the ops it runs in float (HardSwish decomposed into HardSigmoid + Mul, the squeeze-excitation
ReduceMean), and on a model that small they cost more than the int8 convolutions save.

``speed_check`` times FP32 and quantized on onnxruntime (batch 1, alternating blocks so load from
other processes hits both), counts the conversions left in onnxruntime's optimised graph and the float
ops between them, and returns a note when the quantized model is not faster.
"""

from __future__ import annotations

import collections
import math
import statistics
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from laser.artifact import Artifact
from laser.errors import require

# Example figures measured elsewhere, not on the machine running laser: a 2-core Xeon (avx512_vnni,
# avx_vnni, amx_int8), ResNet-18, batch 1, median ms on onnxruntime's CPU provider (bench/quantize.py
# re-measures them). Quantize's defaults and warnings quote them as examples.
MEASURED_RESNET18_MS = {
    "fp32": 17.8,
    "int8-static u8 activations / s8 per-channel weights": 6.4,
    "int8-static s8 activations / s8 weights": 16.8,
    "int8-dynamic with Conv (ConvInteger)": 71.5,
    "fp16": 26.7,
}

PASSES = 3
BLOCK = 10  # timed calls per pass and model, after 3 warm-up calls
SLOWER = 1.0  # quantized / FP32 latency at or above which a note is raised: not faster
MIN_MACS = 20_000_000  # below this a call takes tens of µs, and a shared CPU's noise exceeds the difference
CONVERSIONS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
HELPERS = (*CONVERSIONS, "Transpose", "Reshape", "ReorderInput", "ReorderOutput", "Cast")


def node_macs(model: Path, input_shapes: Mapping[str, Sequence[int]] | None = None) -> dict[str, tuple[str, int]]:
    """node name -> (op type, MACs at batch 1) of the Conv/ConvTranspose/MatMul/Gemm nodes, counted from the
    graph's inferred shapes, with the graph inputs fixed to ``input_shapes`` where given (other symbolic dims
    count as 1)."""
    onnx = require("onnx", "onnx")
    proto = onnx.load(str(model))
    for vi in proto.graph.input:
        if input_shapes and vi.name in input_shapes:
            for d, size in zip(vi.type.tensor_type.shape.dim, input_shapes[vi.name]):
                d.dim_value = int(size)
    m = onnx.shape_inference.infer_shapes(proto)
    shapes: dict[str, list[int]] = {}
    for vi in (*m.graph.value_info, *m.graph.input, *m.graph.output):
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]
    for init in m.graph.initializer:
        shapes[init.name] = list(init.dims)
    out: dict[str, tuple[str, int]] = {}
    for i, n in enumerate(m.graph.node):
        y = shapes.get(n.output[0])
        if not y:
            continue
        if n.op_type in ("Conv", "ConvTranspose") and len(n.input) > 1 and n.input[1] in shapes:
            out[n.name or f"#{i}"] = (n.op_type, math.prod(y) * math.prod(shapes[n.input[1]][1:]))  # outputs × (Cin/groups × kh × kw)
        elif n.op_type in ("MatMul", "Gemm") and shapes.get(n.input[0]):
            a = shapes[n.input[0]]
            trans_a = any(att.name == "transA" and att.i for att in n.attribute)
            out[n.name or f"#{i}"] = (n.op_type, math.prod(y) * (a[0] if trans_a and len(a) == 2 else a[-1]))  # outputs × K
    return out


def mac_split(model: Path) -> dict[str, int]:
    """MACs at batch 1 in Conv vs MatMul/Gemm nodes (``node_macs`` summed)."""
    macs = node_macs(model).values()
    conv = sum(v for op, v in macs if op.startswith("Conv"))
    matmul = sum(v for op, v in macs if not op.startswith("Conv"))
    return {"conv": conv, "matmul": matmul, "total": conv + matmul}


def runtime_ops(model: Path) -> dict[str, int]:
    """Op counts of the graph onnxruntime actually executes (after its fusions), on the CPU provider."""
    ort = require("onnxruntime", "onnx")
    onnx = require("onnx", "onnx")
    with tempfile.TemporaryDirectory(prefix="laser-ortopt-") as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        so.log_severity_level = 3  # ORT warns that NCHWc layouts are machine-specific: that is the point here
        ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])  # only to write the graph
        graph = onnx.load(so.optimized_model_filepath).graph
    return dict(collections.Counter(n.op_type for n in graph.node))


def latency_pair(fp32: Artifact, quantized: Artifact, threads: int | None = None,
                 backend: str = "onnxruntime") -> dict[str, float]:
    """p50 ms at batch 1 of both on ``backend``, in alternating blocks; the median over passes."""
    from laser.measure.latency import latency
    from laser.runtime import run

    runners = {"fp32": run(fp32, backend=backend, threads=threads),
               "quantized": run(quantized, backend=backend, threads=threads)}
    p50s: dict[str, list[float]] = {k: [] for k in runners}
    try:
        for _ in range(PASSES):
            for label, runner in runners.items():
                p50s[label].append(latency(runner, batch_size=1, warmup=3, iters=BLOCK).p50_ms)
    finally:
        for runner in runners.values():
            runner.close()
    return {k: statistics.median(v) for k, v in p50s.items()}


def speed_check(fp32: Artifact, quantized: Artifact, macs: int) -> dict[str, Any]:
    """Measured latency of both, the conversions left at run time, and a note when not faster."""
    ms = latency_pair(fp32, quantized)
    ops = runtime_ops(quantized.model_file)
    ratio = ms["quantized"] / ms["fp32"]
    out: dict[str, Any] = {
        "fp32_p50_ms": round(ms["fp32"], 4), "quantized_p50_ms": round(ms["quantized"], 4),
        "ratio": round(ratio, 3), "macs": macs, "runtime_conversions": sum(ops.get(op, 0) for op in CONVERSIONS),
        "runtime_ops": ops,
        "method": f"measured: onnxruntime CPU, batch 1, p50 of {BLOCK} calls per block after 3 warm-up, "
                  f"median of {PASSES} alternating passes (shared CPU: noisy); ops counted in onnxruntime's "
                  "optimised graph",
    }
    out["note"] = speed_note(ratio, ms, macs, ops)
    return out


def speed_note(ratio: float, ms: dict[str, float], macs: int, ops: dict[str, int]) -> str | None:
    """The explanation when the quantized model measured slower, else None."""
    if ratio < SLOWER or macs < MIN_MACS:
        return None
    conversions = sum(ops.get(op, 0) for op in CONVERSIONS)
    fused = {op: n for op, n in ops.items() if op.startswith(("QLinear", "QGemm", "ConvInteger", "MatMulInteger"))}
    floats = {op: n for op, n in ops.items() if op not in HELPERS and op not in fused}
    top = ", ".join(f"{n} {op}" for op, n in sorted(floats.items(), key=lambda x: -x[1])[:4]) or "none"
    return (f"quantized model is not faster: measured {ratio:.2f} x the FP32 latency ({ms['quantized']:.2f} vs {ms['fp32']:.2f} ms, "
            f"batch 1, onnxruntime on this CPU): after onnxruntime's fusions {conversions} QuantizeLinear/"
            f"DequantizeLinear conversions remain around ops it runs in float ({top}), and on a model of "
            f"{macs / 1e6:.0f} M MACs they cost more than the int8 kernels save. Keep FP32 for speed here "
            "(the INT8 file is still smaller), or exclude the layers between those ops")
