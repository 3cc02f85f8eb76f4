"""laser.export: the Export stage on the built-in digits-cnn (fast), its lineage and its errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import laser
from laser.artifact import Artifact
from laser.errors import ConfigError, ExportError
from laser.export import Export, export
from laser.spec import ModelSpec, TensorSpec
from laser.stages import stage_from_dict


@pytest.fixture(scope="module")
def digits_onnx(digits_artifact):
    return export(digits_artifact, to="onnx")


def test_onnx_export_keeps_spec_labels_preprocessing_and_adds_one_export_step(digits_artifact, digits_onnx):
    assert digits_onnx.format == "onnx"
    assert digits_onnx.manifest.files["model.onnx"]["role"] == "model"
    assert digits_onnx.spec == digits_artifact.spec
    assert digits_onnx.labels == digits_artifact.labels
    assert digits_onnx.preprocessing == digits_artifact.preprocessing
    assert len(digits_onnx.lineage) == len(digits_artifact.lineage) + 1
    step = digits_onnx.lineage[-1]
    assert step.op == "export" and step.params["to"] == "onnx"
    assert step.results["exporter_used"] in ("dynamo", "legacy")
    assert step.results["opset"] >= 17
    assert step.results["verified"] is True


def test_onnx_export_records_validation_errors_per_output_and_top1(digits_onnx):
    validation = digits_onnx.lineage[-1].results["validation"]
    assert validation["passed"]
    logits = validation["outputs"]["logits"]
    assert 0 <= logits["max_abs_error"] < 1e-4
    assert 0 <= logits["max_rel_error"] < 1e-3
    assert validation["top1_agreement"] == 1.0
    assert validation["child_backend"] == "onnxruntime" and validation["parent_backend"] == "torch"


def test_exported_onnx_passes_the_checker_and_has_a_dynamic_batch(digits_onnx):
    onnx.checker.check_model(str(digits_onnx.model_file), full_check=True)
    model = onnx.load(str(digits_onnx.model_file))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    runner = laser.run(digits_onnx, backend="onnxruntime")
    for batch in (1, 5):
        assert runner(digits_onnx.spec.example_inputs(batch=batch))["logits"].shape == (batch, 10)


def test_exported_onnx_matches_torch_on_real_digits(digits_artifact, digits_onnx, digits_test):
    feeds = digits_test.feeds(["input"], 0, 32)
    ref = laser.run(digits_artifact, backend="torch")(feeds)["logits"]
    got = laser.run(digits_onnx, backend="onnxruntime")(feeds)["logits"]
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-3)


def test_no_verify_records_that_nothing_was_checked(digits_artifact):
    out = Export(to="onnx", exporter="legacy", verify=False)(digits_artifact)
    assert out.lineage[-1].results["verified"] is False
    assert out.lineage[-1].results["validation"] is None


def test_fixed_batch_export_has_batch_one_in_its_spec_and_graph(digits_artifact):
    out = export(digits_artifact, to="onnx", exporter="legacy", dynamic_batch=False)
    assert out.spec.inputs[0].shape == (1, 1, 8, 8) and out.spec.fixed_batch == 1
    dim = onnx.load(str(out.model_file)).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_value == 1


def test_export_to_ort_from_onnx_converts_and_validates_against_the_onnx_parent(digits_onnx):
    out = export(digits_onnx, to="ort")
    assert out.format == "ort" and out.model_file.name == "model.ort"
    assert out.model_file.read_bytes()[4:8] == b"ORTM"  # ORT-format flatbuffer identifier
    assert out.lineage[-1].results["validation"]["parent_backend"] == "onnxruntime"
    assert len(out.lineage) == len(digits_onnx.lineage) + 1


def test_export_to_ort_from_torch_goes_through_onnx(digits_artifact):
    out = export(digits_artifact, to="ort", exporter="legacy")
    assert [s.params.get("to") for s in out.lineage[-2:]] == ["onnx", "ort"]


def test_torchscript_export_is_frozen_embeds_the_spec_and_round_trips_through_load(digits_artifact, tmp_path):
    out = export(digits_artifact, to="torchscript")
    results = out.lineage[-1].results
    assert results["export"]["frozen"] and "deprecated" in results["export"]["note"]
    saved = out.save(tmp_path / "ts")
    again = laser.load(saved.model_file)  # the bare .pt file: spec read from the archive
    assert again.format == "torchscript" and again.spec == digits_artifact.spec
    feeds = digits_artifact.spec.example_inputs(batch=3)
    np.testing.assert_allclose(laser.run(again, backend="torchscript")(feeds)["logits"],
                               laser.run(digits_artifact, backend="torch")(feeds)["logits"], atol=1e-4)


def test_saved_onnx_bundle_reopens_and_its_file_imports_with_the_same_spec(digits_onnx, tmp_path):
    saved = digits_onnx.save(tmp_path / "bundle")
    assert Artifact.open(saved.location).lineage == saved.lineage
    imported = laser.load(saved.model_file)
    assert imported.spec.input_names == ["input"] and imported.spec.output_names == ["logits"]
    assert imported.spec.inputs[0].shape == ("batch", 1, 8, 8)


def test_exporting_a_non_torch_artifact_to_onnx_says_what_to_do(digits_onnx):
    with pytest.raises(ExportError, match="starts from a torch artifact.*to='ort'"):
        export(digits_onnx, to="onnx")


@pytest.mark.parametrize("kwargs, match", [
    ({"to": "tflite"}, "not a target"),
    ({"exporter": "fast"}, "exporter='fast'"),
    ({"opset": 3}, "opset=3"),
    ({"to": "torchscript", "opset": 17}, "ONNX only"),
])
def test_export_rejects_bad_options_at_construction(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Export(**kwargs)


def test_export_stage_round_trips_through_a_recipe_dict():
    stage = Export(to="onnx", opset=18, exporter="legacy")
    assert stage_from_dict(stage.to_dict()) == stage
    assert stage.op == "export"


def test_lazy_public_names_reach_the_export_api(digits_artifact):
    assert laser.Export is Export
    out = laser.export(digits_artifact, to="onnx", exporter="legacy", verify=False)
    assert out.format == "onnx"


class _DataDependentBranch(torch.nn.Module):
    """torch.export cannot trace a branch on a tensor's value; the legacy tracer freezes it (always true)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        if x.abs().sum() >= 0:
            return self.fc(x)
        return self.fc(-x)


