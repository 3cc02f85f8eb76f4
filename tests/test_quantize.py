"""Quantize stage: accuracy and size of INT8 on onnxruntime, FP16 parity, the accuracy-aware loop, errors."""

from __future__ import annotations

import numpy as np
import pytest

import laser
from laser.compress.quantize import Quantize, QuantizeWarning, int8_defaults
from laser.errors import BackendError, BudgetError, ConfigError, InputError, NotFoundError


@pytest.fixture(scope="module")
def digits_onnx(digits_artifact):
    from laser.export import export

    return export(digits_artifact, to="onnx")


@pytest.fixture(scope="module")
def int8_digits(digits_onnx, digits_test):
    return Quantize("int8-static", calibration="digits", data=digits_test, progress=False)(digits_onnx)


def _top1(art, data) -> float:
    from laser.measure.accuracy import classification

    with laser.run(art, backend="onnxruntime") as runner:
        return classification(runner, data)["top1"]


def test_int8_static_keeps_digits_top1_within_one_point_on_onnxruntime(digits_onnx, int8_digits, digits_test):
    fp32, int8 = _top1(digits_onnx, digits_test), _top1(int8_digits, digits_test)
    assert int8_digits.format == "onnx" and int8_digits.model_file.name == "model.onnx"
    assert fp32 - int8 <= 0.01
    assert int8_digits.lineage[-1].results["accuracy"]["drop_points"] == pytest.approx((fp32 - int8) * 100, abs=1e-3)


def test_int8_static_file_is_at_most_0_3_of_fp32(digits_onnx, int8_digits):
    assert int8_digits.model_file.stat().st_size <= 0.3 * digits_onnx.model_file.stat().st_size


def test_int8_static_graph_is_qdq_with_unsigned_activations_and_per_channel_weights(int8_digits):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(int8_digits.model_file))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    quants = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quants and all(inits[n.input[2]].dtype == np.uint8 for n in quants if len(n.input) > 2)
    conv_weights = [n.input[1] for n in model.graph.node if n.op_type == "Conv"]
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    scales = [inits[dq[w].input[1]] for w in conv_weights if w in dq]
    assert scales and all(s.ndim == 1 and s.size > 1 for s in scales)  # one scale per output channel


def test_every_compute_layer_of_plain_int8_counts_as_int8_macs(int8_digits):
    macs = int8_digits.lineage[-1].results["int8_macs"]
    assert macs["fraction"] == 1.0 and macs["int8_layers"] == macs["layers"] > 0 and macs["total_macs"] > 0


def test_lineage_records_method_calibration_types_and_accuracy(int8_digits, tmp_path):
    step = laser.load(int8_digits.save(tmp_path / "q").location).lineage[-1]
    assert step.op == "quantize" and step.params["method"] == "int8-static"
    assert step.results["calibration"] == {"source": "digits/train", "samples": 256, "batches": 16, "method": "minmax"}
    assert step.results["excluded"] == [] and step.results["accuracy"]["measured"] is True
    assert step.results["activation_type"] == "uint8" and step.results["weight_type"] == "int8"


def test_fp16_outputs_agree_with_fp32_within_tolerance(digits_onnx, digits_test):
    with pytest.warns(QuantizeWarning, match="slower|does not improve"):
        half = Quantize("fp16", progress=False)(digits_onnx)
    feeds = digits_test.take(64).feeds(["input"])
    with laser.run(digits_onnx, backend="onnxruntime") as a, laser.run(half, backend="onnxruntime") as b:
        ref, out = a(feeds)["logits"], b(feeds)["logits"]
    assert half.spec == digits_onnx.spec  # float32 in and out: callers do not change
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=0.05 * np.abs(ref).max(), rtol=0)
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.99
    assert half.model_file.stat().st_size < 0.6 * digits_onnx.model_file.stat().st_size


def test_int8_dynamic_on_a_conv_model_warns_it_will_not_be_faster(digits_onnx):
    with pytest.warns(QuantizeWarning, match=r"conv-heavy.*100% of .*MACs are in Conv"):
        q = Quantize("int8-dynamic", progress=False)(digits_onnx)
    import onnx

    ops = {n.op_type for n in onnx.load(str(q.model_file)).graph.node}
    assert "ConvInteger" not in ops and "MatMulInteger" in ops  # only the classifier is quantized
    assert q.lineage[-1].results["notes"]


def test_int8_dynamic_with_conv_warns_about_convinteger(digits_onnx):
    with pytest.warns(QuantizeWarning, match="ConvInteger"):
        Quantize("int8-dynamic", op_types=("Conv", "MatMul", "Gemm"), progress=False)(digits_onnx)


def test_accuracy_aware_keeps_outlier_layers_in_float_until_the_budget_holds(outlier_digits_onnx, digits_test):
    q = Quantize("int8-static", calibration="digits", max_accuracy_drop=1.0, data=digits_test,
                 progress=False)(outlier_digits_onnx)
    search = q.lineage[-1].results["accuracy_aware"]
    assert search["all_layers_drop_points"] > 50  # PTQ alone misses the budget by far
    assert search["drop_points"] <= 1.0
    kept = [k["node"] for k in search["kept_in_float"]]
    assert kept and len(kept) < len(search["sensitivity"])
    assert q.lineage[-1].results["excluded"] == kept
    assert _top1(outlier_digits_onnx, digits_test) - _top1(q, digits_test) <= 0.01  # re-measured here
    cost = search["cost"]
    assert {"fp32", "all_layers_quantized", "mixed"} <= set(cost)
    assert cost["all_layers_quantized"]["bytes"] < cost["mixed"]["bytes"] < cost["fp32"]["bytes"]
    macs = q.lineage[-1].results["int8_macs"]  # the layers kept in float no longer count as INT8 MACs
    assert macs["int8_layers"] == macs["layers"] - len(kept) and 0 < macs["fraction"] < 1


