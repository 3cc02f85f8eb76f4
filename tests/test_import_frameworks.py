"""laser import of TF SavedModel / Keras / TFLite / Paddle models built with the real frameworks (slow: they
run in the frameworks venv, ``make frameworks-venv``), and the default-suite checks that need none of them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from laser.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "tests" / "frameworks_models.py"
SOURCES = {  # source -> (reference prefix, converter, OpenVINO reads it)
    "cnn_savedmodel": ("cnn", "tf2onnx", True), "cnn.keras": ("cnn", "tf2onnx", False),
    "cnn.h5": ("cnn", "tf2onnx", False), "cnn.tflite": ("cnn", "tf2onnx", True),
    "pd_old/cnn.pdmodel": ("pd_old/cnn", "paddle2onnx", True), "pd_pir/cnn.json": ("pd_pir/cnn", "paddle2onnx", False),
}


def _fw_python() -> str:
    python = os.environ.get("LASER_FRAMEWORKS_PYTHON") or str(ROOT / ".venv-frameworks" / "bin" / "python")
    if not Path(python).is_file():
        pytest.skip("no frameworks Python: make frameworks-venv (or set LASER_FRAMEWORKS_PYTHON)")
    return python


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    python = _fw_python()
    out = tmp_path_factory.mktemp("fw")
    for which in ("tf", "paddle"):
        done = subprocess.run([python, str(BUILD), str(out), which], capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.fixture
def fw_env(monkeypatch):
    monkeypatch.setenv("LASER_FRAMEWORKS_PYTHON", _fw_python())


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.slow
@pytest.mark.parametrize("source", list(SOURCES))
def test_import_matches_the_source_framework(models, fw_env, source, tmp_path, capsys):
    from laser.artifact import Artifact

    prefix, converter, openvino = SOURCES[source]
    assert main(["import", str(models / source), "-o", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert f"with {converter}" in out and "source framework: max |diff|" in out, out
    art = Artifact.open(tmp_path / "b")
    step = art.lineage[-1]
    assert art.format == "onnx" and step.params["converter"] == converter and converter in step.versions
    assert step.params["source"] == Path(source).name  # no local path in the bundle
    assert art.spec.inputs[0].shape[0] == "batch" and step.params["source_inputs"][0]["shape"][0] is None  # dynamic
    parity = step.results["parity_vs_source"]
    assert parity["vs_source"]["max_abs_diff"] < 1e-4 and parity["vs_source"]["top1_agreement"] == 1.0, parity
    assert ("max_abs_diff" in parity["vs_openvino"]) == openvino, parity
    if openvino:
        assert parity["openvino_vs_source"]["max_abs_diff"] < 1e-4, parity
    # the bundle on the references the framework itself computed when it built the model (other inputs)
    x, want = np.load(models / f"{prefix}_x.npy"), np.load(models / f"{prefix}_y.npy")
    np.testing.assert_allclose(_ort(art.model_file, x), want, atol=1e-4)


@pytest.mark.slow
def test_import_savedmodel_to_torch(models, fw_env, tmp_path):
    import torch

    from laser.artifact import Artifact

    assert main(["import", str(models / "cnn_savedmodel"), "--to", "torch", "-o", str(tmp_path / "t")]) == 0
    art = Artifact.open(tmp_path / "t")
    assert art.lineage[-1].params["converter"] == "tf2onnx+onnx2torch"
    x, want = np.load(models / "cnn_x.npy"), np.load(models / "cnn_y.npy")
    with torch.inference_mode():
        np.testing.assert_allclose(art.module(torch.from_numpy(x)).numpy(), want, atol=1e-4)


@pytest.mark.slow
def test_import_bad_framework_models_say_what_to_do(models, fw_env, tmp_path, capsys):
    assert main(["import", str(models / "two_sigs"), "-o", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2 signatures ['double', 'negate']" in err and "--signature" in err, err
    assert main(["import", str(models / "two_sigs"), "--signature", "negate", "-o", str(tmp_path / "n"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parity_vs_source"]["vs_source"]["max_abs_diff"] == 0
    assert main(["import", str(models / "bessel"), "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith("unsupported ops: BesselI0e") and "tf2onnx" in err, err
    (tmp_path / "cut.tflite").write_bytes((models / "cnn.tflite").read_bytes()[:200])
    assert main(["import", str(tmp_path / "cut.tflite"), "-o", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cut.tflite" in err and "corrupt" in err, err
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    assert main(["import", str(tmp_path / "bad.keras"), "-o", str(tmp_path / "k")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.keras is not a readable keras model" in err, err
    assert not any((tmp_path / d).exists() for d in "abck")  # nothing half-written


def test_missing_converter_gives_the_install_line(tmp_path, monkeypatch, capsys):
    """Without a frameworks Python (laser's own lacks tf2onnx/paddle2onnx): one line, exit 2, the pip line."""
    import importlib.util

    if importlib.util.find_spec("tf2onnx") or importlib.util.find_spec("paddle2onnx"):
        pytest.skip("this Python has a converter installed")
    monkeypatch.delenv("LASER_FRAMEWORKS_PYTHON", raising=False)
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    assert main(["import", str(tmp_path / "sm"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "-m pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0" in err, err
    (tmp_path / "m.pdmodel").write_bytes(b"")
    assert main(["import", str(tmp_path / "m.pdmodel"), "-o", str(tmp_path / "o")]) == 2
    assert "pip install paddlepaddle==3.3.1 paddle2onnx==2.1.0" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "sm"), "--python", str(tmp_path / "nope"), "-o", str(tmp_path / "o")]) == 2
    assert "--python" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_converter_logs_name_the_unsupported_ops():
    from laser.importer.fwworker import unsupported_ops

    log = ("2026-12-02 16:17:01,549 - ERROR - Tensorflow op [PartitionedCall/bessel_i0e/BesselI0e: BesselI0e] is "
           "not supported\n2026-12-02 16:17:01,549 - ERROR - Unsupported ops: Counter({'BesselI0e': 1, 'Lu': 2})")
    assert unsupported_ops(log) == ["BesselI0e", "Lu"]
    paddle = "Oops, there are some operators not supported yet, including pd_op.unique_consecutive, pd_op.lu"
    assert unsupported_ops(paddle) == ["pd_op.lu", "pd_op.unique_consecutive"]
    assert unsupported_ops("INFO - Successfully converted TensorFlow model") == []


@pytest.mark.slow
def test_import_paddle_to_torch_then_prune(models, fw_env, tmp_path):
    """Paddle -> paddle2onnx -> onnx2torch -> structured pruning: the pruned model still runs, half the MACs."""
    import torch

    from laser.artifact import Artifact

    assert main(["import", str(models / "pd_old" / "cnn.pdmodel"), "--to", "torch", "-o", str(tmp_path / "t")]) == 0
    x, want = np.load(models / "pd_old" / "cnn_x.npy"), np.load(models / "pd_old" / "cnn_y.npy")
    with torch.inference_mode():
        np.testing.assert_allclose(Artifact.open(tmp_path / "t").module(torch.from_numpy(x)).numpy(), want, atol=1e-4)
    assert main(["prune", str(tmp_path / "t"), "--ratio", "0.5", "--round-to", "1", "-o", str(tmp_path / "p")]) == 0
    pruned = Artifact.open(tmp_path / "p")
    assert pruned.lineage[-1].results["macs_after"] < 0.6 * pruned.lineage[-1].results["macs_before"]
    with torch.inference_mode():
        assert pruned.module(torch.from_numpy(x)).shape == (6, 5)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["cnn_savedmodel", "cnn.tflite", "pd_old/cnn.pdmodel"])
