"""Native deployment: AOTInductor export + backend, torch.compile backend, `laser deploy cpp`.

Compiling is what costs here: with a cold Inductor cache (each test session has its own) an AOTI package
of even a two-layer MLP took 69-107 s on the shared 2-core machine (the C++ wrapper against libtorch's
headers), torch.compile of it 44 s, and each C++ program build 1-2 min. So the default suite checks
everything that needs no compiler (project writer, errors, planner, doctor check and probe); digits-cnn and MobileNetV3-small compiled, torch.compile
and the three C++ builds are in the slow suite (`make test-slow`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import laser
from laser.artifact import Artifact
from laser.errors import ConfigError, DependencyError, ExportError
from laser.export import export
from laser.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def digits_aoti(digits_artifact):
    return export(digits_artifact, to="aoti")


def spec_of(n_in: int, n_out: int) -> ModelSpec:
    return ModelSpec.from_dict({"inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", n_in]}],
                                "outputs": [{"name": "y", "dtype": "float32", "shape": ["batch", n_out]}]})


@pytest.fixture(scope="session")
def mlp():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    return Artifact.from_module(module, name="mlp", task="other", spec=spec_of(8, 4), architecture=None)


@pytest.fixture(scope="session")
def mlp_aoti(mlp):
    return export(mlp, to="aoti")


@pytest.fixture()
def aoti_shell(mlp):
    """An aoti-format artifact whose file is not compiled: for the project writer, which only copies it."""
    return Artifact.from_files({"model.pt2": mlp.file("weights")}, name="mlp", task="other", format="aoti",
                               spec=mlp.spec)


def eager(art, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return art.module.eval()(torch.from_numpy(x)).numpy()


@pytest.mark.slow
def test_aoti_mlp_exports_validates_runs_and_round_trips(mlp, mlp_aoti, tmp_path):
    step = mlp_aoti.lineage[-1]
    assert mlp_aoti.format == "aoti" and step.results["verified"] and step.results["compile_seconds"] > 0
    cache = Path(step.results["export"]["cache_dir"])
    assert not cache.is_relative_to(ROOT) and not cache.is_relative_to(Path.home())
    x = np.random.default_rng(0).standard_normal((7, 8)).astype(np.float32)
    again = laser.load(str(mlp_aoti.save(tmp_path / "b").location))
    with laser.run(again, backend="aoti", threads=2) as runner:
        got = runner({"x": x})["y"]  # batch 7: the batch dim stayed dynamic (exported at 2)
    with torch.inference_mode():
        want = mlp.module(torch.from_numpy(x)).numpy()
    assert again.format == "aoti" and np.abs(got - want).max() < 1e-5


@pytest.mark.slow
def test_aoti_export_validates_and_matches_eager(digits_artifact, digits_aoti, digits_test):
    step = digits_aoti.lineage[-1]
    assert digits_aoti.format == "aoti" and digits_aoti.model_file.suffix == ".pt2"
    assert step.results["verified"] and step.results["compile_seconds"] > 0
    cache = Path(step.results["export"]["cache_dir"])
    assert not cache.is_relative_to(ROOT) and not cache.is_relative_to(Path.home())
    x = np.ascontiguousarray(digits_test.inputs[0][:16])
    with laser.run(digits_aoti, backend="aoti", threads=2) as runner:
        got = runner({"input": x})["logits"]
        odd = runner({"input": x[:5]})["logits"]  # the batch dim stayed dynamic
    want = eager(digits_artifact, x)
    assert np.abs(got - want).max() < 1e-4 and np.abs(odd - want[:5]).max() < 1e-4


@pytest.mark.slow
def test_compiled_backend_matches_eager_and_reports_compile_time(digits_artifact, digits_test):
    x = np.ascontiguousarray(digits_test.inputs[0][:16])
    with laser.run(digits_artifact, backend="compiled", threads=2) as runner:
        got = runner({"input": x})["logits"]
        info = runner.describe()
    assert np.abs(got - eager(digits_artifact, x)).max() < 1e-4
    assert info["backend"] == "compiled" and info["mode"] == "default" and float(info["compile_seconds"]) > 0
    with pytest.raises(ConfigError, match="torch.compile mode"):
        laser.run(digits_artifact, backend="compiled", mode="fastest")


class DataDependent(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # control flow on a value: torch.export cannot capture it
            return x * 2
        return x - 1


def test_uncapturable_model_names_the_break_and_hints_onnx():
    art = Artifact.from_module(DataDependent(), name="dd", task="other", spec=spec_of(4, 4), architecture=None)
    with pytest.raises(ExportError) as info:
        export(art, to="aoti")
    text = str(info.value)
    assert "torch.export failed on DataDependent" in text and "--to onnx" in text
    assert "test_native.py" in text or "x.sum() > 0" in text or "data-dependent" in text.lower()


def test_deploy_cpp_writes_a_project_for_each_format(aoti_shell, digits_artifact, tmp_path):
    from laser.deploy import cpp_project

    d = Path(cpp_project(aoti_shell, tmp_path / "aoti")["directory"])
    assert {"CMakeLists.txt", "main.cpp", "README.md", "model.pt2", "model_spec.hpp", "npy.hpp"} <= {
        p.name for p in d.iterdir()}
    assert "AOTIModelPackageLoader" in (d / "main.cpp").read_text()
    assert "{-1, 8}" in (d / "model_spec.hpp").read_text()
    assert torch.utils.cmake_prefix_path in (d / "CMakeLists.txt").read_text()
    ts = Path(cpp_project(export(digits_artifact, to="torchscript"), tmp_path / "ts")["directory"])
    assert "torch::jit::load" in (ts / "main.cpp").read_text() and "{-1, 1, 8, 8}" in (ts / "model_spec.hpp").read_text()
    onnx = Path(cpp_project(export(digits_artifact, to="onnx"), tmp_path / "onnx")["directory"])
    cmake = (onnx / "CMakeLists.txt").read_text()
    assert "Ort::Session" in (onnx / "main.cpp").read_text() and "ONNX Runtime 1.29.0" in cmake
    assert Path(re.search(r'ORT_LIBRARY "([^"]+)"', cmake).group(1)).is_file()


def test_deploy_cpp_bad_input(digits_artifact, aoti_shell, tmp_path, monkeypatch):
    from laser.deploy import cpp_project

    with pytest.raises(ExportError, match="laser export MODEL --to aoti"):
        cpp_project(digits_artifact, tmp_path / "t")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(DependencyError, match="apt-get install -y cmake g\\+\\+"):
        cpp_project(aoti_shell, tmp_path / "c", build=True)
    assert not (tmp_path / "c").exists()  # checked before anything is written


def test_deploy_cli_one_line_error(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "laser.cli.main", "deploy", "cpp", "digits-cnn", "-o",
                           str(tmp_path / "x")], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "--to aoti" in done.stderr


def test_optimize_plans_aoti_and_compiled_only_when_asked():
    from laser.optimize.candidates import DEFAULT_FORMATS, plan

    default = plan(["none"], DEFAULT_FORMATS, None, "torch")
    assert not any(c.backend == "compiled" or c.format == "aoti" for c in default)
    asked = plan(["none"], ["torch", "aoti"], ["torch", "compiled", "aoti"], "torch")
    assert {(c.format, c.backend) for c in asked} >= {("torch", "compiled"), ("aoti", "aoti"), ("torch", "torch")}


def test_doctor_explains_a_compiled_model_that_is_not_faster(mlp, aoti_shell):
    from laser.doctor.checks import CHECKS
    from laser.doctor.facts import Facts

    f = Facts(mlp, aoti_shell, "torch", "aoti", parent_p50=1.0, child_p50=1.1)
    f.compiled = {"graphs": 2, "graph_breaks": 1, "break_reasons": ["call to .item()"], "fallback_kernels": {}}
    found = CHECKS["compiled-not-faster"](f)
    assert found is not None and "graph break" in found.cause and ".item()" in found.evidence
    f.compiled = {"graphs": 1, "graph_breaks": 0, "fallback_kernels": {"aten.nonzero.default": 1}}
    assert "fallback" in CHECKS["compiled-not-faster"](f).cause
    f.child_p50 = 0.5  # faster: nothing to explain
    assert CHECKS["compiled-not-faster"](f) is None


def test_doctor_probe_measures_graph_breaks(aoti_shell):
    from laser.doctor.compiled import compile_facts

    art = Artifact.from_module(DataDependent(), name="dd", task="other", spec=spec_of(4, 4), architecture=None)
    facts = compile_facts(art, art, "aoti-not-compiled")
    assert facts == {}
    facts = compile_facts(art, aoti_shell, "aoti")
    assert facts["graph_breaks"] >= 1 and facts["graphs"] >= 2 and "export_error" in facts


# -- slow: the C++ builds, and MobileNetV3-small ----------------------------------------------------
def build_and_run(art, tmp_path: Path, x: np.ndarray) -> np.ndarray:
    from laser.deploy import cpp_project

    binary = cpp_project(art, tmp_path / f"cpp-{art.format}", build=True)["binary"]
    np.save(tmp_path / "x.npy", x)
    done = subprocess.run([binary, "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    bad = np.zeros((2, *[d + 1 for d in x.shape[1:]]), np.float32)
    np.save(tmp_path / "bad.npy", bad)
    wrong = subprocess.run([binary, "--input", str(tmp_path / "bad.npy"), "--output", str(tmp_path / "z.npy")],
                           capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1 and "needs" in wrong.stderr
    return np.load(tmp_path / "y.npy")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["aoti", "torchscript", "onnx"])
def test_cpp_program_matches_python_runner(fmt, digits_artifact, digits_aoti, digits_test, tmp_path):
    from laser.export.validate import REFERENCE_BACKEND

    art = digits_aoti if fmt == "aoti" else export(digits_artifact, to=fmt)
    x = np.ascontiguousarray(digits_test.inputs[0][:16])
    with laser.run(art, backend=REFERENCE_BACKEND[fmt]) as r:
        want = r({"input": x})["logits"]
    got = build_and_run(art, tmp_path, x)
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-4


@pytest.mark.slow
def test_mobilenet_v3_small_aoti_and_compiled_match_eager():
    pytest.importorskip("torchvision")
    art = laser.load("mobilenet_v3_small", random_weights=True)
    exported = export(art, to="aoti")
    assert exported.lineage[-1].results["verified"]
    x = art.spec.example_inputs(batch=2)
    want = laser.run(art, backend="torch")(x)
    name = art.spec.output_names[0]
    for runner in (laser.run(exported, backend="aoti"), laser.run(art, backend="compiled")):
        assert np.abs(runner(x)[name] - want[name]).max() < 1e-3


@pytest.mark.slow
def test_readme_native_section_runs_as_written(tmp_path):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Native deployment"):]
    block = re.findall(r"```bash\n(.*?)```", section[:section.index("\n## ", 1)], flags=re.S)[0]
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    for line in block.splitlines():
        cmd = line.split("  #")[0].strip()
        if not cmd or cmd.startswith("python bench/"):  # the benchmark takes minutes: run it by hand
            continue
        done = subprocess.run(cmd, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, f"{cmd}: {done.stderr[-400:]}"
    assert np.load(tmp_path / "y.npy").shape == (16, 10)
