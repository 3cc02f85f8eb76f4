"""ONNX -> PyTorch through onnx2torch, as a torch artifact that pruning, distillation, QAT and
fine-tuning accept.

The converted module is an ``torch.fx.GraphModule`` of onnx2torch layers. To rebuild it from a bundle
(``Artifact.module``), the manifest's architecture names the factory ``rebuild`` with the graph itself
as its argument: the prepared ONNX graph with its large float tensors emptied (their shapes kept), zlib
compressed and base64 encoded. The weights live in the bundle's safetensors like any torch artifact's,
so a pruned import is rebuilt as factory -> the recorded pruning transform -> weights.

Before conversion the graph is prepared: ``Constant`` nodes become initializers (onnx2torch reads
layer weights from initializers), ``Identity`` nodes are skipped, and a bias added after a convolution (``Conv`` then ``Add`` of a
reshaped constant, as Paddle exports it) is folded into the convolution, so that pruning the
convolution's channels shrinks its bias too.
"""

from __future__ import annotations

import base64
import warnings
import zlib
from typing import Any

import numpy as np

from laser.errors import ConfigError, require

KEEP_VALUES = 64  # float tensors up to this many elements keep their values in the recorded graph
DOWNGRADE_OPSETS = (18, 17, 13)  # tried, newest first, when onnx2torch lacks converters at the model's opset
EMPTIED = "laser:emptied"  # doc_string of a tensor whose values were left out (zeros on rebuild)