def test_openvino_converter_is_checked_against_the_source_framework(models, fw_env, source, tmp_path, capsys):
    """--converter openvino with the frameworks Python at hand: parity vs the framework itself is measured."""
    from laser.artifact import Artifact

    assert main(["import", str(models / source), "--converter", "openvino", "-o", str(tmp_path / "b")]) == 0
    assert "source framework: max |diff|" in capsys.readouterr().out
    step = Artifact.open(tmp_path / "b").lineage[-1]
    vs = step.results["parity_vs_source"]["vs_source"]
    assert step.params["converter"] == "openvino" and vs["max_abs_diff"] < 1e-5 and vs["top1_agreement"] == 1.0, vs


@pytest.mark.slow  # a laser optimize run on an OpenVINO IR (~20 s on 2 busy cores)
def test_optimize_measures_an_openvino_ir(models, tmp_path, monkeypatch):
    import laser
    from laser.artifact import Artifact

    monkeypatch.delenv("LASER_FRAMEWORKS_PYTHON", raising=False)
    assert main(["import", str(models / "cnn.tflite"), "--converter", "openvino", "-o", str(tmp_path / "b")]) == 0
    result = laser.optimize(Artifact.open(tmp_path / "b"), recipes="none,int8-static", output=tmp_path / "opt",
                            progress=False)
    win = result.winner
    assert win is not None and (win.candidate.format, win.candidate.backend) == ("openvino", "openvino")
    skipped = [o for o in result.outcomes if o.candidate.recipe == "int8-static"]
    assert skipped and all(o.status == "skipped" and "needs a torch or onnx base" in (o.error or "") for o in skipped)
