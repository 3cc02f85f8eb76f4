import pytest

from laser.measure.hardware import cpu_info, efficiency, fingerprint, peak_bf16, peak_fp32, peak_int8

CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile amx_int8
"""


def test_cpu_info_reads_model_and_inference_isa_flags(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    info = cpu_info(path)
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["isa"] == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile", "amx_int8"]
    assert info["usable_cores"] >= 1


def test_peak_micro_benchmarks_report_units_and_method():
    fp32 = peak_fp32(n=256, reps=2)
    assert fp32["gflops"] > 0.1 and fp32["unit"] == "GFLOP/s" and "torch.mm 256x256" in fp32["method"]
    int8 = peak_int8(n=256, reps=2)
    if int8 is None:
        pytest.skip("this torch build has no CPU int8 GEMM (torch._int_mm)")
    assert int8["gops"] > 0.1 and int8["unit"] == "GOP/s"


def test_efficiency_is_flops_times_rate_over_peak():
    hw = {"peak_fp32": {"gflops": 200.0}, "peak_int8": {"gops": 800.0}}
    e = efficiency(4e6, 5000, hw)  # 4 MFLOP × 5000/s = 20 GFLOP/s
    assert e["effective_gops"] == pytest.approx(20) and e["percent_of_peak"] == pytest.approx(10)
    assert efficiency(4e6, 5000, hw, int8=True)["percent_of_peak"] == pytest.approx(2.5)
    assert efficiency(None, 5000, hw) is None


def test_fingerprint_without_peak_has_cpu_and_software():
    fp = fingerprint(peak=False)
    assert fp["cpu"]["model"] and fp["torch"] and "peak_fp32" not in fp and isinstance(fp["gpus"], list)


def test_bf16_peak_is_measured_and_says_whether_the_cpu_has_bf16_instructions():
    bf16 = peak_bf16(n=128, reps=1)
    assert bf16 is not None and bf16["gflops"] > 0 and bf16["kind"] == "measured"
    assert "native" in bf16["method"] or "converted in software" in bf16["method"]
