import time
import types

import pytest

from laser.measure import energy
from laser.measure.latency import LatencyResult


def fake_rapl(root, domains):
    """domains: {name: (energy_uj, max_energy_range_uj)}; returns a setter for the counters."""
    for name, (uj, max_uj) in domains.items():
        d = root / name
        d.mkdir(parents=True)
        (d / "energy_uj").write_text(f"{uj}\n")
        (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
        (d / "name").write_text(f"package-{name[-1]}\n")

    def set_uj(name, uj):
        (root / name / "energy_uj").write_text(f"{uj}\n")

    return set_uj


def test_rapl_reads_package_domains_and_sums_them(tmp_path):
    set_uj = fake_rapl(tmp_path, {"intel-rapl:0": (1_000_000, 10**9), "intel-rapl:1": (5_000_000, 10**9),
                                  "intel-rapl:0:0": (7, 10**9)})  # a sub-domain inside package 0
    r = energy.RaplReader(tmp_path)
    assert r.available() and [d.name for d in r.domains] == ["intel-rapl:0", "intel-rapl:1"]
    r.start()
    set_uj("intel-rapl:0", 3_000_000)
    set_uj("intel-rapl:1", 5_500_000)
    assert r.stop() == pytest.approx(2.5)  # (2 + 0.5) J
    assert "intel-rapl:0 (package-0)" in r.describe()


def test_rapl_handles_counter_wrap_around(tmp_path):
    set_uj = fake_rapl(tmp_path, {"intel-rapl:0": (999_000, 1_000_000)})
    r = energy.RaplReader(tmp_path)
    before = r.read()
    set_uj("intel-rapl:0", 4_000)  # wrapped at 1_000_000 µJ: 1_000 + 4_000 µJ elapsed
    assert r.joules(before, r.read()) == pytest.approx(0.005)


def test_rapl_unreadable_or_absent_is_not_available(tmp_path):
    assert not energy.RaplReader(tmp_path / "missing").available()
    fake_rapl(tmp_path, {"intel-rapl:0": (1, 10)})
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("not a number")
    assert not energy.RaplReader(tmp_path).available()
    assert energy.reader_for("cpu", rapl_root=tmp_path) is None


def test_measure_with_rapl_is_labelled_measured(tmp_path):
    set_uj = fake_rapl(tmp_path, {"intel-rapl:0": (0, 10**12)})
    reader = energy.reader_for("cpu", rapl_root=tmp_path)

    def work():
        set_uj("intel-rapl:0", 2_000_000)  # 2 J for 100 inferences
        return 100

    e = energy.measure_with(reader, work, flops_per_inference=4e6)
    assert e.method == "measured" and e.joules_per_inference == pytest.approx(0.02)
    assert e.gops_per_joule == pytest.approx(4e6 / 1e9 / 0.02) and "RAPL" in e.source


def fake_nvml(energy_supported=True, power_mw=50_000):
    state = {"mj": 1_000.0}

    def total_energy(handle):
        if not energy_supported:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return state["mj"]

    mod = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlDeviceGetHandleByIndex=lambda i: f"gpu{i}",
        nvmlDeviceGetTotalEnergyConsumption=total_energy, nvmlDeviceGetPowerUsage=lambda h: power_mw,
        nvmlDeviceGetName=lambda h: b"Fake GPU")
    return mod, state


def test_nvml_total_energy_counter_in_millijoules():
    mod, state = fake_nvml()
    r = energy.reader_for("cuda:0", nvml=mod)
    assert r is not None and r.mode == "energy"
    r.start()
    state["mj"] += 1_500
    assert r.stop() == pytest.approx(1.5)
    assert "Fake GPU" in r.describe() and "total energy counter" in r.describe()


def test_nvml_power_sampling_integrates_watts_over_time():
    mod, _ = fake_nvml(energy_supported=False, power_mw=50_000)  # a steady 50 W
    r = energy.NvmlReader(0, nvml=mod, sample_s=0.005)
    assert r.available() and r.mode == "power"
    r.start()
    t0 = time.perf_counter()
    time.sleep(0.1)
    joules = r.stop()
    elapsed = time.perf_counter() - t0
    assert joules == pytest.approx(50 * elapsed, rel=0.2)


def test_nvml_without_a_driver_is_not_available():
    def broken():
        raise OSError("libnvidia-ml.so.1: cannot open shared object file")

    mod = types.SimpleNamespace(nvmlInit=broken)
    assert energy.reader_for("cuda", nvml=mod) is None


def test_estimate_is_labelled_and_states_its_model():
    lat = LatencyResult(p50_ms=1, p90_ms=1, p99_ms=1, mean_ms=1, ci95_ms=0, std_ms=0, throughput_per_s=1000,
                        iters=1000, batch_size=1, threads=2, scenario="single-stream", method="m",
                        cpu_seconds=1.5, wall_seconds=1.0)
    e = energy.from_latency(lat, 2e6, "Intel(R) Xeon(R) CPU E5-2450 0 @ 2.10GHz")
    assert e.method == "estimated"
    assert e.joules_per_inference == pytest.approx(95 / 8 * 1.5 / 1000)
    assert "TDP 95 W / 8 cores" in e.source and "1.50 cores busy" in e.source
    unknown = energy.from_latency(lat, None, "Mystery CPU")
    assert unknown.gops_per_joule is None and "default" in unknown.source
    assert unknown.watts == pytest.approx(energy.DEFAULT_WATTS_PER_CORE * 1.5)


def test_energy_on_this_machine_is_estimated(digits_artifact):
    if energy.reader_for("cpu") is not None:
        pytest.skip("this machine has readable RAPL counters: energy is measured here, not estimated")
    import laser

    report = laser.measure(digits_artifact, max_seconds=0.05, min_iters=5, warmup=1, repeats=1, peak=False,
                           activations=False)
    e = report.artifacts[0]["energy"]
    assert e["method"] == "estimated" and e["joules_per_inference"] > 0 and e["gops_per_joule"] > 0
    assert report.artifacts[0]["figures"]["energy.joules_per_inference"]["kind"] == "estimated"


def _cuda_and_nvml():
    import torch

    return torch.cuda.is_available() and energy.reader_for("cuda:0") is not None


@pytest.mark.skipif(not _cuda_and_nvml(), reason="needs an NVIDIA GPU with NVML (pynvml / nvidia-ml-py)")
def test_energy_on_a_cuda_device_is_measured_by_nvml(digits_artifact):
    import laser

    report = laser.measure(digits_artifact, max_seconds=0.2, repeats=1, device="cuda", activations=False)
    a, hw = report.artifacts[0], report.hardware
    assert a["energy"]["method"] == "measured" and "NVML" in a["energy"]["source"]
    assert a["energy"]["joules_per_inference"] > 0 and hw["gpus"] and hw["peak_device"] == "cuda"
    assert 0 < a["efficiency"]["percent_of_peak"] < 100  # compared with the GPU's own peak
