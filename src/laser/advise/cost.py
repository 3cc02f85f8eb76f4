"""The per-layer cost model: what each op of the exported ONNX graph does, and how long a device takes for it.

``graph_cost`` walks the graph once per batch size. Shapes are the ones onnxruntime produces when it runs
the graph on the spec's example inputs with every intermediate tensor exposed (exact where static shape
inference gives up, e.g. the reshapes of a BERT exported by the TorchScript-based exporter). Per op:

- MACs: ``laser.measure.size_onnx.node_macs`` on those shapes — the count laser reports everywhere (Conv /
  Gemm / MatMul families; element-wise ops 0), so cost-model FLOPs = 2 × laser's MACs exactly;
- bytes: weights (initializers, int8 behind a DequantizeLinear) + activations read and written, at the
  graph's dtypes; views, reshapes and Q/DQ move nothing (as in ``laser.measure.workload``). Weights come
  from memory on every call; an op's activations only when they are larger than ``ON_CHIP_BYTES``.

``predict`` prices them on a device (the roofline, one op at a time, plus a per-op fixed overhead)::

    t_op = max(FLOPs / (peak at the precision × e_compute), bytes / (bandwidth × e_memory)) + overhead

Bytes scale with the precision the device runs (4 / 2 / 1 B per element for fp32 / fp16 / int8). Without
a bandwidth figure the memory term is left out (a lower bound, said so). The efficiencies and the overhead
are fitted on this machine (``laser.advise.calibrate``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laser.errors import BackendError, require
from laser.measure.size_onnx import node_macs
from laser.measure.workload import _INTEGER_OPS, _NO_TRAFFIC

BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "int8": 1}
# An op's activations up to this size are taken to stay on chip (cache / SRAM) between producer and consumer;
# weights are read from memory on every call. An assumption (about one core's share of a last-level cache, or
# an accelerator's SRAM); the held-out error stated with every advice shows what such assumptions cost.
ON_CHIP_BYTES = 2**20


@dataclass(frozen=True)
class Op:
    name: str
    op_type: str
    macs: int
    precision: str  # fp32 / fp16 / int8: what the op computes in, in this graph
    weight_bytes: int
    activation_bytes: int  # read + written


@dataclass(frozen=True)
class GraphCost:
    ops: tuple[Op, ...]  # the ops that move data or compute (views and Q/DQ left out)
    op_types: frozenset[str]  # every op type in the graph (for deployability checks)
    batch: int
    weight_bytes: int  # all weights once (what must fit in the device's memory)

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def precision(self) -> str:
        """The precision most MACs run in."""
        by = Counter[str]()
        for op in self.ops:
            by[op.precision] += op.macs
        return by.most_common(1)[0][0] if by else "fp32"

    @property
    def peak_activation_bytes(self) -> int:
        """Largest single op's activations: a lower bound of the live activation memory."""
        return max((op.activation_bytes for op in self.ops), default=0)

    def summary(self) -> dict[str, Any]:
        return {"batch": self.batch, "ops": len(self.ops), "macs": self.macs, "flops": self.flops,
                "precision": self.precision, "weight_bytes": self.weight_bytes,
                "activation_bytes": sum(op.activation_bytes for op in self.ops),
                "method": "MACs: laser.measure.size_onnx.node_macs per node on the shapes onnxruntime produced "
                          f"at batch {self.batch} (FLOPs = 2 × MACs); bytes: weights + activations read and "
                          "written per node at the graph's dtypes"}


