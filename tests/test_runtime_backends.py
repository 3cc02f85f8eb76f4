"""Runtime backends (onnxruntime, openvino, torchscript) and backend='auto', on digits-cnn."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import laser
from laser.errors import BackendError, ConfigError, InputError, NotFoundError
from laser.export import export
from laser.runtime import BACKENDS, backends_for, run
from laser.runtime.auto import clear_cache


@pytest.fixture(scope="module")
def digits_onnx(digits_artifact):
    return export(digits_artifact, to="onnx", exporter="legacy")


@pytest.fixture(scope="module")
def reference(digits_artifact, digits_test):
    feeds = digits_test.feeds(["input"], 0, 16)
    return feeds, laser.run(digits_artifact, backend="torch")(feeds)["logits"]


def test_backends_table_names_every_backend_and_the_formats_it_runs():
    assert set(BACKENDS) == {"torch", "torchscript", "onnxruntime", "openvino", "echo", "browser", "executorch", "aoti", "compiled", "ssh"}
    assert BACKENDS["executorch"][1] == ("executorch",)
    assert BACKENDS["onnxruntime"][1] == ("onnx", "ort")


def test_backends_for_an_onnx_artifact_are_onnxruntime_and_openvino(digits_onnx):
    assert backends_for(digits_onnx) == ["onnxruntime", "openvino"]


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_onnx_backends_match_torch_on_real_digits(digits_onnx, reference, backend):
    feeds, ref = reference
    got = run(digits_onnx, backend=backend)(feeds)["logits"]
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-3)


def test_torchscript_backend_matches_torch(digits_artifact, reference):
    ts = export(digits_artifact, to="torchscript")
    feeds, ref = reference
    np.testing.assert_allclose(run(ts, backend="torchscript")(feeds)["logits"], ref, atol=1e-4, rtol=1e-3)


def test_onnxruntime_runner_sets_threads_and_reports_its_provider(digits_onnx):
    runner = run(digits_onnx, backend="onnxruntime", threads=1)
    assert runner.session.get_session_options().intra_op_num_threads == 1
    info = runner.describe()
    assert info["providers"] == ["CPUExecutionProvider"] and info["threads"] == 1
    assert info["graph_optimization"] == "all"


def test_onnxruntime_runner_refuses_a_provider_this_build_lacks(digits_onnx):
    with pytest.raises(BackendError, match="'NoSuchExecutionProvider' is not in this onnxruntime build"):
        run(digits_onnx, backend="onnxruntime", providers=["NoSuchExecutionProvider"])


def test_onnxruntime_cpu_device_asks_for_the_cpu_provider_only(digits_onnx):
    from laser.runtime.onnxruntime import default_providers

    assert default_providers(digits_onnx, "cpu") == ["CPUExecutionProvider"]


def test_tensorrt_options_cover_the_dynamic_batch_with_one_profile(digits_onnx):
    from laser.runtime.onnxruntime import TRT_MAX_BATCH, tensorrt_options

    opts = tensorrt_options(digits_onnx)
    assert opts["trt_profile_min_shapes"] == "input:1x1x8x8"
    assert opts["trt_profile_max_shapes"] == f"input:{TRT_MAX_BATCH}x1x8x8"
    assert opts["trt_fp16_enable"] is False and opts["trt_engine_cache_enable"] is True


def test_runner_validates_inputs_against_the_spec(digits_onnx):
    runner = run(digits_onnx, backend="onnxruntime")
    with pytest.raises(InputError, match="dtype float64, expected float32"):
        runner({"input": np.zeros((1, 1, 8, 8))})
    with pytest.raises(InputError, match=r"dim 2 must be 8, got 9"):
        runner({"input": np.zeros((1, 1, 9, 8), np.float32)})
    with pytest.raises(InputError, match="missing \\['input'\\]"):
        runner({"x": np.zeros((1, 1, 8, 8), np.float32)})


def test_openvino_runner_defaults_to_fp32_not_the_cpus_bf16(digits_onnx):
    runner = run(digits_onnx, backend="openvino")
    assert runner.describe()["precision"] == "f32"
    assert "float32" in str(runner.compiled.get_property("INFERENCE_PRECISION_HINT"))


def test_backend_rejects_an_artifact_format_it_cannot_run(digits_artifact, digits_onnx):
    with pytest.raises(BackendError, match="runs \\['onnx', 'ort'\\] artifacts"):
        run(digits_artifact, backend="onnxruntime")
    with pytest.raises(BackendError, match="runs \\['torchscript'\\] artifacts"):
        run(digits_onnx, backend="torchscript")


def test_unknown_backend_and_unknown_option_are_config_errors(digits_onnx):
    with pytest.raises(NotFoundError, match="unknown backend 'tensorflow'"):
        run(digits_onnx, backend="tensorflow")
    with pytest.raises(ConfigError, match="takes no option\\(s\\) \\['precision'\\]"):
        run(digits_onnx, backend="onnxruntime", precision="bf16")


def test_auto_measures_the_candidates_and_says_what_it_picked_and_why(digits_onnx, caplog):
    clear_cache()
    with caplog.at_level(logging.INFO, logger="laser.runtime"):
        runner = run(digits_onnx, backend="auto")
    choice = runner.choice
    assert runner.backend == choice["backend"] in ("onnxruntime", "openvino")
    assert set(choice["timings_ms"]) == {"onnxruntime", "openvino"}
    assert choice["timings_ms"][choice["backend"]] == min(choice["timings_ms"].values())
    assert choice["reason"].startswith(f"fastest measured here: {choice['backend']}")
    assert choice["cached"] is False
    assert any("auto backend for digits-cnn" in r.message for r in caplog.records)


def test_auto_decision_is_cached_per_model_file_and_machine(digits_onnx):
    clear_cache()
    first = run(digits_onnx, backend="auto")
    second = run(digits_onnx, backend="auto")
    assert second.choice["cached"] is True and second.backend == first.backend


def test_auto_passes_options_only_to_the_backends_that_take_them(digits_onnx):
    clear_cache()
    runner = run(digits_onnx, backend="auto", threads=1, precision="f32")
    assert runner.threads == 1


def test_auto_on_a_torch_artifact_is_torch_and_says_how_to_get_faster(digits_artifact):
    runner = run(digits_artifact, backend="auto")
    assert runner.backend == "torch"
    assert "export to ONNX" in runner.choice["reason"]
