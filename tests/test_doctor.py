"""The doctor: constructed slow cases on digits-cnn, the profile parser, and each check on measured facts."""

import json
from collections import Counter

import pytest

import laser
from laser.artifact import Step
from laser.cli.main import main
from laser.doctor import Facts, GraphFacts, Probes, Profile, diagnose_pair, doctor
from laser.doctor.checks import run_checks
from laser.doctor.probes import parse_profile


@pytest.fixture(scope="module")
def fp32_onnx():
    from laser.export import Export

    return Export(to="onnx", exporter="legacy")(laser.load("digits-cnn"))


@pytest.fixture(scope="module")
def dynamic_conv(fp32_onnx, tmp_path_factory):
    """The measured trap: onnxruntime's quantize_dynamic applied to convolutions (ConvInteger)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = tmp_path_factory.mktemp("dyn") / "digits-dynamic-conv.onnx"
    quantize_dynamic(str(fp32_onnx.model_file), str(path), op_types_to_quantize=["Conv"],
                     weight_type=QuantType.QUInt8)
    child = laser.load(path)
    return child.derive(Step("quantize", params={"method": "int8-dynamic"}))


def test_doctor_explains_dynamic_int8_on_convolutions(fp32_onnx, dynamic_conv):
    d = doctor(fp32_onnx, dynamic_conv, backend="onnxruntime", quick=True)
    checks = [f.check for f in d.findings]
    assert "dynamic-int8-conv" in checks
    finding = d.findings[checks.index("dynamic-int8-conv")]
    assert "3 ConvInteger" in finding.evidence and "% of the run" in finding.evidence
    assert "int8-static" in finding.fix
    assert d.profile["by_op_us"].get("ConvInteger", 0) > 0
    assert "ConvInteger" in d.to_text()


def test_doctor_explains_fp16_on_the_cpu_provider(fp32_onnx):
    from laser.compress.quantize import Quantize

    with pytest.warns(UserWarning, match="fp16"):
        child = Quantize(method="fp16", progress=False)(fp32_onnx)
    # latency given equal (FP16 is no faster on a CPU): the facts behind it are measured
    d = diagnose_pair(fp32_onnx, child, "onnxruntime", "onnxruntime", parent_metrics={"p50_ms": 0.05},
                      child_metrics={"p50_ms": 0.05}, probes=Probes.fast())
    fp16 = next(f for f in d.findings if f.check == "fp16-on-cpu")
    assert "float16" in fp16.evidence and "avx512_fp16" in fp16.evidence
    assert "FP32" in fp16.cause


def test_doctor_names_an_accuracy_drop_beyond_the_allowed_one(fp32_onnx, dynamic_conv):
    f = Facts(fp32_onnx, dynamic_conv, "onnxruntime", "onnxruntime", 1.0, 1.2, accuracy_drop_pts=2.5,
              allowed_drop_pts=1.0)
    found = {x.check: x for x in run_checks(f)}
    assert "2.50 pts vs 1 allowed" in found["accuracy-drop"].evidence
    assert "Quantize" in found["accuracy-drop"].fix or "QAT" in found["accuracy-drop"].fix


def test_int8_without_vnni_is_flagged_from_the_cpu_flags(fp32_onnx, dynamic_conv):
    f = Facts(fp32_onnx, dynamic_conv, "onnxruntime", "onnxruntime", 1.0, 1.0, cpu_flags={"avx2", "fma"})
    assert "no-vnni" in [x.check for x in run_checks(f)]
    f.cpu_flags = {"avx2", "avx512_vnni"}
    assert "no-vnni" not in [x.check for x in run_checks(f)]


def test_channel_counts_off_multiples_of_8_are_flagged_but_not_the_head(fp32_onnx):
    graph = GraphFacts(Counter(), 0.0, Counter(), [("conv1", 29), ("conv2", 64), ("fc", 10)])
    f = Facts(fp32_onnx, fp32_onnx, "onnxruntime", "onnxruntime", 1.0, 1.0, child_graph=graph)
    odd = next(x for x in run_checks(f) if x.check == "channels-not-multiple-of-8")
    assert "1 of 2 layers" in odd.evidence and "conv1: 29" in odd.evidence and "round_to=8" in odd.fix


def test_an_engine_build_inside_the_timing_is_flagged(fp32_onnx):
    f = Facts(fp32_onnx, fp32_onnx, "torch", "torchscript", 0.2, 5.0,
              first_call={"create_ms": 2.0, "first_ms": 60.0, "warm_ms": 0.15})
    found = next(x for x in run_checks(f) if x.check == "first-run-build")
    assert "warm median 0.150 ms" in found.evidence and found.share > 0.9


def test_batch_too_small_when_the_child_only_wins_at_batch_8(fp32_onnx):
    f = Facts(fp32_onnx, fp32_onnx, "onnxruntime", "onnxruntime", 1.0, 1.0,
              throughput={"parent": {1: 1000.0, 8: 2000.0}, "child": {1: 1000.0, 8: 4000.0}})
    found = next(x for x in run_checks(f) if x.check == "batch-too-small")
    assert "2.00× at batch 8, 1.00× at batch 1" in found.evidence


def test_nothing_known_says_so_instead_of_guessing(fp32_onnx):
    f = Facts(fp32_onnx, fp32_onnx, "onnxruntime", "onnxruntime", 1.0, 1.02)
    [only] = run_checks(f)
    assert only.check == "unexplained" and "noise" in only.cause


def test_profile_parser_sums_op_time_per_run_and_skips_warm_up():
    def run(ts, conv_us):
        return [{"cat": "Session", "name": "model_run", "ts": ts, "dur": 100},
                {"cat": "Node", "name": "c_kernel_time", "ts": ts + 1, "dur": conv_us,
                 "args": {"op_name": "Conv", "input_type_shape": [{"float": [1, 3, 8, 8]}]}},
                {"cat": "Node", "name": "q_kernel_time", "ts": ts + 2, "dur": 10, "args": {"op_name": "QuantizeLinear"}}]

    events = [{"cat": "Session", "name": "session_initialization", "ts": 0, "dur": 5000},
              *run(1000, 900), *run(2000, 50), *run(3000, 70)]  # the first run is warm-up
    p = parse_profile(events, runs=2)
    assert isinstance(p, Profile) and p.runs == 2
    assert p.by_op_us == {"Conv": 60.0, "QuantizeLinear": 10.0} and p.run_us == 100 and p.nodes_by_op == {"Conv": 1, "QuantizeLinear": 1}
    assert p.session_init_us == 5000 and p.input_dtypes["Conv"] == ["float"] and p.share("Conv") == 0.6


def test_cli_doctor_json(fp32_onnx, dynamic_conv, tmp_path, capsys):
    fp32_onnx.save(tmp_path / "parent")
    dynamic_conv.save(tmp_path / "child")
    code = main(["doctor", str(tmp_path / "parent"), str(tmp_path / "child"), "--quick", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert code == 0 and "dynamic-int8-conv" in [f["check"] for f in d["findings"]] and d["headline"]


def test_threads_waiting_for_a_busy_core_are_flagged(fp32_onnx):
    f = Facts(fp32_onnx, fp32_onnx, "torch", "torch", 0.2, 80.0,
              threads={"threads": 2.0, "cores": 2.0, "load_1m": 4.5, "p50_ms": 80.0, "p50_1_thread_ms": 0.25})
    found = next(x for x in run_checks(f) if x.check == "threads-oversubscribed")
    assert "80.000 ms with 2 threads vs 0.250 ms with 1 thread" in found.evidence and "load average 4.5" in found.evidence
    assert "threads=1" in found.fix and found.share > 0.99


def test_a_timing_disturbed_by_other_processes_is_told_apart_from_warm_up(fp32_onnx):
    f = Facts(fp32_onnx, fp32_onnx, "torch", "torch", 0.26, 56.0,
              first_call={"create_ms": 0.9, "first_ms": 0.98, "warm_ms": 0.244},
              threads={"threads": 2.0, "cores": 2.0, "load_1m": 3.8, "p50_ms": 0.25, "p50_1_thread_ms": 0.24})
    checks = [x.check for x in run_checks(f)]
    assert checks[0] == "disturbed-measurement" and "first-run-build" not in checks
