"""The doctor's backend-gap check: why one artifact is slower on one ONNX runtime than on the other."""

import pytest

import laser
from laser.doctor.facts import Profile
from laser.doctor.gaps import explain
from laser.doctor.probes import openvino_profile


def _ort(by_op):
    return Profile(by_op_us=by_op, nodes_by_op=dict.fromkeys(by_op, 1), run_us=sum(by_op.values()),
                   session_init_us=None, runs=5)


OV = {"by_type_us": {"Convolution": 2000.0, "Reorder": 100.0}, "run_us": 2100.0,
      "kernels": {"Convolution: brgconv_avx512_amx_I8": 20}}


def test_unfused_qdq_on_onnxruntime_is_named_with_openvinos_int8_kernels():
    ort = _ort({"Conv": 6000.0, "QuantizeLinear": 2500.0, "DequantizeLinear": 2500.0})
    f = explain(laser.load("digits-cnn"), "onnxruntime", "openvino", 12.0, 2.5, ort=ort, ov=OV,
                flags={"avx512f", "amx_tile", "amx_int8"}, amx=True)
    assert f.check == "backend-gap" and "4.8× slower on onnxruntime than on openvino" in f.cause
    assert "left the Q/DQ pairs around float operators" in f.cause
    assert "20 of 20 compute nodes with INT8 kernels, 20 of them on AMX" in f.cause
    assert "operator coverage" in f.cause and "amx_int8" in f.evidence and "ship it on openvino" in f.fix


def test_amx_not_granted_by_the_os_is_said():
    ort = _ort({"QLinearConv": 9000.0})
    f = explain(laser.load("digits-cnn"), "onnxruntime", "openvino", 9.0, 3.0, ort=ort, ov=OV,
                flags={"amx_tile", "amx_int8"}, amx=False)
    assert "did not grant this process the AMX tile state" in f.cause


def test_only_the_two_onnx_runtimes_are_compared():
    with pytest.raises(ValueError, match="compares onnxruntime and openvino"):
        explain(laser.load("digits-cnn"), "torch", "openvino", 2.0, 1.0, ort=_ort({"Conv": 1.0}), ov=OV, flags=set())


def test_openvino_profile_reports_node_times_and_kernels_of_a_real_model():
    pytest.importorskip("openvino")
    onnx = laser.export(laser.load("digits-cnn"), to="onnx", exporter="legacy")
    prof = openvino_profile(onnx, runs=3, threads=1)
    assert prof["run_us"] > 0 and prof["by_type_us"]
    assert any(k.startswith("Convolution: ") for k in prof["kernels"])  # the kernel each conv was given
