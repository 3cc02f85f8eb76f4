"""laser optimize without labels: fidelity to the FP32 parent, degenerate parents, unverified recipes, and
budgets that keep their accuracy constraint."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import laser
from laser.artifact import Artifact
from laser.cli.main import main
from laser.measure.fidelity import compare, diversity
from laser.optimize import Settings, optimize
from laser.optimize.budget import Budget
from laser.spec import ModelSpec, TensorSpec

SETTINGS = Settings.fast(doctor=False)


def test_relative_l2_sees_a_different_function_that_top1_agreement_misses():
    rng = np.random.default_rng(0)
    parent = rng.standard_normal((64, 10))
    parent[:, 3] += 50  # a degenerate parent: class 3 for every input
    child = rng.standard_normal((64, 10))
    child[:, 3] += 50  # another function that lands on the same class
    fid = compare({"y": child}, {"y": parent}, ["y"], classifier=True)
    assert fid["top1_agreement"] == 1.0  # agreement alone would call it identical
    assert fid["rel_l2"] > 0.02 and fid["kl"] > 0
    assert diversity(parent).degenerate and not diversity(rng.standard_normal((64, 10))).degenerate
    same = compare({"y": parent}, {"y": parent}, ["y"], classifier=True)
    assert same["rel_l2"] == 0.0 and same["cosine"] == pytest.approx(1.0) and same["kl"] == pytest.approx(0.0)


def test_an_accuracy_budget_maps_onto_fidelity_without_labels():
    b = Budget.parse("accuracy_drop<=1%,p50<=5ms").for_fidelity(0.05, agreement_samples=64)
    assert [c.metric for c in b.constraints] == ["rel_l2", "agreement", "p50"]
    assert b.constraints[0].limit == pytest.approx(0.05) and b.constraints[1].limit == pytest.approx(1 - 2 / 64)
    assert "relative L2" in b.mapping
    degenerate = Budget.parse("accuracy_drop<=1%").for_fidelity(0.05, agreement_samples=None)
    assert [c.metric for c in degenerate.constraints] == ["rel_l2"] and "not counted" in degenerate.mapping


def test_a_latency_budget_keeps_the_default_accuracy_constraint_unless_removed():
    assert [c.metric for c in Budget.parse("p50<=5ms").with_default_accuracy().constraints] == ["accuracy_drop", "p50"]
    off = Budget.parse("p50<=5ms,accuracy_drop<=none").with_default_accuracy()
    assert [c.metric for c in off.constraints] == ["p50"] and off.text == "p50<=5ms, accuracy_drop<=none"
    own = Budget.parse("accuracy>=90%").with_default_accuracy()
    assert [c.metric for c in own.constraints] == ["accuracy"]


def _random_digits() -> Artifact:
    torch.manual_seed(0)
    return laser.load("digits-cnn", random_weights=True)


def test_pruning_without_data_is_unverified_and_never_the_winner(tmp_path):
    result = optimize(_random_digits(), data=None, recipes="none,prune-70", formats="torch", backends="torch",
                      output=tmp_path, settings=SETTINGS, progress=False)
    pruned = result.get("prune-70", "torch", "torch")
    assert pruned.measured and pruned.unverified and not pruned.feasible
    assert pruned.metrics["rel_l2"] > 0.05  # its outputs differ: a different function
    assert result.winner is not None and result.winner.candidate.recipe == "none"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["reference"]["metric"] == "fidelity" and "rel_l2" in report["constraints_applied"]
    assert "unverified" in (tmp_path / "report.html").read_text()


def test_without_data_the_default_recipes_leave_out_the_function_changing_ones(tmp_path):
    result = optimize(_random_digits(), data=None, formats="onnx", backends="onnxruntime", output=tmp_path,
                      settings=SETTINGS, progress=False, budget="accuracy_drop<=1%")
    recipes = {o.candidate.recipe for o in result.outcomes}
    assert not any(r.startswith("prune") or r == "search" for r in recipes)
    assert any("left out" in n and "prune-70" in n for n in result.notes)
    assert result.feasible and result.winner.metrics["rel_l2"] <= 0.05  # int8 or the FP32 export: same function


class Constant(nn.Module):
    """A degenerate classifier: one class wins for every input, by a wide margin."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 4)
        with torch.no_grad():
            self.fc.bias.copy_(torch.tensor([0.0, 0.0, 100.0, 0.0]))

    def forward(self, x):
        return self.fc(x)


