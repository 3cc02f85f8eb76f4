"""laser.export.diff: per-layer divergence, pointing at the first layer beyond tolerance."""

from __future__ import annotations

import onnx
import pytest
from onnx import numpy_helper

import laser
from laser.errors import ConfigError
from laser.export import export
from laser.export.diff import diff, node_scope


def tampered(onnx_art, tmp_path, conv_index=1):
    """A copy of the ONNX model whose ``conv_index``-th Conv has one filter shifted by 0.05."""
    model = onnx.load(str(onnx_art.model_file))
    weight = [n for n in model.graph.node if n.op_type == "Conv"][conv_index].input[1]
    for init in model.graph.initializer:
        if init.name == weight:
            w = numpy_helper.to_array(init).copy()
            w[0] += 0.05
            init.CopyFrom(numpy_helper.from_array(w, weight))
    path = tmp_path / f"tampered-{conv_index}.onnx"
    onnx.save(model, str(path))
    return laser.load(path)


@pytest.fixture(scope="module", params=["dynamo", "legacy"])
def exported(request, digits_artifact):
    return export(digits_artifact, to="onnx", exporter=request.param)


def test_faithful_export_has_no_divergent_layer(digits_artifact, exported):
    result = diff(digits_artifact, exported)
    assert result["first_divergent"] is None
    layers = [row["layer"] for row in result["layers"]]
    assert "classifier" in layers and "features.2" in layers  # Linear and MaxPool both matched
    assert all(row["within_tolerance"] for row in result["layers"])


def test_diff_points_at_the_first_layer_that_diverges(digits_artifact, exported, tmp_path):
    result = diff(digits_artifact, tampered(exported, tmp_path, conv_index=1))
    first = result["first_divergent"]
    assert first["layer"].startswith("features.1.")  # the second conv block (its Conv or folded BatchNorm)
    assert first["max_abs_error"] > 1e-3
    before = [row for row in result["layers"] if row["layer"].startswith("features.0")]
    assert before and all(row["within_tolerance"] for row in before)


def test_diff_between_two_onnx_graphs_matches_tensors_by_name(exported, tmp_path):
    bad = tampered(exported, tmp_path, conv_index=2)
    result = diff(exported, bad)
    conv_out = [n for n in onnx.load(str(bad.model_file)).graph.node if n.op_type == "Conv"][2].output[0]
    assert result["first_divergent"]["tensor"] == conv_out


def test_diff_on_real_samples_reports_where_they_came_from(digits_artifact, exported, digits_test):
    result = diff(digits_artifact, exported, data=digits_test, batch=4)
    assert result["inputs"] == "digits: first 4 sample(s)"
    assert result["layers"][-1]["shape"] == [4, 10]


def test_diff_needs_an_onnx_child(digits_artifact):
    ts = export(digits_artifact, to="torchscript", verify=False)
    with pytest.raises(ConfigError, match="onnx child; got parent 'torch' and child 'torchscript'"):
        diff(digits_artifact, ts)


def test_node_scope_reads_legacy_node_names_relative_to_the_model():
    node = onnx.helper.make_node("Conv", ["x", "w"], ["y"], name="/module/features/features.0/features.0.0/Conv")
    assert node_scope(node) == "features.0.0"
    assert node_scope(onnx.helper.make_node("Flatten", ["x"], ["y"], name="/module/Flatten")) == ""
    assert node_scope(onnx.helper.make_node("Relu", ["x"], ["y"], name="Relu_3")) is None


def test_layers_are_listed_in_execution_order(digits_artifact, exported):
    layers = [row["layer"] for row in diff(digits_artifact, exported)["layers"]]
    assert layers.index("features.2") < layers.index("classifier")
    assert layers[-1] == "classifier"


def test_diff_says_when_no_node_can_be_tied_to_a_module(digits_artifact, exported, tmp_path):
    model = onnx.load(str(exported.model_file))
    for i, node in enumerate(model.graph.node):  # as if made by another tool: no scopes, plain names
        node.name = f"n{i}"
        del node.metadata_props[:]
    onnx.save(model, str(tmp_path / "anonymous.onnx"))
    with pytest.raises(ConfigError, match="could be tied to a module of 'digits-cnn'"):
        diff(digits_artifact, laser.load(tmp_path / "anonymous.onnx"))
