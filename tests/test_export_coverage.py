"""Export + validate + run on every backend for the coverage list of the export issue.

Random weights (no downloads). torchvision models get their BatchNorm statistics re-estimated on one
random batch first: with the default running stats (mean 0, var 1) activations shrink layer after
layer and the logits end up ~1e-9, where any export error would hide below atol. For the same reason
a zero-initialised head (ViT's) gets random weights.
The large models are marked slow (`make test-slow`); digits-cnn, a tiny BERT and MobileNetV3-small
run by default.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import laser
from laser.artifact import Artifact
from laser.export import export
from laser.export.validate import compare
from laser.spec import ModelSpec, TensorSpec, image_spec

SLOW_VISION = ("resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "vit_b_16")
MODELS = ["digits-cnn", "tiny-bert", "mobilenet_v3_small", *(pytest.param(m, marks=pytest.mark.slow) for m in SLOW_VISION)]


def vision_artifact(name: str) -> Artifact:
    from laser.vision_compat import models

    torch.manual_seed(0)
    module = getattr(models(), name)()
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if norms:
        for m in norms:
            m.momentum = None  # cumulative average: one batch sets the statistics
        module.train()
        with torch.no_grad():
            module(torch.randn(4, 3, 224, 224))
    for m in module.modules():  # ViT's head starts at zero: all-zero logits would match anything
        if isinstance(m, torch.nn.Linear) and not m.weight.any():
            torch.nn.init.normal_(m.weight, std=0.02)
    return Artifact.from_module(module.eval(), name=name, task="classification", spec=image_spec(3, 224, 224, 1000),
                                architecture={"factory": f"torchvision.models:{name}", "kwargs": {}})


def tiny_bert() -> Artifact:
    """A BERT-style text classifier from a small config (no download): (input_ids, attention_mask) ->
    logits, with a dynamic batch and a dynamic sequence length."""
    from laser.vision_compat import torchvision

    torchvision()  # transformers imports torchvision; make that import work with CPU torch
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64, num_labels=3)
    module = transformers.BertForSequenceClassification(config).eval()
    spec = ModelSpec(
        inputs=(TensorSpec("input_ids", "int64", ("batch", "sequence"), value_range=(0, 100)),
                TensorSpec("attention_mask", "int64", ("batch", "sequence"), value_range=(0, 2))),
        outputs=(TensorSpec("logits", "float32", ("batch", 3)),),
    )
    return Artifact.from_module(module, name="tiny-bert", task="classification", spec=spec, architecture=None)


_CACHE: dict[tuple[str, str], Artifact] = {}


def artifact(name: str, to: str = "torch") -> Artifact:
    """The model (to='torch') or its validated export, built once per test session."""
    key = (name, to)
    if key not in _CACHE:
        if to == "torch":
            _CACHE[key] = (laser.load("digits-cnn") if name == "digits-cnn" else
                           tiny_bert() if name == "tiny-bert" else vision_artifact(name))
        elif to == "ort":
            _CACHE[key] = export(artifact(name, "onnx"), to="ort")
        else:
            _CACHE[key] = export(artifact(name), to=to)
    return _CACHE[key]


@pytest.mark.parametrize("name", MODELS)
def test_onnx_export_is_validated_against_torch(name):
    out = artifact(name, "onnx")
    results = out.lineage[-1].results
    assert results["verified"] and results["validation"]["passed"]
    assert results["validation"]["top1_agreement"] >= 0.99
    assert results["exporter_used"] in ("dynamo", "legacy")


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_onnx_export_matches_torch_on_each_onnx_backend(name, backend):
    result = compare(artifact(name), artifact(name, "onnx"), backend=backend)
    assert result["passed"] and result["child_backend"] == backend


@pytest.mark.parametrize("name", MODELS)
def test_ort_format_conversion_runs_and_matches_the_onnx_parent(name):
    out = artifact(name, "ort")
    assert out.lineage[-1].results["validation"]["passed"]
    feeds = out.spec.example_inputs(batch=2)
    assert laser.run(out, backend="onnxruntime")(feeds)["logits"].shape[0] == 2


@pytest.mark.parametrize("name", MODELS)
def test_torchscript_export_is_validated_and_runs(name):
    out = artifact(name, "torchscript")
    assert out.lineage[-1].results["validation"]["passed"]
    feeds = out.spec.example_inputs(batch=3)
    assert laser.run(out, backend="torchscript")(feeds)["logits"].shape[0] == 3


@pytest.mark.parametrize("name", MODELS)
def test_auto_backend_runs_the_onnx_export(name):
    runner = laser.run(artifact(name, "onnx"), backend="auto")
    assert runner.choice["backend"] in ("onnxruntime", "openvino")
    runner.warmup(1)  # sizes every named dim (tiny-bert's sequence too)
    feeds = runner.spec.example_inputs(batch=2)
    assert np.isfinite(runner(feeds)["logits"]).all()


@pytest.mark.parametrize("batch, length", [(1, 5), (4, 40)])
def test_tiny_bert_onnx_keeps_batch_and_sequence_dynamic(batch, length):
    parent, child = artifact("tiny-bert"), artifact("tiny-bert", "onnx")
    feeds = parent.spec.example_inputs(batch=batch, seed=3, dims={"sequence": length})
    feeds["attention_mask"][:, length // 2:] = 0  # padded tail
    ref = laser.run(parent, backend="torch")(feeds)["logits"]
    np.testing.assert_allclose(laser.run(child, backend="onnxruntime")(feeds)["logits"], ref, atol=1e-4, rtol=1e-3)