class _BesselI0e(torch.nn.Module):
    """An op neither exporter can write as ONNX."""

    def forward(self, x):
        return torch.special.i0e(x)


def _artifact(module):
    width = 4 if isinstance(module, _BesselI0e) else 3
    spec = ModelSpec(inputs=(TensorSpec("x", "float32", ("batch", 4)),),
                     outputs=(TensorSpec("y", "float32", ("batch", width)),))
    return Artifact.from_module(module.eval(), name=type(module).__name__.strip("_").lower(), task="generic",
                                spec=spec, architecture=None)


def test_auto_exporter_falls_back_to_legacy_and_records_why_dynamo_failed():
    out = export(_artifact(_DataDependentBranch()), to="onnx")
    results = out.lineage[-1].results
    assert results["exporter_used"] == "legacy"
    assert [a["exporter"] for a in results["attempts"]] == ["dynamo", "legacy"]
    assert "dynamo" in results["fallback_reason"] and results["fallback_reason"] == results["attempts"][0]["error"]
    assert results["validation"]["passed"]


def test_explicit_dynamo_exporter_failure_is_an_export_error_with_the_reason():
    with pytest.raises(ExportError, match="dynamo ONNX exporter failed on _DataDependentBranch"):
        export(_artifact(_DataDependentBranch()), to="onnx", exporter="dynamo")


def test_when_both_exporters_fail_the_error_names_each_path_and_its_reason():
    with pytest.raises(ExportError, match=r"cannot export 'besseli0e' \(_BesselI0e\) to ONNX: dynamo exporter: .*"
                                          r"bessel_i0e.*; legacy exporter: .*'aten::special_i0e' .* not supported"):
        export(_artifact(_BesselI0e()), to="onnx")


def test_fastest_exporter_keeps_the_graph_that_runs_faster_and_records_both_timings(digits_artifact):
    out = export(digits_artifact, to="onnx", exporter="fastest")
    results = out.lineage[-1].results
    timings = results["exporter_timings_ms"]
    assert set(timings) == {"dynamo", "legacy"}
    assert results["exporter_used"] == min(timings, key=timings.get)
    assert results["exporter_choice"].startswith(f"{results['exporter_used']}: faster in onnxruntime here")
    assert results["validation"]["passed"] and out.lineage[-1].params["exporter"] == "fastest"


class _SignBranch(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        if bool(x.sum() > 0):
            return self.fc(x)
        return self.fc(-x)


def test_torchscript_scripts_a_model_whose_trace_would_freeze_its_control_flow():
    out = export(_artifact(_SignBranch()), to="torchscript")
    info = out.lineage[-1].results["export"]
    assert info["method"] == "script" and any("Python boolean" in w for w in info["tracer_warnings"])
    assert out.lineage[-1].results["validation"]["passed"]  # both signs checked (negated examples)


def test_any_classification_task_gets_a_top1_agreement_check():
    spec = ModelSpec(inputs=(TensorSpec("x", "float32", ("batch", 4)),), outputs=(TensorSpec("y", "float32", ("batch", 3)),))
    art = Artifact.from_module(torch.nn.Linear(4, 3).eval(), name="lin", task="text-classification", spec=spec,
                               architecture=None)
    validation = export(art, to="onnx", exporter="legacy").lineage[-1].results["validation"]
    assert validation["top1_agreement"] == 1.0 and validation["top1_samples"] > 0
