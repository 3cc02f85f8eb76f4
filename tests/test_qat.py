"""Quantization-aware training: recovers INT8 accuracy where post-training quantization falls short."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import laser
from laser.compress.qat import QAT, FakeQuantModel, clip_inputs, fake_quant, initial_ranges
from laser.compress.quantize import Quantize
from laser.errors import ConfigError


@pytest.fixture(autouse=True)
def one_torch_thread():
    # A tiny model on a shared 2-core CPU: OpenMP threads spin against other processes (17 s vs 0.7 s
    # per digits epoch measured under load); one thread is faster here.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _top1(art, data) -> float:
    from laser.measure.accuracy import classification

    with laser.run(art, backend="onnxruntime") as runner:
        return classification(runner, data)["top1"]


def test_qat_recovers_int8_accuracy_where_ptq_falls_short(outlier_digits_artifact, outlier_digits_onnx, digits_test):
    fp32 = _top1(outlier_digits_onnx, digits_test)
    ptq = Quantize("int8-static", calibration="digits", progress=False)(outlier_digits_onnx)
    qat = QAT(epochs=3, data="digits", progress=False)(outlier_digits_artifact)
    ptq_top1, qat_top1 = _top1(ptq, digits_test), _top1(qat, digits_test)
    assert fp32 - ptq_top1 > 0.5  # PTQ collapses on the activation outliers
    assert fp32 - qat_top1 <= 0.01  # QAT's INT8 artifact, measured on onnxruntime, is within 1 point
    assert qat.format == "onnx" and qat.model_file.name == "model.onnx"
    ops = [s.op for s in qat.lineage]
    assert ops[-3:] == ["qat", "export", "quantize"]
    train = qat.lineage[-3].results["fake_quant_val_top1"]
    assert train["after"] > train["before"]  # the fine-tuning, not only the range init, recovered it
    recorded = qat.lineage[-1].results["qat_accuracy"]
    assert recorded["int8_top1"] == pytest.approx(qat_top1) and recorded["drop_points"] <= 1.0


def test_output_aware_init_clips_an_activation_outlier(outlier_digits_artifact):
    from laser.data import digits

    x, _ = digits("train")
    module = outlier_digits_artifact.module
    ranges = initial_ranges(module, (torch.from_numpy(x[:64]),))
    seen = {}
    module.features[1][0].register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0]))
    with torch.no_grad():
        module(torch.from_numpy(x[:64]))
    assert ranges["features.1.0"][1] < float(seen["x"].max()) / 20  # clipped, not min/max
    assert ranges["features.0.0"] == pytest.approx((-1.0, 1.0))  # a well-behaved input keeps its range


def test_fake_quant_is_uint8_on_a_learnable_step_with_straight_through_gradients():
    x = torch.tensor([-1.0, 0.0, 0.26, 1.0, 3.0], requires_grad=True)
    log_s = torch.tensor(float(np.log(0.5)), requires_grad=True)
    y = fake_quant(x, log_s, zero_point=2)  # grid: (q - 2) * 0.5 for q in 0..255
    assert y.tolist() == [-1.0, 0.0, 0.5, 1.0, 3.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 1.0, 1.0]
    assert log_s.grad is not None and log_s.grad.item() != 0.0


def test_fake_quant_model_freezes_batchnorm_and_releases_a_plain_module(digits_artifact):
    import copy

    module = copy.deepcopy(digits_artifact.module)
    keys = set(module.state_dict())
    model = FakeQuantModel(module, {"features.0.0": (-1.0, 1.0), "classifier": (0.0, 4.0)})
    model.train()
    assert not module.features[0][1].training and module.features[0][0].training
    assert set(model.ranges()) == {"features.0.0", "classifier"}
    assert set(model.release().state_dict()) == keys


def test_clip_inputs_transform_rebuilds_from_the_architecture_recipe(digits_artifact, tmp_path):
    from laser.architecture import build_module, save_weights

    arch = dict(digits_artifact.manifest.architecture)
    arch["transforms"] = [{"target": "laser.compress.qat:clip_inputs", "kwargs": {"ranges": {"classifier": [0.0, 0.1]}}}]
    save_weights(digits_artifact.module, tmp_path / "w.safetensors")
    rebuilt = build_module(arch, tmp_path / "w.safetensors")
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        feats = torch.flatten(rebuilt.features(x), 1).clamp(0.0, 0.1)
        assert torch.allclose(rebuilt(x), rebuilt.classifier(feats))
    with pytest.raises(ConfigError, match="no layer 'nope'"):
        clip_inputs(digits_artifact.module, {"nope": [0, 1]})


def test_qat_config_errors_say_what_to_do(digits_artifact, tmp_path):
    with pytest.raises(ConfigError, match="epochs"):
        QAT(epochs=0)
    with pytest.raises(ConfigError, match="lr > 0"):
        QAT(lr=0)
    with pytest.raises(ConfigError, match="dataset name"):
        QAT(data=[1, 2])
    onnx_art = laser.load(_tiny_onnx(digits_artifact, tmp_path))
    with pytest.raises(ConfigError, match="fine-tunes a PyTorch model"):
        QAT(progress=False)(onnx_art)


def _tiny_onnx(art, tmp_path):
    path = tmp_path / "m.onnx"
    torch.onnx.export(art.module, (torch.zeros(2, 1, 8, 8),), str(path), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}}, dynamo=False)
    return path
