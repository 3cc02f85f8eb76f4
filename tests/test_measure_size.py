import warnings

import numpy as np
import pytest
import torch

from laser.artifact import Artifact, Step
from laser.measure.size import compressed_bytes, flops, parameters, peak_activation_bytes, size_of
from laser.measure.size_onnx import graph_macs, macs_from_lineage


def test_flops_are_twice_macs_and_every_figure_has_a_method(digits_artifact):
    s = size_of(digits_artifact)
    assert s["flops"] == 2 * s["macs"] and s["macs"] > 1_000_000
    for key in ("params", "nonzero_params", "macs", "flops", "bytes", "bytes_compressed", "bytes_by_dtype",
                "peak_activation_bytes"):
        assert key in s and s["method"][key], key
    assert "1 MAC = 2 FLOPs" in s["method"]["macs"]


def test_linear_layer_macs_are_in_times_out():
    from laser.spec import ModelSpec, TensorSpec

    spec = ModelSpec(inputs=(TensorSpec("x", "float32", ("batch", 16)),), outputs=(TensorSpec("y", "float32", ("batch", 4)),))
    assert flops(torch.nn.Linear(16, 4), spec) == 2 * 16 * 4


def test_nonzero_params_drop_when_weights_are_zeroed():
    m = torch.nn.Linear(10, 10)
    with torch.no_grad():
        m.weight[:5] = 0
    assert parameters(m) == (110, 60)


def test_bytes_by_dtype_and_compression_of_the_weights_file(digits_artifact):
    s = size_of(digits_artifact, activations=False)
    assert sum(s["bytes_by_dtype"].values()) <= s["bytes"]
    float_buffers = sum(b.numel() for b in digits_artifact.module.buffers() if b.dtype == torch.float32)
    assert s["bytes_by_dtype"]["float32"] == 4 * (s["params"] + float_buffers)
    assert s["bytes_by_dtype"]["int64"] == 8 * 3  # BatchNorm's num_batches_tracked, one per block
    assert 0 < s["bytes_compressed"] <= s["bytes"] * 1.01


def test_compressed_bytes_shrink_a_sparse_file(tmp_path, digits_artifact):
    path = tmp_path / "zeros.bin"
    path.write_bytes(bytes(100_000))
    art = Artifact.from_files({"zeros.bin": path}, name="z", task="generic", format="onnx", spec=digits_artifact.spec)
    assert compressed_bytes(art) < 1_000


def test_peak_activations_cover_the_largest_layer_pair(digits_artifact):
    peak = peak_activation_bytes(digits_artifact.module, digits_artifact.spec)
    # conv2 reads a (1, 32, 8, 8) and writes a (1, 64, 8, 8) float32 tensor: both live at once
    assert peak >= (32 + 64) * 64 * 4
    assert peak < 1_000_000


def _onnx_artifact(module, spec, tmp_path):
    from laser.loader import import_onnx

    path = tmp_path / "m.onnx"
    torch.onnx.export(module.eval(), (torch.zeros(1, *spec.inputs[0].shape[1:]),), str(path), dynamo=False,
                      input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}})
    return import_onnx(path)


def test_onnx_macs_counted_from_the_graph_match_torch(digits_artifact, tmp_path):
    onnx_art = _onnx_artifact(digits_artifact.module, digits_artifact.spec, tmp_path)
    s = size_of(onnx_art)
    torch_s = size_of(digits_artifact, activations=False)
    assert s["macs"] == torch_s["macs"] and s["flops"] == 2 * s["macs"]
    assert "counted: from the ONNX graph" in s["method"]["macs"]
    # BatchNorm folds into the conv weights on export: fewer initializer elements than torch parameters+buffers
    assert 0.9 * torch_s["params"] < s["params"] <= torch_s["params"] + 1000
    assert set(s["bytes_by_dtype"]) >= {"float32"}


def test_onnx_macs_come_from_the_lineage_when_recorded(digits_artifact, tmp_path):
    onnx_art = _onnx_artifact(digits_artifact.module, digits_artifact.spec, tmp_path)
    recorded = onnx_art.derive(Step("export", params={}, results={"macs": 12345}))
    assert macs_from_lineage(recorded) == (12345, "export")
    s = size_of(recorded)
    assert s["macs"] == 12345 and s["flops"] == 24690 and "lineage" in s["method"]["macs"]


def test_graph_macs_of_a_matmul_model(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((8, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 5, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5, 3])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    assert graph_macs(model) == (5 * 8 * 3, [])


@pytest.mark.parametrize("groups", [1, 4])
def test_graph_macs_of_grouped_convolutions(tmp_path, groups):
    from laser.spec import ModelSpec, TensorSpec

    conv = torch.nn.Conv2d(8, 16, 3, padding=1, groups=groups, bias=False)
    spec = ModelSpec(inputs=(TensorSpec("input", "float32", ("batch", 8, 6, 6)),),
                     outputs=(TensorSpec("logits", "float32", ("batch", 16, 6, 6)),))
    art = _onnx_artifact(conv, spec, tmp_path)
    import onnx

    assert graph_macs(onnx.load(str(art.model_file)))[0] == 16 * 36 * (8 // groups) * 9 == flops(conv, spec) // 2


@pytest.fixture(scope="module")
def digits_onnx(digits_artifact):
    import laser

    return laser.export(digits_artifact, to="onnx")


def test_torchscript_macs_are_counted_on_the_loaded_module(digits_artifact):
    import laser

    ts = laser.export(digits_artifact, to="torchscript")
    s, torch_s = size_of(ts, activations=False), size_of(digits_artifact, activations=False)
    assert s["macs"] == torch_s["macs"] and s["flops"] == 2 * s["macs"] == torch_s["flops"]
    assert "flop_counter on the loaded TorchScript module" in s["method"]["flops"]
    # frozen graph: BatchNorm folded into the convolutions, so a few parameters fewer than torch
    assert 0.9 * torch_s["params"] < s["params"] <= torch_s["params"] and s["bytes_by_dtype"]["float32"] > 0


@pytest.mark.parametrize("method", ["fp16", "int8-static"])
def test_quantized_onnx_macs_are_counted_from_the_graph_whatever_the_dtype(digits_artifact, digits_onnx, method):
    import onnx

    from laser.compress.quantize import quantize

    options = {"calibration": "random", "samples": 16} if method == "int8-static" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fp16's 'no faster on this CPU' QuantizeWarning
        q = quantize(digits_onnx, method, check_speed=False, **options)
    torch_macs = size_of(digits_artifact, activations=False)["macs"]
    # the graph itself (not the lineage): fp16 graphs list their input Casts last and keep the
    # exporter's symbolic 'batch' dims, QDQ graphs feed Conv from DequantizeLinear
    assert graph_macs(onnx.load(str(q.model_file))) == (torch_macs, [])
    s = size_of(q, activations=False)
    assert s["macs"] == torch_macs and s["flops"] == 2 * torch_macs
