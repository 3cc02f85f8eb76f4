import numpy as np
import pytest

from laser.errors import ConfigError, InputError
from laser.spec import ModelSpec, TensorSpec


def spec() -> ModelSpec:
    return ModelSpec(inputs=(TensorSpec("ids", "int64", ("batch", "seq"), value_range=(0, 100)),
                             TensorSpec("mask", "int64", ("batch", "seq"), value_range=(0, 2))),
                     outputs=(TensorSpec("logits", "float32", ("batch", 3)),))


def test_example_inputs_fit_the_spec_and_respect_value_range():
    feeds = spec().example_inputs(batch=3, dims={"seq": 7})
    assert feeds["ids"].shape == (3, 7) and feeds["ids"].dtype == np.int64
    assert feeds["ids"].max() < 100 and feeds["mask"].max() <= 1
    spec().check_inputs(feeds)


def test_shared_dim_names_must_agree_across_inputs():
    feeds = {"ids": np.zeros((2, 5), np.int64), "mask": np.zeros((2, 6), np.int64)}
    with pytest.raises(InputError, match="'seq' is 5 in 'ids' but 6 in 'mask'"):
        spec().check_inputs(feeds)


def test_wrong_dtype_and_missing_input_are_named():
    with pytest.raises(InputError, match="dtype float32, expected int64"):
        spec().check_inputs({"ids": np.zeros((2, 5), np.float32), "mask": np.zeros((2, 5), np.int64)})
    with pytest.raises(InputError, match="missing \\['mask'\\]"):
        spec().check_inputs({"ids": np.zeros((2, 5), np.int64)})


def test_fixed_dim_mismatch_names_the_dim():
    s = ModelSpec(inputs=(TensorSpec("x", "float32", ("batch", 1, 8, 8)),), outputs=(TensorSpec("y"),))
    with pytest.raises(InputError, match="dim 2 must be 8, got 9"):
        s.check_inputs({"x": np.zeros((1, 1, 9, 8), np.float32)})


def test_spec_round_trips_through_dict():
    assert ModelSpec.from_dict(spec().to_dict()) == spec()


def test_bad_spec_values_are_rejected_at_construction():
    with pytest.raises(ConfigError, match="unknown dtype"):
        TensorSpec("x", "float31")
    with pytest.raises(ConfigError, match="unique"):
        ModelSpec(inputs=(TensorSpec("x"),), outputs=(TensorSpec("x"),))


def test_example_inputs_size_unnamed_dynamic_dims_by_default():
    feeds = spec().example_inputs(batch=2)
    assert feeds["ids"].shape == (2, 16) and feeds["mask"].shape == (2, 16)


def test_example_dims_size_named_dims_and_survive_the_round_trip():
    spec = ModelSpec(inputs=(TensorSpec("x", "float32", ("batch", 3, 48, "width")),),
                     outputs=(TensorSpec("y", "float32", ("batch", "width")),), example_dims=(("width", 320),))
    assert spec.example_inputs(batch=1)["x"].shape == (1, 3, 48, 320)
    assert spec.example_inputs(batch=1, dims={"width": 64})["x"].shape == (1, 3, 48, 64)
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert "example_dims" not in ModelSpec.from_dict({**spec.to_dict(), "example_dims": {}}).to_dict()


def test_a_saved_artifact_keeps_its_example_dims(tmp_path):
    from laser import load
    from laser.artifact import Artifact

    spec = ModelSpec(inputs=(TensorSpec("x", "float32", ("batch", 3, 48, "width")),),
                     outputs=(TensorSpec("y", "float32", ("batch", "width")),), example_dims=(("width", 320),))
    (tmp_path / "m.onnx").write_bytes(b"not read here")
    art = Artifact.from_files({"model.onnx": tmp_path / "m.onnx"}, name="m", task="ocr-recognition",
                              format="onnx", spec=spec)
    assert load(art.save(tmp_path / "bundle").location).spec.example_dims == (("width", 320),)