def prepare(model: Any) -> Any:
    """A copy of ``model`` with Constant nodes as initializers and conv biases folded in."""
    onnx = require("onnx", "onnx")
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    keep = []
    for n in m.graph.node:
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(n.attribute[0].t)
            t.name = n.output[0]
            m.graph.initializer.append(t)
        else:
            keep.append(n)
    keep = _skip_identities(m, keep)
    inits = {t.name: t for t in m.graph.initializer}
    producers = {o: n for n in keep for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in keep:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    drop = set()
    for add in keep:
        conv = producers.get(add.input[0]) if add.op_type == "Add" and len(add.input) == 2 else None
        if conv is None or conv.op_type != "Conv" or len(conv.input) != 2 or len(consumers[conv.output[0]]) != 1:
            continue
        bias = _constant(add.input[1], inits, producers)
        if bias is None or bias.size != int(numpy_helper.to_array(inits[conv.input[1]]).shape[0]):
            continue
        name = conv.input[1] + "_folded_bias"
        m.graph.initializer.append(numpy_helper.from_array(bias.reshape(-1).astype(np.float32), name))
        conv.input.append(name)
        conv.output[0] = add.output[0]
        drop.add(id(add))
    del m.graph.node[:]
    m.graph.node.extend(n for n in keep if id(n) not in drop)
    return m


def _skip_identities(m: Any, nodes: list[Any]) -> list[Any]:
    """Identity nodes removed (their readers read the source): torch's exporter routes BatchNorm
    weights through them, and onnx2torch then makes the BatchNorm a function of runtime inputs."""
    outputs = {o.name for o in m.graph.output}
    alias = {n.output[0]: n.input[0] for n in nodes if n.op_type == "Identity" and n.output[0] not in outputs}

    def source(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    kept = [n for n in nodes if not (n.op_type == "Identity" and n.output[0] in alias)]
    for n in kept:
        for i, name in enumerate(n.input):
            n.input[i] = source(name)
    return kept


def _constant(name: str, inits: dict[str, Any], producers: dict[str, Any]) -> np.ndarray | None:
    """The values behind ``name`` if it is an initializer or a Reshape of one (else None)."""
    from onnx import numpy_helper

    if name in inits:
        return numpy_helper.to_array(inits[name])
    node = producers.get(name)
    if node is not None and node.op_type == "Reshape" and node.input[0] in inits:
        return numpy_helper.to_array(inits[node.input[0]])
    return None


def encode(model: Any) -> str:
    """The graph without its large float values, compressed, as text for the manifest."""
    onnx = require("onnx", "onnx")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in m.graph.initializer:
        if t.data_type in (1, 10, 11) and int(np.prod(t.dims)) > KEEP_VALUES:
            t.ClearField("raw_data")
            t.ClearField("float_data")
            t.ClearField("double_data")
            t.ClearField("int32_data")
            t.doc_string = EMPTIED
    return base64.b64encode(zlib.compress(m.SerializeToString(), 9)).decode("ascii")


def decode(graph: str) -> Any:
    onnx = require("onnx", "onnx")
    from onnx import helper

    try:
        m = onnx.load_from_string(zlib.decompress(base64.b64decode(graph)))
    except Exception as exc:
        raise ConfigError(f"the recorded ONNX graph is unreadable ({type(exc).__name__}); re-import the model") from exc
    for t in m.graph.initializer:
        if t.doc_string == EMPTIED:
            dtype = helper.tensor_dtype_to_np_dtype(t.data_type)
            t.raw_data = np.zeros(tuple(t.dims), dtype=dtype).tobytes()
            t.doc_string = ""
    return m


def convert(model: Any) -> Any:
    """onnx2torch's module for a prepared graph, in eval mode; unconverted ops are named."""
    from laser.vision_compat import torchvision

    torchvision()  # onnx2torch imports torchvision, which needs laser's compat import on this torch
    onnx = require("onnx", "onnx")
    onnx2torch = require("onnx2torch", "import", "onnx2torch")
    from onnx2torch.node_converters import get_converter

    _export_compat()
    # onnx2torch's Slice indexes with a list on every call; torch warns each time. Not actionable here.
    warnings.filterwarnings("ignore", message="Using a non-tuple sequence for multidimensional indexing")

    opset, missing = _unconverted(model, get_converter)
    for older in (v for v in DOWNGRADE_OPSETS if v < opset and missing):
        try:  # onnx2torch lags the newest opsets: the same graph at an older opset often converts
            candidate = onnx.version_converter.convert_version(model, older)
        except Exception:  # the version converter raises RuntimeError/ValueError per adapter
            continue
        if not _unconverted(candidate, get_converter)[1]:
            model, opset, missing = candidate, older, set()
    if missing:
        raise ConfigError(f"onnx2torch has no converter for these ops (opset {opset}): {', '.join(sorted(missing))}; "
                          "keep the model as ONNX (--to onnx) or replace those ops")
    try:
        module = onnx2torch.convert(model)
    except Exception as exc:
        raise ConfigError(f"onnx2torch could not convert the graph: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from exc
    return _last_axis_softmax(module).eval()


def _last_axis_softmax(module: Any) -> Any:
    """onnx2torch's opset<13 Softmax flattens and reshapes back to the traced shape, which fixes the
    batch of a re-exported ONNX graph; on the last axis that is plain softmax: use it."""
    import torch
    from onnx2torch.node_converters.activations import OnnxSoftmaxV1V11

    class LastAxisSoftmax(OnnxSoftmaxV1V11):
        def forward(self, input_tensor: torch.Tensor) -> torch.Tensor:
            if self.axis in (-1, input_tensor.dim() - 1):
                return torch.log_softmax(input_tensor, -1) if self.is_log else torch.softmax(input_tensor, -1)
            return super().forward(input_tensor)

    for name, child in list(module.named_children()):
        if type(child) is OnnxSoftmaxV1V11:
            setattr(module, name, LastAxisSoftmax(child.axis, child.is_log))
    return module


def _export_compat() -> None:
    """onnx2torch's layers read the opset being exported from ``torch.onnx.symbolic_helper.GLOBALS``,
    which torch 2.13 keeps in its TorchScript exporter package: point the old name at it, so that the
    legacy exporter can export an imported (and pruned) model to ONNX again."""
    import torch.onnx.symbolic_helper as helper

    if not hasattr(helper, "GLOBALS"):
        from torch.onnx._internal.torchscript_exporter._globals import GLOBALS

        helper.GLOBALS = GLOBALS  # type: ignore[attr-defined]


def _unconverted(model: Any, get_converter: Any) -> tuple[int, set[str]]:
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    missing = set()
    for n in model.graph.node:
        try:
            get_converter(n.op_type, opset, n.domain or "")
        except NotImplementedError:
            missing.add(n.op_type)
    return opset, missing


def rebuild(graph: str) -> Any:
    """Architecture factory: the onnx2torch module of a recorded graph (zero weights; the bundle's
    safetensors are loaded right after)."""
    return convert(decode(graph))