def _observed(model: Any, feeds: dict[str, np.ndarray]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Tensor name -> (shape, dtype) of every tensor, from one onnxruntime run with all of them as outputs."""
    onnx = require("onnx", "onnx")
    ort = require("onnxruntime", "onnx")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    names = [o for n in m.graph.node for o in n.output if o and o not in have]
    m.graph.output.extend([onnx.ValueInfoProto(name=n) for n in names])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every node as written
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
        wanted = [o.name for o in session.get_outputs()]
        values = session.run(wanted, feeds)
    except Exception as exc:  # onnxruntime raises its own error types (Fail, InvalidArgument, ...)
        raise BackendError(f"onnxruntime could not run the graph to read its shapes: {str(exc)[:300]}; check that "
                           "the model runs with `laser bench MODEL --backends onnxruntime`") from exc
    out = {k: (tuple(np.shape(v)), np.asarray(v).dtype) for k, v in zip(wanted, values)}
    out.update({k: (v.shape, v.dtype) for k, v in feeds.items()})
    return out


def _precision(dtype: np.dtype) -> str:
    return {"float16": "fp16", "int8": "int8", "uint8": "int8"}.get(str(dtype), "fp32")


def graph_cost(model_or_path: Any, spec: Any, batch: int = 1) -> GraphCost:
    """The per-op costs of an ONNX graph (a ModelProto or a path) run at ``batch`` on ``spec``'s example inputs."""
    onnx = require("onnx", "onnx")
    from onnx import numpy_helper

    model = onnx.load(str(model_or_path)) if isinstance(model_or_path, (str, Path)) else model_or_path
    seen = _observed(model, spec.example_inputs(batch=batch))
    inits = {}
    for i in model.graph.initializer:
        arr = numpy_helper.to_array(i)
        inits[i.name] = (tuple(arr.shape), arr.dtype)
    types = {**inits, **seen}
    shapes: dict[str, list[int | None]] = {k: list(s) for k, (s, _) in types.items()}
    producer = {o: n for n in model.graph.node for o in n.output}

    def dequantized(name: str) -> bool:
        p = producer.get(name)
        return p is not None and p.op_type == "DequantizeLinear"

    def nbytes(name: str) -> int:
        shape, dtype = types.get(name, ((), np.dtype("float32")))
        if dequantized(name):  # the fused kernel reads the int8 tensor behind the DequantizeLinear
            dtype = types.get(producer[name].input[0], (shape, dtype))[1]
        return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize

    def is_weight(name: str) -> bool:
        return name in inits or (dequantized(name) and producer[name].input[0] in inits)

    ops = []
    for node in model.graph.node:
        if node.op_type in _NO_TRAFFIC:
            continue
        weights = sum(nbytes(i) for i in node.input if i and is_weight(i))
        acts = sum(nbytes(i) for i in node.input if i and not is_weight(i)) + sum(nbytes(o) for o in node.output if o)
        macs = node_macs(node, shapes) or 0
        data = node.input[0] if node.input else ""
        if node.op_type in _INTEGER_OPS or (macs and dequantized(data) and len(node.input) > 1
                                             and dequantized(node.input[1])):
            precision = "int8"
        else:
            precision = _precision(types.get(data, ((), np.dtype("float32")))[1])
            precision = "fp32" if precision == "int8" else precision  # a float op reading int8 (Gather ...)
        ops.append(Op(node.name or node.op_type, node.op_type, int(macs), precision, weights, acts))
    weight_total = sum(int(np.prod(s, dtype=np.int64)) * d.itemsize for s, d in inits.values())
    return GraphCost(tuple(ops), frozenset(n.op_type for n in model.graph.node), batch, weight_total)


@dataclass(frozen=True)
class Efficiency:
    """What a real model reaches of the peaks, and the fixed cost of each op (fitted on a measured machine)."""

    compute: float = 1.0  # fraction of peak throughput
    memory: float = 1.0  # fraction of peak bandwidth (> 1 when activations stay in cache)
    overhead_s: float = 0.0  # per op
    method: str = "not fitted: peaks as stated, no per-op overhead"

    def to_dict(self) -> dict[str, Any]:
        return {"compute": self.compute, "memory": self.memory, "overhead_us": self.overhead_s * 1e6,
                "method": self.method}


@dataclass(frozen=True)
class Prediction:
    seconds: float  # one call at the batch
    compute_s: float
    memory_s: float
    overhead_s: float
    compute_bound_ops: int
    memory_bound_ops: int
    precision: str
    memory_modelled: bool
    op_seconds: tuple[float, ...] = ()  # per op of the graph, overhead included
    op_memory_bound: tuple[bool, ...] = ()

    def top_ops(self, cost: GraphCost, n: int = 5) -> list[dict[str, Any]]:
        """The ``n`` ops that take longest, with what bounds each."""
        order = sorted(range(len(self.op_seconds)), key=lambda i: -self.op_seconds[i])[:n]
        return [{"op": cost.ops[i].name, "type": cost.ops[i].op_type, "ms": 1e3 * self.op_seconds[i],
                 "bound": "memory" if self.op_memory_bound[i] else "compute" if cost.ops[i].macs else "overhead"}
                for i in order]


def arrays(cost: GraphCost, precision: str) -> tuple[np.ndarray, np.ndarray]:
    """(FLOPs per op, bytes per op from memory) with the bytes scaled to ``precision``: weights always, an
    op's activations only when they exceed ON_CHIP_BYTES (smaller ones stay in cache / SRAM)."""
    flops = np.array([2.0 * op.macs for op in cost.ops])
    scale = np.array([BYTES_PER_ELEMENT[precision] / BYTES_PER_ELEMENT.get(op.precision, 4) for op in cost.ops])
    weights = np.array([float(op.weight_bytes) for op in cost.ops]) * scale
    acts = np.array([float(op.activation_bytes) for op in cost.ops]) * scale
    return flops, weights + np.where(acts > ON_CHIP_BYTES, acts, 0.0)


def predict(cost: GraphCost, peak_ops: float, bandwidth: float | None, eff: Efficiency, precision: str,
            ) -> Prediction:
    """Seconds per call of ``cost`` on a device with ``peak_ops`` op/s and ``bandwidth`` B/s (None: unknown)."""
    flops, moved = arrays(cost, precision)
    tc = flops / (peak_ops * eff.compute)
    tm = moved / (bandwidth * eff.memory) if bandwidth else np.zeros_like(tc)
    per_op = np.maximum(tc, tm)
    overhead = eff.overhead_s * len(cost.ops)
    busy = flops > 0
    return Prediction(seconds=float(per_op.sum() + overhead), compute_s=float(tc.sum()), memory_s=float(tm.sum()),
                      overhead_s=overhead, compute_bound_ops=int(((tc >= tm) & busy).sum()),
                      memory_bound_ops=int((tm > tc).sum()), precision=precision, memory_modelled=bool(bandwidth),
                      op_seconds=tuple(float(t) for t in per_op + eff.overhead_s),
                      op_memory_bound=tuple(bool(b) for b in tm > tc))
