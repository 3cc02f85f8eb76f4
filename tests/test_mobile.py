"""`laser optimize --target mobile` and programs with a fixed batch (ExecuTorch .pte): what runs where."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import laser
from laser.errors import ConfigError
from laser.optimize import Settings, optimize
from laser.optimize import candidates as cands
from laser.optimize.targets import TARGETS, target
from laser.spec import ModelSpec
from test_optimize_engine import FakeMeasure, FakeTimer


def _plan(name: str) -> list[tuple[str, str, str]]:
    t = target(name)
    chosen = cands.plan(list(t.recipes or cands.DEFAULT_RECIPES), t.choose("formats", []) or [],
                        t.choose("backends", []), "torch")
    return [(c.recipe, c.format, c.backend) for c in chosen]


def test_mobile_target_plans_pte_and_ort_only_beside_the_eager_reference():
    planned = _plan("mobile")
    assert planned[0] == ("none", "torch", "torch")  # the reference every speed-up is quoted against
    assert set(planned[1:]) == {("none", "executorch", "executorch"), ("int8-pt2e", "executorch", "executorch"),
                                ("none", "ort", "onnxruntime"), ("int8-static", "ort", "onnxruntime")}
    mobile = TARGETS["mobile"]
    assert not mobile.deployable("torch", "torch") and mobile.deployable("ort", "onnxruntime")
    with pytest.raises(ConfigError, match="do not run on target 'mobile'"):
        mobile.choose("formats", ["onnx"])
    with pytest.raises(ConfigError, match="unknown --target"):
        target("phone")


def test_browser_target_plans_the_web_page_backend_only():
    pytest.importorskip("playwright")
    assert _plan("browser") == [("none", "torch", "torch"), ("none", "onnx", "browser"),
                                ("int8-static", "onnx", "browser")]


def test_server_target_is_the_default_plan_unchanged():
    default = cands.plan(list(cands.DEFAULT_RECIPES), cands.DEFAULT_FORMATS, None, "torch")
    assert _plan("server") == [(c.recipe, c.format, c.backend) for c in default]
    assert not any(c.format in ("executorch", "ort") or c.backend == "browser" for c in default)


def test_mobile_winner_is_never_the_eager_reference_and_the_report_names_the_target(tmp_path):
    result = optimize("digits-cnn", target="mobile", recipes=["none"], formats="ort", output=tmp_path,
                      settings=Settings.fast(doctor=False), progress=False, evaluate=FakeMeasure(),
                      timer=FakeTimer())
    eager = result.get("none", "torch", "torch")
    assert eager is not None and eager.measured and eager.off_target and not eager.feasible
    assert result.winner is not None and result.winner.candidate.format == "ort"
    assert "for target mobile" in result.verdict() and "reference (off target)" in result.summary()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["target"] == "mobile" and report["verdict"] == result.verdict()
    assert 'target = "mobile"' in (tmp_path / "winner.toml").read_text()
    assert any("target mobile" in n for n in result.notes)


def test_fixed_batch_is_part_of_the_spec_and_the_manifest(digits_artifact, tmp_path):
    from laser.export.adapter import fixed_batch_spec

    spec = fixed_batch_spec(digits_artifact.spec, 1)
    assert spec.fixed_batch == 1 and spec.inputs[0].shape[0] == 1
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert "fixed_batch" not in digits_artifact.spec.to_dict()  # other specs serialise as they did
    assert spec.accepts_batch(1) and not spec.accepts_batch(8) and spec.batch_step(64) == 1
    with pytest.raises(ConfigError, match="fixed_batch"):
        ModelSpec(spec.inputs, spec.outputs, fixed_batch=0)


@pytest.mark.slow  # builds and measures five candidates, PT2E calibration included: ~2 min on 2 cores
def test_optimize_target_mobile_on_digits_cli(tmp_path, capsys):
    pytest.importorskip("executorch.runtime")
    from laser.cli.main import main

    code = main(["optimize", "--target", "mobile", "--quick", "--no-progress", "-o", str(tmp_path),
                 "--budget", "accuracy_drop<=1%"])
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    assert code == 0 and report["target"] == "mobile" and "Winner for target mobile" in printed
    measured = {(c["recipe"], c["format"], c["backend"]): c for c in report["candidates"] if c["status"] == "measured"}
    assert ("int8-pt2e", "executorch", "executorch") in measured and ("none", "ort", "onnxruntime") in measured
    winner = next(c for c in report["candidates"] if c["name"] == report["winner"])
    assert winner["format"] in ("executorch", "ort")
    pte = measured[("none", "executorch", "executorch")]
    assert any("batch 1 only" in w for w in pte["warnings"])
    assert all(r["batch_size"] == 1 for r in pte["entry"]["latency_sweep"])


@pytest.fixture(scope="module")
def mobilenet():
    from laser.models.factory import with_batchnorm_statistics

    torch.manual_seed(0)
    art = laser.load("torchvision.models:mobilenet_v3_small", random_weights=True, input_shape=(3, 224, 224))
    return with_batchnorm_statistics(art)  # realistic activation scales for random weights


@pytest.mark.slow  # two lowerings of MobileNetV3-small, PT2E calibration included: 4-9 min on 2 shared cores
def test_mobilenet_v3_small_to_pte_fp32_and_int8(mobilenet, capsys):
    pytest.importorskip("executorch.runtime")
    fp32 = laser.export(mobilenet, to="executorch")
    step = fp32.lineage[-1].results
    assert step["verified"] and step["validation"]["passed"] and fp32.spec.fixed_batch == 1
    x = np.ascontiguousarray(fp32.spec.example_inputs(batch=1, seed=7)["input"])
    with torch.inference_mode():
        want = mobilenet.module(torch.from_numpy(x)).numpy()
    with laser.run(fp32, backend="executorch") as runner:
        got = runner({"input": x})["logits"]
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))  # FP32: tight
    report = step["delegation"]
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in mobilenet.module.modules())
    assert report["partitions"] >= 1 and report["by_operator"]["convolution"]["delegated"] == convs
    assert report["delegated_fraction"] > 0.9

    int8 = laser.export(mobilenet, to="executorch", quantize="int8", data="random")
    s8 = int8.lineage[-1].results
    check = s8["validation"]
    # calibrated and checked on random inputs: reported, not held to the spec (no accuracy claim)
    assert s8["verified"] is False and check["samples"] == 64 and "held out" in check["data"]
    assert check["top1_agreement"] >= 0.5 and check["rel_l2"] < 0.5  # 1000 classes: chance is 0.1 %
    assert any("quantize_per" in op for op in s8["delegation"]["by_operator"]) and s8["delegation"]["partitions"] >= 1
    assert int8.model_file.stat().st_size < 0.5 * fp32.model_file.stat().st_size
    with capsys.disabled():
        print(f"\nMobileNetV3-small INT8 .pte vs FP32 eager on {check['samples']} random inputs: top-1 agreement "
              f"{100 * check['top1_agreement']:.1f} %, relative L2 {100 * check['rel_l2']:.1f} %; delegation "
              f"FP32 {report['delegated_ops']}/{report['delegated_ops'] + report['portable_ops']} ops to XNNPACK")


def test_cli_refuses_a_format_the_target_does_not_run_in_one_line(tmp_path, capsys):
    from laser.cli.main import main

    assert main(["optimize", "--target", "mobile", "--formats", "onnx", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "do not run on target 'mobile'" in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # refused before anything was written