def test_accuracy_aware_leaves_a_model_alone_when_ptq_meets_the_budget(digits_onnx, digits_test):
    q = Quantize("int8-static", calibration="digits", samples=64, max_accuracy_drop=1.0, data=digits_test,
                 progress=False)(digits_onnx)
    search = q.lineage[-1].results["accuracy_aware"]
    assert search["met"] and search["kept_in_float"] == [] and search["trials"] == []


def test_unknown_method_is_a_config_error_listing_the_methods():
    with pytest.raises(ConfigError, match=r"unknown quantization method 'int4'.*int8-static"):
        Quantize("int4")
    with pytest.raises(ConfigError, match="laser.QAT"):
        Quantize("qat")
    with pytest.raises(ConfigError, match="calibration_method"):
        Quantize("int8-static", calibration="digits", calibration_method="kl")


def test_static_without_calibration_and_budget_without_data_are_config_errors():
    with pytest.raises(ConfigError, match="needs calibration data"):
        Quantize("int8-static")
    with pytest.raises(ConfigError, match="needs data="):
        Quantize("int8-static", calibration="digits", max_accuracy_drop=0.5)
    with pytest.raises(ConfigError, match="percentage points"):
        Quantize("int8-static", calibration="digits", max_accuracy_drop=-1, data="digits")


def test_empty_calibration_set_is_a_clear_error(digits_onnx):
    with pytest.raises(ConfigError, match="calibration set .* is empty"):
        Quantize("int8-static", calibration=[], progress=False)(digits_onnx)


def test_calibration_samples_of_the_wrong_shape_are_rejected_before_anything_runs(digits_onnx):
    bad = [{"input": np.zeros((4, 1, 28, 28), np.float32)}]
    with pytest.raises(InputError, match=r"item 0.*dim 2 must be 8, got 28"):
        Quantize("int8-static", calibration=bad, progress=False)(digits_onnx)
    with pytest.raises(InputError, match="has inputs"):
        Quantize("int8-static", calibration=[{"image": np.zeros((1, 1, 8, 8), np.float32)}],
                 progress=False)(digits_onnx)


def test_unknown_calibration_dataset_is_not_found(digits_onnx):
    with pytest.raises(NotFoundError, match="calibration source 'mnist'"):
        Quantize("int8-static", calibration="mnist", progress=False)(digits_onnx)


def test_quantizing_a_quantized_model_is_refused(int8_digits):
    with pytest.raises(ConfigError, match="already quantized"):
        Quantize("fp16", progress=False)(int8_digits)


def test_bf16_is_refused_with_the_reason_when_the_runtime_has_no_bf16_kernels(digits_onnx):
    with pytest.raises(BackendError, match="bf"):
        Quantize("bf16", progress=False)(digits_onnx)


def test_budget_error_when_no_layer_choice_can_meet_the_budget(digits_onnx, digits_test, monkeypatch):
    from laser.compress import mixed_precision as mp

    calls = iter([0.99, 0.5] + [0.5] * 20)  # FP32, then every quantized variant 49 points worse
    monkeypatch.setattr(mp, "top1", lambda art, data: next(calls))
    with pytest.raises(BudgetError, match="even with all 4 layers"):
        Quantize("int8-static", calibration="digits", samples=16, max_accuracy_drop=1.0, data=digits_test,
                 progress=False)(digits_onnx)


def test_int8_defaults_follow_the_cpu_isa():
    vnni = int8_defaults({"isa": ["avx2", "avx512f", "avx512_vnni"], "arch": "x86_64"})
    avx2 = int8_defaults({"isa": ["avx2", "fma"], "arch": "x86_64"})
    arm = int8_defaults({"isa": ["asimd"], "arch": "aarch64"})
    assert (vnni["activation_type"], vnni["weight_type"], vnni["reduce_range"]) == ("uint8", "int8", False)
    assert avx2["reduce_range"] is True and "pmaddubsw" in avx2["why"]
    assert arm["reduce_range"] is False


def test_quantize_is_a_recipe_stage():
    from laser.stages import stage_from_dict

    stage = stage_from_dict({"op": "quantize", "method": "int8-static", "calibration": "digits", "samples": 64})
    assert isinstance(stage, laser.Quantize) and stage.to_dict()["samples"] == 64


def test_in_memory_calibration_is_recorded_by_what_it_is_not_element_by_element(digits_onnx, digits_test):
    feeds = [{"input": digits_test.inputs[0][i:i + 4]} for i in range(0, 32, 4)]
    q = Quantize("int8-static", calibration=feeds, data=digits_test, progress=False)(digits_onnx)
    step = q.lineage[-1]
    assert step.params["calibration"] == "list of 8 items"
    assert step.params["data"].startswith("dataset 'digits'")
    assert step.results["calibration"]["samples"] == 32
