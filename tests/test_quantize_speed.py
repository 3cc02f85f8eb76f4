"""The speed check: quantized vs FP32 measured on onnxruntime, and the explanation when not faster."""

from __future__ import annotations

import pytest

from laser.compress.quant_check import MIN_MACS, mac_split, runtime_ops, speed_note
from laser.compress.quantize import Quantize

# digits-cnn: 8x8 outputs x (1*9) x 32 + 8x8 x (32*9) x 64 + 4x4 x (64*9) x 128 conv MACs, 128 x 10 in the classifier
DIGITS_MACS = 64 * 9 * 32 + 64 * 288 * 64 + 16 * 576 * 128 + 1280
MOBILENET_LIKE_OPS = {"QLinearConv": 52, "QuantizeLinear": 39, "DequantizeLinear": 39, "HardSigmoid": 28,
                      "QLinearMul": 28, "ReduceMean": 10, "Transpose": 2, "QGemm": 2}


def test_slower_int8_gets_a_note_naming_the_conversions_and_float_ops():
    note = speed_note(1.6, {"fp32": 1.8, "quantized": 2.9}, 56_000_000, MOBILENET_LIKE_OPS)
    assert note.startswith("quantized model is not faster: measured 1.60 x the FP32 latency (2.90 vs 1.80 ms")
    assert "78 QuantizeLinear/DequantizeLinear conversions" in note
    assert "28 HardSigmoid, 10 ReduceMean" in note and "QLinearMul" not in note.split("float (")[1]
    assert "56 M MACs" in note


def test_faster_or_tiny_models_get_no_note():
    assert speed_note(0.4, {"fp32": 16.0, "quantized": 6.4}, 1_800_000_000, MOBILENET_LIKE_OPS) is None
    assert speed_note(1.5, {"fp32": 0.03, "quantized": 0.045}, MIN_MACS - 1, MOBILENET_LIKE_OPS) is None


@pytest.fixture(scope="module")
def digits_int8(digits_artifact):
    from laser.export import export

    return Quantize("int8-static", calibration="digits", samples=32, progress=False)(export(digits_artifact))


def test_quantize_records_measured_latency_of_both_models(digits_int8):
    speed = digits_int8.lineage[-1].results["speed"]
    assert speed["fp32_p50_ms"] > 0 and speed["quantized_p50_ms"] > 0
    assert speed["ratio"] == pytest.approx(speed["quantized_p50_ms"] / speed["fp32_p50_ms"], rel=0.01)
    assert speed["macs"] == DIGITS_MACS and "measured" in speed["method"]


def test_runtime_ops_are_the_fused_graph_onnxruntime_executes(digits_int8):
    ops = runtime_ops(digits_int8.model_file)
    assert ops.get("QLinearConv") == 3 and ops.get("Conv", 0) == 0  # every conv runs in int8


def test_mac_split_counts_conv_and_gemm_macs(digits_artifact, tmp_path):
    import torch

    path = tmp_path / "m.onnx"
    torch.onnx.export(digits_artifact.module, (torch.zeros(1, 1, 8, 8),), str(path), input_names=["input"],
                      dynamo=False)
    split = mac_split(path)
    assert split["conv"] == DIGITS_MACS - 1280
    assert split["matmul"] == 1280 and split["total"] == DIGITS_MACS