def test_a_degenerate_parent_is_named_and_agreement_is_not_counted(tmp_path):
    spec = ModelSpec(inputs=(TensorSpec("x", "float32", ("batch", 16)),),
                     outputs=(TensorSpec("logits", "float32", ("batch", 4)),))
    art = Artifact.from_module(Constant().eval(), name="constant", task="classification", spec=spec, architecture=None)
    result = optimize(art, data=None, recipes="none", formats="torch,onnx", backends="torch,onnxruntime",
                      output=tmp_path, settings=SETTINGS, progress=False)
    assert result.reference.diversity.degenerate and not result.reference.agreement_meaningful
    assert any("degenerate" in n for n in result.notes)
    assert all(c.metric != "agreement" for c in result.budget.constraints)
    assert all(o.metrics.get("agreement") is None for o in result.measured)


def _tiny_detector() -> Artifact:
    from laser.models.tiny import tiny_detector

    torch.manual_seed(0)
    spec = ModelSpec(inputs=(TensorSpec("input", "float32", ("batch", 3, 32, 32)),),
                     outputs=(TensorSpec("boxes", "float32", ("batch", 16, 4)),
                              TensorSpec("scores", "float32", ("batch", 16)),
                              TensorSpec("labels", "int64", ("batch", 16))))
    return Artifact.from_module(tiny_detector().eval(), name="tiny-detector", task="detection", spec=spec,
                                architecture={"factory": "laser.models.tiny:tiny_detector", "kwargs": {}})


def test_a_detector_optimizes_without_data_and_writes_its_report(tmp_path):
    result = optimize(_tiny_detector(), data=None, recipes="none", formats="torch,onnx", backends="torch,onnxruntime",
                      output=tmp_path, settings=SETTINGS, progress=False)
    assert result.winner is not None and result.feasible
    onnx = result.get("none", "onnx", "onnxruntime")
    assert onnx.metrics["rel_l2"] < 1e-4  # the export computes the same boxes and scores
    assert (tmp_path / "report.json").is_file() and (tmp_path / "winner" / "laser.json").is_file()


def _tiny_text_classifier() -> Artifact:
    from laser.models.text import transformers

    tf = transformers()
    torch.manual_seed(0)
    config = tf.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=64, num_labels=2)
    module = tf.BertForSequenceClassification(config).eval()
    spec = ModelSpec(
        inputs=(TensorSpec("input_ids", "int64", ("batch", "sequence"), value_range=(0, 100)),
                TensorSpec("attention_mask", "int64", ("batch", "sequence"), value_range=(1, 2))),
        outputs=(TensorSpec("logits", "float32", ("batch", 2)),))
    return Artifact.from_module(module, name="tiny-text", task="text-classification", spec=spec, architecture=None)


def test_a_text_classifier_optimizes_without_data_and_writes_report_and_winner(tmp_path):
    pytest.importorskip("transformers")
    result = optimize(_tiny_text_classifier(), data=None, recipes="none", formats="torch", backends="torch",
                      output=tmp_path, settings=SETTINGS, progress=False)
    assert result.winner is not None and result.winner.metrics["accuracy"] == pytest.approx(1.0)
    assert (tmp_path / "report.json").is_file() and (tmp_path / "winner.toml").is_file()


def test_optimize_writes_report_and_winner_without_matplotlib(tmp_path, monkeypatch):
    import laser.optimize.report as report

    def no_matplotlib(*args, **kwargs):
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(report, "write_pareto", no_matplotlib)
    result = optimize("digits-cnn", recipes="none", formats="torch", output=tmp_path, settings=SETTINGS,
                      progress=False)
    assert (tmp_path / "report.json").is_file() and (tmp_path / "winner" / "laser.json").is_file()
    assert not (tmp_path / "pareto.png").exists() and any("matplotlib" in n for n in result.notes)


def test_cli_exits_3_when_no_candidate_meets_the_budget_after_writing_the_report(tmp_path, capsys):
    code = main(["optimize", "--recipes", "none", "--formats", "torch", "--budget", "p50<=1ns", "--quick",
                 "--no-progress", "-o", str(tmp_path)])
    assert code == 3
    out = capsys.readouterr().out
    assert "No candidate meets the budget" in out and "constraints applied: accuracy_drop<=1%, p50<=1ns" in out
    assert json.loads((tmp_path / "report.json").read_text())["feasible"] is False


def test_unlabelled_inputs_are_what_fidelity_and_calibration_use(tmp_path):
    x, _ = laser.data.digits("test")
    np.save(tmp_path / "samples.npy", x[:48])
    result = optimize(_random_digits(), data=None, inputs=tmp_path / "samples.npy", recipes="none,int8-static",
                      formats="onnx", backends="onnxruntime", output=tmp_path / "out", settings=SETTINGS,
                      progress=False)
    assert "samples.npy" in result.reference.input_source
    assert result.reference.samples == SETTINGS.synthetic_samples  # at most that many of the 48 rows
    int8 = result.get("int8-static", "onnx", "onnxruntime")
    assert int8.measured and "samples.npy" in json.dumps(int8.stages)  # calibrated on the same samples
    assert result.reference.to_dict()["inputs"] == result.reference.input_source
