import numpy as np
import pytest
import torch

import laser
from laser.errors import ConfigError, NotFoundError, UnsafeCheckpointError
from laser.loader import TS_SPEC_FILE


def test_catalog_name_loads(digits_artifact):
    assert digits_artifact.format == "torch" and digits_artifact.task == "classification"


def test_unknown_name_lists_the_closest_catalog_names():
    with pytest.raises(NotFoundError, match="did you mean digits-cnn"):
        laser.load("digit-cnn")


def test_factory_with_safetensors_weights_loads(digits_artifact, tmp_path):
    from laser.architecture import save_weights

    save_weights(digits_artifact.module, tmp_path / "w.safetensors")
    art = laser.load("laser.models.digits:digits_cnn", weights=tmp_path / "w.safetensors", input_shape=(1, 8, 8))
    x = digits_artifact.spec.example_inputs(batch=2)
    assert np.allclose(laser.run(art)(x)["logits"], laser.run(digits_artifact)(x)["logits"])


def test_factory_with_a_state_dict_checkpoint_loads(digits_artifact, tmp_path):
    torch.save(digits_artifact.module.state_dict(), tmp_path / "w.pt")
    art = laser.load("laser.models.digits:digits_cnn", weights=tmp_path / "w.pt", input_shape=(1, 8, 8))
    assert art.spec.outputs[0].shape == ("batch", 10)


def test_factory_without_shape_asks_for_one():
    with pytest.raises(ConfigError, match="input_shape"):
        laser.load("laser.models.digits:digits_cnn", random_weights=True)


def test_pickled_module_is_refused_with_the_risk_and_the_way_out(digits_artifact, tmp_path):
    torch.save(digits_artifact.module, tmp_path / "model.pt")  # a whole pickled module
    with pytest.raises(UnsafeCheckpointError, match="arbitrary code.*state_dict"):
        laser.load("laser.models.digits:digits_cnn", weights=tmp_path / "model.pt", input_shape=(1, 8, 8))
    with pytest.raises(UnsafeCheckpointError, match="arbitrary code"):
        laser.load(tmp_path / "model.pt")


def test_torchscript_file_with_embedded_spec_loads(digits_artifact, tmp_path):
    import json

    traced = torch.jit.trace(digits_artifact.module, torch.zeros(1, 1, 8, 8))
    torch.jit.save(traced, str(tmp_path / "m.pt"),
                   _extra_files={TS_SPEC_FILE: json.dumps(digits_artifact.spec.to_dict())})
    art = laser.load(tmp_path / "m.pt")
    assert art.format == "torchscript" and art.spec == digits_artifact.spec


def test_onnx_file_loads_with_spec_read_from_the_graph(digits_artifact, tmp_path):
    torch.onnx.export(digits_artifact.module, (torch.zeros(2, 1, 8, 8),), str(tmp_path / "m.onnx"),
                      input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}},
                      dynamo=False)
    art = laser.load(tmp_path / "m.onnx")
    assert art.format == "onnx"
    assert art.spec.inputs[0].shape == ("batch", 1, 8, 8)
    assert art.spec.output_names == ["logits"]


def test_missing_onnx_file_is_named(tmp_path):
    with pytest.raises(NotFoundError, match="does not exist"):
        laser.load(tmp_path / "nope.onnx")


def test_torchvision_factory_loads_in_a_fresh_process():
    import subprocess
    import sys

    code = ("import laser; a = laser.load('torchvision.models:mobilenet_v3_small', random_weights=True, "
            "input_shape=(3, 64, 64)); print(a.spec.outputs[0].shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    assert "1000" in out.stdout
