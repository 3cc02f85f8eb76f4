"""What one inference does, layer by layer: MACs at the precision they run in, and bytes moved.

The energy model (``laser.measure.energy``) prices these: a MAC at its precision, a byte of weights or
activations at the energy of the memory level it comes from. Per layer:

- ``macs``: multiply-accumulates (counted as ``torch.utils.flop_counter`` / ``size_onnx.node_macs``
  count them: Conv, Gemm/MatMul/Linear; element-wise ops 0).
- ``precision``: fp32 / fp16 / bf16 / int8, from the tensors the layer computes on (torch dtypes;
  ONNX elem types; integer ops and QDQ-fed Conv/MatMul are int8, as onnxruntime fuses them).
- ``weight_bytes``: constants read (parameters, buffers, initializers; int8 weights behind a
  DequantizeLinear count 1 byte each).
- ``activation_bytes``: tensors produced during the forward (and the graph inputs) that the layer
  reads, plus what it writes. Views and reshapes move nothing and are left out.

All at batch 1. Where no per-layer view exists (an artifact format laser cannot walk, or a walk that
failed), ``fallback`` derives one layer from the size figures: weights = bytes of the weights,
activations = 2 × peak activation bytes (written once, read once: a lower bound), and says so.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from math import prod
from typing import Any

from laser.artifact import Artifact

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class Layer:
    op: str
    macs: int
    precision: str  # one of PRECISIONS
    weight_bytes: int
    activation_bytes: int  # read + written


@dataclass(frozen=True)
class Workload:
    layers: tuple[Layer, ...]
    source: str  # how the layers were obtained, in words

    def macs_by_precision(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for layer in self.layers:
            if layer.macs:
                out[layer.precision] += layer.macs
        return dict(out)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def weight_bytes(self) -> int:
        return sum(layer.weight_bytes for layer in self.layers)

    @property
    def activation_bytes(self) -> int:
        return sum(layer.activation_bytes for layer in self.layers)

    def with_precision(self, precision: str | None) -> Workload:
        """The same workload with its fp32 layers run at ``precision`` (e.g. OpenVINO's bf16 hint)."""
        if precision in (None, "fp32"):
            return self
        layers = tuple(Layer(x.op, x.macs, precision if x.precision == "fp32" else x.precision, x.weight_bytes,
                             x.activation_bytes) for x in self.layers)
        return Workload(layers, f"{self.source}; fp32 layers run at {precision} (runtime precision)")

    def summary(self) -> dict[str, Any]:
        return {"macs_by_precision": self.macs_by_precision(), "weight_bytes": self.weight_bytes,
                "activation_bytes": self.activation_bytes, "layers": len(self.layers), "source": self.source}


def precision_of_dtype(dtype: Any) -> str:
    """fp32 / fp16 / bf16 / int8 for a torch dtype (or its name); anything else reads as fp32."""
    name = str(dtype).removeprefix("torch.")
    if name in ("float16", "half"):
        return "fp16"
    if name == "bfloat16":
        return "bf16"
    if name in ("qint8", "quint8", "int8", "uint8", "qint32"):
        return "int8"
    return "fp32"


# -- torch / TorchScript -------------------------------------------------------------------------

def torch_workload(module: Any, spec: Any, what: str = "torch eager") -> Workload:
    """Layers of one batch-1 forward of a torch (or scripted) module, seen at the dispatcher.

    A tensor an op reads is an activation when an earlier op produced it (or it is a graph input),
    else a weight (parameters, buffers, constants of a frozen TorchScript graph). MACs per op are the
    FLOPs ``torch.utils.flop_counter`` adds during that op, halved."""
    import torch
    from torch.utils import _pytree as pytree
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    from laser.measure.size import _example_args

    args = _example_args(spec, module)
    produced = {t.untyped_storage().data_ptr() for t in args}
    counter = FlopCounterMode(display=False)
    layers: list[Layer] = []

    def nbytes(t: torch.Tensor) -> int:
        return int(t.numel() * t.element_size())

    class Tracker(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            before = counter.get_total_flops()
            out = func(*args, **(kwargs or {}))
            outs = [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
            ins = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
            in_ptrs = {t.untyped_storage().data_ptr() for t in ins}
            mutates = bool(getattr(getattr(func, "_schema", None), "is_mutable", False))
            if not outs or getattr(func, "is_view", False) or (
                    not mutates and all(t.untyped_storage().data_ptr() in in_ptrs for t in outs)):
                return out  # a check (aten.equal), a view or an alias: nothing moved
            weights = acts = 0
            precision = None
            for t in ins:
                if t.untyped_storage().data_ptr() in produced:
                    acts += nbytes(t)
                    if precision is None and (t.is_floating_point() or t.is_quantized):
                        precision = precision_of_dtype(t.dtype)
                else:
                    weights += nbytes(t)
            for t in outs:
                acts += nbytes(t)
                produced.add(t.untyped_storage().data_ptr())
            macs = int(counter.get_total_flops() - before) // 2
            if precision is None:  # an op on weights only: take the dtype of what it wrote
                precision = precision_of_dtype(outs[0].dtype)
            name = getattr(getattr(func, "overloadpacket", None), "__name__", str(func))
            layers.append(Layer(name, macs, precision, weights, acts))
            return out

    with counter, Tracker(), torch.inference_mode():
        module(*args)
    return Workload(tuple(layers), f"counted per op in one batch-1 {what} forward (TorchDispatchMode + "
                                   "flop_counter): weights = tensors no op produced, activations = op inputs "
                                   "from earlier ops and op outputs; views left out")


# -- ONNX ----------------------------------------------------------------------------------------

_INTEGER_OPS = {"ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul"}
# Nodes that onnxruntime folds away or that only relabel a buffer: no bytes moved.
_NO_TRAFFIC = {"QuantizeLinear", "DequantizeLinear", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Shape",
               "Constant", "Identity", "Size", "ConstantOfShape"}


def _elem_size(elem_type: int) -> float:
    try:
        from onnx import helper

        return float(helper.tensor_dtype_to_np_dtype(elem_type).itemsize)
    except Exception:  # an elem type numpy has no dtype for (4-bit, float8 variants): count 1 byte
        return 1.0


def _onnx_precision(elem_type: int) -> str:
    from onnx import TensorProto

    names: dict[int, str] = {TensorProto.FLOAT16: "fp16", TensorProto.BFLOAT16: "bf16", TensorProto.INT8: "int8",
                             TensorProto.UINT8: "int8"}
    return names.get(elem_type, "fp32")


def onnx_workload(model: Any) -> Workload:
    """Layers of an ONNX graph at batch 1, from shape inference (any dtype: fp32, fp16, QDQ, integer ops)."""
    from laser.measure.size_onnx import _infer, _known, node_macs, tensor_types

    inferred = _infer(model)
    types = tensor_types(model, inferred)
    shapes = {k: s for k, (s, _) in types.items()}
    inits = {i.name for i in inferred.graph.initializer}
    producer = {o: n for n in inferred.graph.node for o in n.output}
    consumers: dict[str, list[Any]] = defaultdict(list)
    for n in inferred.graph.node:
        for i in n.input:
            consumers[i].append(n)
    unknown: set[str] = set()

    def dequantized(name: str) -> bool:
        p = producer.get(name)
        return p is not None and p.op_type == "DequantizeLinear"

    def size(name: str) -> int:
        """Bytes of tensor ``name`` as the fused kernel sees it (int8 behind a Q/DQ pair)."""
        shape, elem = types.get(name, (None, 0))
        if shape is None or not _known(shape):
            unknown.add(name)
            return 0
        if dequantized(name):
            elem = types.get(producer[name].input[0], (None, elem))[1]
        elif consumers.get(name) and all(c.op_type == "QuantizeLinear" for c in consumers[name]):
            q = consumers[name][0]
            zero = q.input[2] if len(q.input) > 2 and q.input[2] else None
            elem = types[zero][1] if zero in types else 2  # default zero point: uint8
        return int(prod(d for d in shape if d is not None) * _elem_size(elem))

    def is_weight(name: str) -> bool:
        return name in inits or (dequantized(name) and producer[name].input[0] in inits)

    layers: list[Layer] = []
    for node in inferred.graph.node:
        if node.op_type in _NO_TRAFFIC:
            continue
        weights = acts = 0
        for i in node.input:
            if not i:
                continue
            if is_weight(i):
                weights += size(i)
            else:
                acts += size(i)
        acts += sum(size(o) for o in node.output if o)
        macs = node_macs(node, shapes) or 0
        data = node.input[0] if node.input else ""
        if node.op_type in _INTEGER_OPS:
            precision = "int8"
        elif macs and dequantized(data) and len(node.input) > 1 and dequantized(node.input[1]):
            precision = "int8"  # QDQ around Conv/MatMul/Gemm: onnxruntime runs QLinearConv / QLinearMatMul
        else:
            precision = _onnx_precision(types.get(data, (None, 1))[1])
            precision = "fp32" if precision == "int8" else precision  # a float op reading int8 (Gather...)
        layers.append(Layer(node.op_type, int(macs), precision, weights, acts))
    note = f"; {len(unknown)} tensors of unknown shape not counted" if unknown else ""
    return Workload(tuple(layers), "counted per node of the ONNX graph at batch 1 (shape inference): weights = "
                                   "initializers (int8 behind DequantizeLinear), activations = node inputs + "
                                   f"outputs; Q/DQ, reshapes and views left out{note}")


# -- any artifact --------------------------------------------------------------------------------

def fallback(size: dict[str, Any], why: str) -> Workload:
    """One layer from the size figures: MACs, weights bytes, 2 × peak activations (see module doc)."""
    by_dtype = size.get("bytes_by_dtype") or {}
    weights = int(sum(by_dtype.values()) or size.get("bytes") or 0)
    per_precision: Counter[str] = Counter()
    for dtype, b in by_dtype.items():
        per_precision[precision_of_dtype(dtype)] += b
    precision = per_precision.most_common(1)[0][0] if per_precision else "fp32"
    acts = 2 * int(size.get("peak_activation_bytes") or 0)
    layer = Layer("model", int(size.get("macs") or 0), precision, weights, acts)
    act_how = "2 × peak activation bytes" if acts else "activations unknown (0)"
    return Workload((layer,), f"derived from the size figures ({why}): MACs, weights = bytes of the weights, "
                              f"{act_how}; precision = dtype holding most weight bytes ({precision})")


def of_artifact(artifact: Artifact, size: dict[str, Any] | None = None) -> Workload:
    """The per-layer workload of ``artifact``, else (with ``size``) the fallback from its size figures."""
    try:
        if artifact.format == "torch":
            return torch_workload(artifact.module, artifact.spec, "torch eager")
        if artifact.format == "torchscript":
            from laser.measure.size import load_torchscript

            return torch_workload(load_torchscript(artifact), artifact.spec, "TorchScript")
        if artifact.format == "onnx":
            import onnx

            # Shapes and dtypes are all the walk needs: external weight files stay on disk.
            return onnx_workload(onnx.load(str(artifact.model_file), load_external_data=False))
        why = f"laser does not walk {artifact.format} graphs"
    except Exception as exc:  # any failure of a walk leaves the size-based estimate, stated
        why = f"the per-layer walk failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
    return fallback(size or {"bytes": artifact.bytes}, why)
