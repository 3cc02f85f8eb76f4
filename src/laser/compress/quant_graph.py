"""ONNX-graph helpers of the Quantize stage: ORT pre-processing, FP16 conversion, the BF16 probe, and
keeping onnxruntime.quantization's output (files, stdout, logs) tidy."""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from laser.compress.quant_check import MEASURED_RESNET18_MS
from laser.errors import BackendError, require


def fp16_quantizer(src: Path, notes: list[str]):
    onnx = require("onnx", "onnx")
    ort = require("onnxruntime", "onnx")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    if not {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()):
        notes.append(f"fp16 on onnxruntime's CPU provider runs FP32 kernels with casts around them (an example "
                     f"measured elsewhere, ResNet-18: {MEASURED_RESNET18_MS['fp16']} ms vs "
                     f"{MEASURED_RESNET18_MS['fp32']} ms FP32): "
                     "the file halves, latency does not improve. Use int8-static for CPU speed")

    def run(dst: Path, exclude: Sequence[str], only: Sequence[str] | None) -> None:
        model = onnx.load(str(src))
        names = [n.name for n in model.graph.node]
        block = set(exclude) | ({n for n in names if n not in set(only)} if only is not None else set())
        with quiet():  # keep_io_types: float32 in and out, so the artifact's spec does not change
            half = convert_float_to_float16(model, keep_io_types=True, node_block_list=sorted(block))
        onnx.save(half, str(dst))

    return run, {"keep_io_types": True, "converter": "onnxruntime.transformers.float16"}


def bf16_probe():
    """bfloat16 needs bf16 kernels: probe the providers this onnxruntime has with a one-node bf16 MatMul."""
    ort = require("onnxruntime", "onnx")
    require("onnx", "onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [2, 4])
    w = helper.make_tensor_value_info("w", TensorProto.BFLOAT16, [4, 3])
    y = helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [2, 3])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "bf16-probe", [x, w], [y])
    probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    providers = ort.get_available_providers()
    try:
        ort.InferenceSession(probe.SerializeToString(), providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise BackendError(
            f"bf16 is not supported by this onnxruntime (providers {providers}): a bfloat16 MatMul fails to load "
            f"({str(exc).splitlines()[0][:120]}); ONNX Conv has no bfloat16 type before opset 22 either. Use "
            "fp16 (smaller file) or int8-static (faster on CPU); a bf16-capable CPU (amx_bf16) is reached through "
            "runtimes that choose bf16 internally, not through an ONNX conversion: laser.Precision('bf16') runs the "
            "FP32 ONNX in bf16 on OpenVINO (recipe bf16 of laser optimize)") from exc
    raise BackendError(f"this onnxruntime has bfloat16 kernels ({providers}), but laser has no bfloat16 graph "
                       "converter yet (only the probe runs here); use fp16 on this runtime")


def preprocess(model: Path, dst: Path) -> tuple[Path, str | None]:
    """ORT's quantization pre-processing (symbolic shape inference, graph optimisation). A model it
    cannot process is quantized as is, with a note."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        # When symbolic shape inference is incomplete, onnxruntime saves "sym_shape_infer_temp.onnx" (+ its
        # external data) into the *current directory* before raising: run it from a private directory.
        with quiet(), tempfile.TemporaryDirectory(prefix="laser-prep-") as scratch, contextlib.chdir(scratch):
            quant_pre_process(str(Path(model).resolve()), str(Path(dst).resolve()))
        return dst, None
    except Exception as exc:  # shape inference raises many types on exotic graphs
        return model, f"quant_pre_process failed ({type(exc).__name__}: {str(exc)[:120]}); quantized without it"


@contextlib.contextmanager
def quiet():
    """onnxruntime.quantization prints to stdout and logs at INFO/WARNING on the root logger: keep stdout
    clean for --json and its chatter at debug level."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        root.setLevel(level)
