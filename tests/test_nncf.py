"""int8-nncf (NNCF post-training INT8, with and without accuracy control) and bf16/f16 inference precision
on OpenVINO (the Precision stage, its recipes, and how runners honour what the artifact records)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import laser
from laser.errors import BackendError, ConfigError

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from laser.compress.quantize import Quantize
from laser.optimize import candidates as cands
from laser.runtime import precision as P


@pytest.fixture(scope="module")
def digits_onnx(digits_artifact):
    from laser.export import export

    return export(digits_artifact, to="onnx", dynamic_batch=True)


@pytest.fixture(scope="module")
def nncf_digits(digits_onnx, digits_test):
    return Quantize("int8-nncf", calibration="digits", samples=64, data=digits_test, check_speed=False,
                    progress=False)(digits_onnx)


def _top1(art, data, backend) -> float:
    from laser.measure.accuracy import classification

    with laser.run(art, backend=backend) as runner:
        return classification(runner, data)["top1"]


def _ops(art) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(art.model_file)).graph.node}


# -- int8-nncf -------------------------------------------------------------------------------------
def test_int8_nncf_keeps_top1_within_a_point_on_openvino_and_records_the_method(nncf_digits, digits_onnx,
                                                                                 digits_test):
    assert nncf_digits.format == "onnx"
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(nncf_digits)
    fp32, q = _top1(digits_onnx, digits_test, "openvino"), _top1(nncf_digits, digits_test, "openvino")
    assert abs(fp32 - q) <= 0.01
    step = nncf_digits.lineage[-1]
    assert step.op == "quantize" and step.params["method"] == "int8-nncf"
    assert step.results["format"] == "QDQ (NNCF)" and step.results["engine"].startswith("nncf ")
    assert step.results["calibration"]["source"] == "digits/train"
    assert step.results["accuracy"]["method"].startswith("measured") and "openvino" in step.results["accuracy"]["method"]
    assert nncf_digits.lineage[-1].results["bytes"]["ratio"] < 0.5


def test_int8_nncf_also_runs_on_onnxruntime(nncf_digits, digits_test):
    assert abs(_top1(nncf_digits, digits_test, "onnxruntime") - _top1(nncf_digits, digits_test, "openvino")) <= 0.01


def test_int8_nncf_bundle_round_trips_with_its_lineage(nncf_digits, tmp_path):
    saved = nncf_digits.save(tmp_path / "q")
    manifest = json.loads((tmp_path / "q" / "laser.json").read_text())
    assert manifest["format"] == "onnx" and manifest["lineage"][-1]["params"]["method"] == "int8-nncf"
    again = laser.Artifact.open(saved.location)
    with laser.run(again, backend="openvino") as runner:
        assert runner(again.spec.example_inputs(batch=1))


def test_accuracy_control_returns_the_outlier_layer_to_float(outlier_digits_onnx, digits_test):
    q = Quantize("int8-nncf", calibration="digits", samples=64, data=digits_test, max_accuracy_drop=1.0,
                 check_speed=False, progress=False)(outlier_digits_onnx)
    aa = q.lineage[-1].results["accuracy_aware"]
    assert aa["met"] and aa["drop_points"] <= 1.0 and aa["metric"] == "top1"
    assert aa["kept_in_float"], "per-tensor INT8 of the outlier activations collapses: a layer must stay float"
    assert {k["node"] for k in aa["kept_in_float"]} <= set(q.lineage[-1].results["excluded"])
    assert _top1(q, digits_test, "openvino") >= aa["fp32_top1"] - 0.01


@pytest.mark.parametrize("options, match", [
    ({"activation_type": "int8"}, "chooses activation_type"),
    ({"calibration_method": "entropy"}, "chooses calibration_method"),
    ({"per_channel": False}, "chooses per_channel"),
    ({"calibration": None}, "int8-nncf needs calibration data"),
])
def test_int8_nncf_refuses_options_nncf_decides(options, match):
    with pytest.raises(ConfigError, match=match):
        Quantize("int8-nncf", **{"calibration": "digits", **options})


def test_cli_quantize_accepts_int8_nncf(tmp_path, capsys):
    from laser.cli.main import main

    code = main(["quantize", "digits-cnn", "--method", "int8-nncf", "--calibration", "digits", "--samples", "32",
                 "-o", str(tmp_path / "q"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["method"] == "int8-nncf" and out["format"] == "onnx"
    assert out["speed"]["backend"] == "openvino"


def test_cli_quantize_int8_nncf_with_accuracy_control_prints_the_summary(tmp_path, capsys):
    from laser.cli.main import main

    code = main(["quantize", "digits-cnn", "--method", "int8-nncf", "--calibration", "digits", "--samples", "32",
                 "--data", "digits", "--max-accuracy-drop", "1", "-o", str(tmp_path / "q")])
    out = capsys.readouterr().out
    assert code == 0 and "int8-nncf:" in out and "samples, openvino): FP32" in out and "drop 0.00 points" in out


# -- recipes ---------------------------------------------------------------------------------------
def _ctx(data="digits"):
    return cands.Context(source="digits-cnn", base_format="torch", data=data, calibration_samples=64)


def test_int8_nncf_recipes_calibrate_like_int8_static():
    (stage,) = cands.build_recipe("int8-nncf", _ctx()).stages
    assert (stage.method, stage.calibration, stage.max_accuracy_drop) == ("int8-nncf", "digits", None)
    assert cands.build_recipe("int8-nncf", _ctx(None)).stages[0].calibration == "random"
    (ac,) = cands.build_recipe("int8-nncf-ac", _ctx()).stages
    assert (ac.max_accuracy_drop, ac.data) == (cands.NNCF_AC_DROP_POINTS, "digits")
    with pytest.raises(cands.Unavailable, match="needs a labelled dataset"):
        cands.build_recipe("int8-nncf-ac", _ctx(None))
    assert "int8-nncf" in cands.DEFAULT_RECIPES and "bf16" in cands.DEFAULT_RECIPES
    assert cands.recipe_domain("bf16", "torch") == cands.recipe_domain("int8-nncf", "torch") == "onnx"


def test_int8_nncf_recipe_is_unavailable_without_nncf(monkeypatch):
    real = cands.importlib.util.find_spec
    monkeypatch.setattr(cands.importlib.util, "find_spec", lambda name, *a: None if name == "nncf" else real(name, *a))
    with pytest.raises(cands.Unavailable, match="pip install"):
        cands.build_recipe("int8-nncf", _ctx())


# -- bf16 / f16 inference precision -----------------------------------------------------------------
@pytest.fixture
def no_bf16(monkeypatch):
    monkeypatch.setattr(P, "openvino_capabilities", lambda device="CPU": ("FP32", "INT8", "BIN"))


@pytest.fixture
def fake_bf16(monkeypatch):
    """A CPU whose OpenVINO reports BF16 and compiles what it is asked (the numbers stay f32 on this machine:
    the plumbing is what is tested; test_real_bf16 checks the numbers where the CPU has the kernels)."""
    from laser.runtime import openvino as ov_runner

    monkeypatch.setattr(P, "openvino_capabilities", lambda device="CPU": ("FP32", "INT8", "BF16"))
    monkeypatch.setattr(ov_runner, "compiled_precision", lambda compiled, asked: asked)


def test_bf16_is_unavailable_with_the_reason_where_the_cpu_has_no_bf16_kernels(no_bf16, digits_onnx):
    with pytest.raises(cands.Unavailable, match="no bf16 kernels in OpenVINO.*would silently run f32"):
        cands.build_recipe("bf16", _ctx())
    with pytest.raises(cands.Unavailable, match="no f16 kernels"):
        cands.build_recipe("fp16-openvino", _ctx())
    with pytest.raises(P.PrecisionUnavailable, match="BF16"):
        laser.Precision("bf16")(digits_onnx)
    with pytest.raises(BackendError, match="cannot run 'digits-cnn' in bf16"):
        laser.run(digits_onnx, backend="openvino", precision="bf16")


def test_openvino_runner_refuses_a_precision_the_compiler_dropped(monkeypatch, digits_onnx):
    # the probe says yes but OpenVINO compiles f32 (what it does on a CPU without the kernels): never run f32
    # under a bf16 name
    if P.unavailable_reason("bf16") is None:
        pytest.skip("this CPU really has bf16 kernels")
    monkeypatch.setattr(P, "openvino_capabilities", lambda device="CPU": ("FP32", "BF16"))
    with pytest.raises(BackendError, match="compiled 'digits-cnn' in f32, not the bf16"):
        laser.run(digits_onnx, backend="openvino", precision="bf16")


def test_bf16_candidate_records_its_precision_is_validated_and_runs_so(fake_bf16, digits_artifact, digits_test,
                                                                        tmp_path):
    (stage,) = cands.build_recipe("bf16", _ctx()).stages
    assert stage.op == "precision" and stage.precision == "bf16" and stage.data == "digits"
    bf = stage(digits_artifact)
    assert bf.format == "onnx"
    step = bf.lineage[-1]
    assert step.op == "precision" and step.results["runtime"] == {**step.results["runtime"], "precision": "bf16",
                                                                  "backend": "openvino"}
    check = step.results["validation"]
    assert check["passed"] and check["top1_agreement"] >= 0.95 and "max_rel_error" in check
    assert any("digits" in i for i in check["inputs"])  # real samples joined the parity check
    saved = bf.save(tmp_path / "bf16")
    with laser.run(laser.Artifact.open(saved.location), backend="openvino") as runner:
        d = runner.describe()
        assert d["precision"] == "bf16" and "manifest" in d["precision_source"]
    with laser.run(saved, backend="openvino", precision="f32") as runner:  # an explicit argument wins
        assert runner.describe()["precision"] == "f32"
    with pytest.raises(BackendError, match="records bf16 inference precision for openvino"):
        laser.run(saved, backend="onnxruntime")


def test_precision_stage_round_trips_through_a_recipe_file(tmp_path):
    from laser.stages import load_recipe, save_recipe

    path = save_recipe(tmp_path / "r.toml", [laser.Precision("bf16", max_rel_error=0.05)])
    (stage,), _ = load_recipe(path)
    assert stage == laser.Precision("bf16", max_rel_error=0.05)
    with pytest.raises(ConfigError, match="fp16 \\*weights\\*"):
        laser.Precision("fp16")
    with pytest.raises(ConfigError, match="openvino"):
        laser.Precision("bf16", backend="onnxruntime")


def test_parity_gate_fails_a_bf16_model_that_drifts(digits_onnx, tmp_path):
    from laser.errors import ParityError

    with pytest.raises(ParityError, match="drifts from FP32: max relative error"):
        laser.Precision("bf16", max_rel_error=1e-3).validate(digits_onnx, _perturbed(digits_onnx, tmp_path))


def _perturbed(art, tmp_path):
    """digits-cnn ONNX with its output scaled by 1.01: a 1 % drift the gate of 0.1 % must catch."""
    import onnx
    from onnx import helper, numpy_helper

    from laser.compress.mixed_precision import as_onnx_artifact

    model = onnx.load(str(art.model_file))
    out = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [o + "_raw" if o == out else o for o in node.output]
    model.graph.node.append(helper.make_node("Mul", [out + "_raw", "drift"], [out]))
    model.graph.initializer.append(numpy_helper.from_array(np.array(1.01, np.float32), "drift"))
    onnx.save(model, str(tmp_path / "perturbed.onnx"))
    return as_onnx_artifact(art, tmp_path / "perturbed.onnx")


@pytest.mark.skipif(P.unavailable_reason("bf16") is not None, reason="this CPU has no bf16 kernels in OpenVINO")
def test_real_bf16_on_a_cpu_with_the_kernels(digits_artifact, digits_test):
    bf = laser.Precision("bf16", data=digits_test)(digits_artifact)
    with laser.run(bf, backend="openvino") as runner:
        assert runner.describe()["precision"] == "bf16"
        assert "16" in str(runner.compiled.get_property("INFERENCE_PRECISION_HINT"))
    assert bf.lineage[-1].results["validation"]["passed"]
