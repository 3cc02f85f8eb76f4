"""laser import with OpenVINO's frontends, no TensorFlow or Paddle installed: the tiny models in tests/data/import
(built once with the real frameworks by ``tests/frameworks_models.py ... testdata``, with their own outputs)
become OpenVINO IR bundles that match those outputs and that run, bench and serve use."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from laser.cli.main import main

pytest.importorskip("openvino")
DATA = Path(__file__).resolve().parent / "data" / "import"
SOURCES = {"cnn.tflite": ("cnn", "tflite"), "cnn_savedmodel": ("cnn", "savedmodel"),
           "pd_old/cnn.pdmodel": ("pd_old/cnn", "paddle")}


@pytest.fixture
def no_frameworks(monkeypatch):
    """laser's own Python, as a user who installed laser only has it."""
    if importlib.util.find_spec("tf2onnx") or importlib.util.find_spec("paddle2onnx"):
        pytest.skip("this Python has a converter installed")
    monkeypatch.delenv("LASER_FRAMEWORKS_PYTHON", raising=False)


@pytest.mark.parametrize("source", list(SOURCES))
def test_openvino_fallback_matches_the_source_framework(source, no_frameworks, tmp_path, capsys):
    import laser
    from laser.artifact import Artifact
    from laser.importer.frameworks import NOT_INSTALLED

    prefix, framework = SOURCES[source]
    assert main(["import", str(DATA / source), "-o", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "with openvino: openvino bundle" in out and "fallback" in out and NOT_INSTALLED in out, out
    art = Artifact.open(tmp_path / "b")
    step = art.lineage[-1]
    assert art.format == "openvino" and set(art.files) == {"model.xml", "model.bin"}
    assert step.params["converter"] == "openvino" and step.params["framework"] == framework
    assert step.params["converter_reason"].startswith("fallback: ") and "pip install" in step.params["converter_reason"]
    assert step.results["parity_vs_source"]["vs_source"] == {"note": NOT_INSTALLED}
    assert "/" not in step.params["source"] and str(tmp_path) not in (tmp_path / "b" / "laser.json").read_text()
    assert art.spec.inputs[0].shape[0] == "batch" and step.params["source_inputs"][0]["shape"][0] is None
    assert art.spec.inputs[0].dtype == "float32" and art.task == "classification"
    x, want = np.load(DATA / f"{prefix}_x.npy"), np.load(DATA / f"{prefix}_y.npy")
    with laser.run(art, backend="openvino") as runner:  # FP32: model.bin was not compressed to FP16
        got = runner({art.spec.inputs[0].name: x})[art.spec.outputs[0].name]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_openvino_bundle_runs_benches_and_serves(no_frameworks, tmp_path, capsys):
    import httpx

    from laser.serve import Server

    assert main(["import", str(DATA / "cnn.tflite"), "--converter", "openvino", "-o", str(tmp_path / "b")]) == 0
    assert "asked for" in json.loads((tmp_path / "b" / "laser.json").read_text())["lineage"][-1]["params"][
        "converter_reason"]
    x = np.load(DATA / "cnn_x.npy")
    np.save(tmp_path / "x.npy", x)
    capsys.readouterr()
    assert main(["run", str(tmp_path / "b"), "--input", str(tmp_path / "x.npy"), "--json"]) == 0
    assert "openvino" in capsys.readouterr().out
    assert main(["bench", str(tmp_path / "b"), "--repeats", "1", "--seconds", "0.2", "--no-peak", "--json"]) == 0
    bench = capsys.readouterr().out
    assert '"openvino"' in bench and "p50" in bench, bench
    from laser.artifact import Artifact

    art = Artifact.open(tmp_path / "b")
    name_in, name_out = art.spec.inputs[0].name, art.spec.outputs[0].name
    body = {"inputs": [{"name": name_in, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    with Server([art], http_port=0, grpc_port=0, socket_port=0) as server, \
            httpx.Client(base_url=server.http_url, timeout=30) as http:
        got = http.post(f"/v2/models/{art.name}/infer", json=body).json()["outputs"]
    out = next(o for o in got if o["name"] == name_out)
    np.testing.assert_allclose(np.array(out["data"]).reshape(out["shape"]), np.load(DATA / "cnn_y.npy"), atol=1e-5)


def test_openvino_import_bad_requests_are_one_line(no_frameworks, tmp_path, capsys):
    cases = [
        (["--to", "onnx"], "an ONNX result needs tf2onnx", "pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0"),
        (["--to", "torch", "--converter", "openvino"], "writes an OpenVINO IR, not torch", "tf2onnx==1.17.0"),
        (["--converter", "paddle2onnx"], "does not read tflite models", "tf2onnx or openvino"),
    ]
    for flags, what, hint in cases:
        assert main(["import", str(DATA / "cnn.tflite"), *flags, "-o", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and what in err and hint in err, err
    (tmp_path / "cut.tflite").write_bytes((DATA / "cnn.tflite").read_bytes()[:3000])
    assert main(["import", str(tmp_path / "cut.tflite"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "corrupted" in err and "tf2onnx==1.17.0" in err, err
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_a_failing_onnx_converter_falls_back_to_openvino(tmp_path, monkeypatch):
    """tf2onnx present but failing on the model: OpenVINO converts, and the step says why."""
    import sys

    import laser.importer
    from laser.errors import ConfigError
    from laser.importer import frameworks as fw
    from laser.importer import import_model

    def fails(*args, **kwargs):
        raise ConfigError(f"cnn.tflite: tf2onnx: Tensorflow op [x: Foo] is not supported (ran by {sys.executable})")

    monkeypatch.setattr(fw, "python_for", lambda fmt, python=None: sys.executable)
    monkeypatch.setattr(laser.importer, "via_onnx", fails)
    art = import_model(DATA / "cnn.tflite")
    why = art.lineage[-1].params["converter_reason"]
    assert art.format == "openvino" and why.startswith("fallback: tf2onnx failed") and "Foo" in why, why
    assert sys.executable not in why  # no local path in the manifest
    with pytest.raises(ConfigError, match="Foo"):  # an ONNX result asked for: no fallback
        import_model(DATA / "cnn.tflite", to="onnx")
