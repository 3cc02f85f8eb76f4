"""What a new user trips over first: a server with nothing to serve, exports that differ between two
clones, random weights that look like a real answer."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import laser
from laser.artifact import Step
from laser.cli.main import main
from laser.serve.repository import ModelSettings, load_version

SRC = Path(laser.__file__).resolve().parent


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_serve_of_an_empty_repository_exits_nonzero_naming_it(capsys, tmp_path):
    code, _, err = run_cli(capsys, "serve", tmp_path, "--http-port", "0", "--no-grpc", "--no-socket")
    assert code != 0 and "nothing to serve" in err and str(tmp_path) in err and "--model-control" in err


def test_serve_of_a_model_that_cannot_load_exits_nonzero_with_the_reason(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("LASER_OFFLINE", "1")
    monkeypatch.setenv("LASER_CACHE", str(tmp_path))  # nothing cached
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    code, _, err = run_cli(capsys, "serve", "mobilenet_v3_small", "--http-port", "0", "--no-grpc", "--no-socket")
    last = err.strip().splitlines()[-1]
    assert code != 0 and last.startswith("laser serve: error: nothing to serve: mobilenet_v3_small")
    assert "--random-weights" in last  # the way out for structure-only work


def test_serve_with_model_control_starts_empty_and_says_so(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SRC.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "laser.cli.main", "serve", str(tmp_path), "--http-port", "0",
                             "--no-grpc", "--no-socket", "--model-control"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            line = proc.stderr.readline()  # type: ignore[union-attr]
            seen.append(line)
            if "no model is loaded" in line:
                break
        assert proc.poll() is None, "".join(seen)  # still serving
        assert any("POST /v2/repository/models/NAME/load" in json.loads(s).get("msg", "") for s in seen if s.strip())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_serve_loads_catalog_models_with_random_weights():
    mv = load_version("digits-cnn", "1", "digits-cnn", ModelSettings(backend="echo", random_weights=True,
                                                                        warmup=False), None)
    assert mv.artifact.random_weights and mv.artifact.lineage[0].params["weights"] == "random"


def test_random_weights_are_recorded_in_the_manifest_until_trained(tmp_path, capsys):
    saved = laser.load("digits-cnn", random_weights=True).save(tmp_path / "r")
    manifest = json.loads((tmp_path / "r" / "laser.json").read_text())
    assert manifest["random_weights"] is True and laser.load(tmp_path / "r").random_weights
    laser.load("digits-cnn").save(tmp_path / "t")
    assert not saved.derive(Step("distill", params={"epochs": 3})).random_weights  # trained since
    assert "random_weights" not in json.loads((tmp_path / "t" / "laser.json").read_text())
    code, out, _ = run_cli(capsys, "run", saved.location, "--input", _npz(tmp_path), "--json")
    assert code == 0 and json.loads(out)["random_weights"] is True
    code, out, _ = run_cli(capsys, "run", saved.location, "--input", _npz(tmp_path))
    assert code == 0 and "random weights — labels are meaningless" in out


def _npz(tmp_path: Path) -> Path:
    import numpy as np

    path = tmp_path / "x.npz"
    np.savez(path, input=np.zeros((1, 1, 8, 8), np.float32))
    return path


EXPORT = """
import hashlib, sys, laser
out = laser.Export("onnx", exporter="dynamo", verify=False)(laser.load("digits-cnn")).save(sys.argv[1] + "/onnx")
print("onnx", hashlib.sha256(out.model_file.read_bytes()).hexdigest())
"""


def test_an_export_is_byte_identical_from_two_install_locations(tmp_path):
    procs, roots = [], [tmp_path / "a", tmp_path / "deeper" / "b-clone"]
    for root in roots:  # two copies of the package, run side by side from their own directories
        shutil.copytree(SRC, root / "src" / "laser", ignore=shutil.ignore_patterns("__pycache__"))
        env = {**os.environ, "PYTHONPATH": str(root / "src")}
        procs.append(subprocess.Popen([sys.executable, "-c", EXPORT, str(root / "out")], cwd=root, env=env,
                                      text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    digests, files = [], []
    for root, proc in zip(roots, procs):
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-2000:]
        digests.append(stdout)
        files.append((root / "out" / "onnx" / "model.onnx").read_bytes())
    assert digests[0] == digests[1] and digests[0].startswith("onnx ")
    for root in roots:
        assert str(root).encode() not in files[0] + files[1]
    assert b"site-packages" not in files[0] and str(SRC).encode() not in files[0]
    assert hashlib.sha256(files[0]).hexdigest() in digests[0]


def test_a_torchscript_export_holds_no_source_path_of_the_install(tmp_path, digits_artifact):
    import zipfile

    out = laser.Export("torchscript", verify=False)(digits_artifact).save(tmp_path / "ts")
    with zipfile.ZipFile(out.model_file) as z:
        blob = b"".join(z.read(n) for n in z.namelist())
        assert not [n for n in z.namelist() if n.endswith(".debug_pkl")]
    assert str(SRC).encode() not in blob and b"site-packages" not in blob
    assert laser.run(out)(digits_artifact.spec.example_inputs(batch=2))["logits"].shape == (2, 10)


@pytest.mark.parametrize("argv, dest, value", [
    (["diff", "a", "b", "--batch", "4"], "batch_size", 4),
    (["perf", "http://127.0.0.1:1", "-m", "m", "--batch", "2", "--shape", "3,8,8", "--warmup", "0.5"],
     "warmup_seconds", 0.5),
    (["optimize", "-o", "x", "--port", "9000"], "http_port", 9000),
    (["optimize", "digits-cnn", "-o", "x", "--weights", "w.safetensors"], "weights", "w.safetensors"),
    (["serve", "m", "--port", "9001", "--random-weights"], "http_port", 9001),
])
def test_old_spellings_still_parse_into_the_shared_options(argv, dest, value):
    from laser.cli.main import parser

    assert getattr(parser().parse_args(argv), dest) == value


def test_the_doctor_section_groups_identical_findings():
    from types import SimpleNamespace as NS

    from laser.optimize.html import _doctor

    same = {"check": "accuracy-drop", "cause": "the child is less accurate than the budget allows",
            "evidence": "drop 3 pts", "fix": "keep the sensitive layers in float"}
    outcomes = [NS(name=f"c{i}", parent="none · onnx · onnxruntime", speedup_vs_parent=None,
                   diagnosis={"findings": [same]}) for i in range(6)]
    gap = [{"check": "backend-gap", "cause": f"the same artifact is {r}x slower on openvino", "evidence": "e",
            "fix": "ship it on onnxruntime"} for r in (3, 12)]
    outcomes += [NS(name=f"g{i}", parent="p", speedup_vs_parent=0.5, diagnosis={"findings": [f]})
                 for i, f in enumerate(gap)]
    page = _doctor(NS(outcomes=outcomes))
    assert page.count("class='finding'") == 2
    assert "6 candidates: the child is less accurate than the budget allows" in page
    assert "2 candidates: backend gap" in page and "3x slower" in page and "12x slower" in page
    assert page.count("fix: keep the sensitive layers in float") == 1
