import time
import types

import pytest
import torch

from laser.measure import energy
from laser.measure.latency import LatencyResult
from laser.measure.workload import Layer, Workload


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


def _lat(p50_ms=0.12, cpu_seconds=2.0, wall_seconds=1.0, threads=2, batch_size=1, iters=1000):
    return LatencyResult(p50_ms=p50_ms, p90_ms=p50_ms, p99_ms=p50_ms, mean_ms=p50_ms, ci95_ms=0, std_ms=0,
                         throughput_per_s=1000, iters=iters, batch_size=batch_size, threads=threads,
                         scenario="single-stream", method="m", cpu_seconds=cpu_seconds, wall_seconds=wall_seconds)


LLC = (32 * 2**20, "test: 32 MiB")


def _work(*layers):
    return Workload(tuple(Layer(*x) for x in layers), "test layers")


def test_estimate_is_labelled_and_states_its_model():
    work = _work(("conv", 2_000_000, "fp32", 400_000, 200_000))
    e = energy.from_latency(_lat(p50_ms=1.0), 4e6, "Intel(R) Xeon(R) CPU E5-2450 0 @ 2.10GHz", work, cores=2, llc=LLC)
    m = e.model
    assert e.method == "estimated" and e.source.startswith("estimated (model):")
    assert "TDP 95 W / 8 cores" in e.source and m["watts_per_core"] == pytest.approx(95 / 8)
    w = 2 * 95 / 8  # two threads on two usable cores
    static = energy.STATIC_FRACTION * w * 1e-3
    compute = 2e6 * energy.PJ_PER_MAC_45NM["fp32"] * energy.LOGIC_SCALE * 1e-12
    memory = 600_000 * energy.PJ_PER_BYTE_45NM["cache"] * energy.LOGIC_SCALE * 1e-12  # fits the 32 MiB cache
    assert m["joules"]["compute"] == pytest.approx(compute) and m["joules"]["memory"] == pytest.approx(memory)
    assert e.joules_per_inference == pytest.approx(compute + memory + static) and not m["capped"]
    assert e.gops_per_joule == pytest.approx(4e6 / 1e9 / e.joules_per_inference)
    assert m["macs_by_precision"] == {"fp32": 2_000_000} and m["cores"] == 2 and m["max_watts"] == pytest.approx(w)
    unknown = energy.from_latency(_lat(), None, "Mystery CPU", None, cores=2, llc=LLC)
    assert unknown.gops_per_joule is None and "default" in unknown.source and "static term only" in unknown.source
    assert unknown.joules_per_inference == pytest.approx(energy.STATIC_FRACTION * 2 * 7.5 * 0.12e-3)
    assert e.to_dict()["model"]["formula"].startswith("min(")


def test_estimate_is_bounded_by_the_machine_power_even_when_cpu_time_is_inflated():
    # 0.12 ms p50 on 2 cores, but 1000 s of process CPU time (spinning threads, other load) and a
    # workload that would need far more than the cores can draw: the estimate stays at 2 × 7.5 W × p50.
    huge = _work(("matmul", 10**12, "fp32", 10**10, 10**10))
    for cpu_s in (0.0, 1000.0):
        e = energy.from_latency(_lat(p50_ms=0.12, cpu_seconds=cpu_s), 2e12, "Mystery CPU", huge, cores=2, llc=LLC)
        assert e.model["capped"] and e.joules_per_inference == pytest.approx(2 * 7.5 * 0.12e-3)
        assert e.joules_per_inference <= 50 * 0.12e-3 and e.watts <= 2 * energy.DEFAULT_WATTS_PER_CORE + 1e-9
    small = _work(("conv", 10**6, "fp32", 10**5, 10**5))
    a, b, c = (energy.from_latency(_lat(cpu_seconds=s), 2e6, "Mystery CPU", small, cores=2, llc=LLC)
               for s in (2.0, 1e3, 0.5))
    assert a.joules_per_inference == b.joules_per_inference  # inflated CPU time changes nothing
    # a loaded machine: the process kept 0.5 cores busy over the run, so it holds 0.5 cores, not 2
    assert c.model["cores"] == pytest.approx(0.5) and "min(2 threads, 0.5 busy" in c.source
    assert c.model["joules"]["static"] == pytest.approx(a.model["joules"]["static"] / 4)
    assert energy.from_latency(_lat(cpu_seconds=0.0), None, "x", small, cores=2, llc=LLC).model["cores"] == 2
    # threads beyond the usable cores do not add power; batch 8 shares the p50 among 8 samples
    many = energy.from_latency(_lat(threads=16, batch_size=8), None, "Mystery CPU", huge, cores=2, llc=LLC)
    assert many.model["cores"] == 2 and many.joules_per_inference <= 2 * 7.5 * 0.12e-3 / 8 * (1 + 1e-9)


def test_fewer_macs_but_much_more_memory_traffic_is_not_estimated_cheaper():
    from laser.measure.workload import torch_workload
    from laser.spec import ModelSpec, TensorSpec

    # A: a 3x3 conv, 2.4 M MACs on 9 kB of weights (each weight reused 1024 times).
    conv = torch.nn.Conv2d(16, 16, 3, padding=1)
    conv_spec = ModelSpec(inputs=(TensorSpec("x", "float32", ("batch", 16, 32, 32)),),
                          outputs=(TensorSpec("y", "float32", ("batch", 16, 32, 32)),))
    # B: a wide linear layer, 1 M MACs but every one reads its own 4-byte weight (4 MB per inference).
    fc = torch.nn.Linear(2048, 512)
    fc_spec = ModelSpec(inputs=(TensorSpec("x", "float32", ("batch", 2048)),),
                        outputs=(TensorSpec("y", "float32", ("batch", 512)),))
    wa, wb = torch_workload(conv, conv_spec), torch_workload(fc, fc_spec)
    assert wb.macs < wa.macs / 2 and wb.weight_bytes > 100 * wa.weight_bytes
    ea, eb = (energy.from_latency(_lat(), None, "Mystery CPU", w, cores=2, llc=LLC) for w in (wa, wb))
    assert eb.joules_per_inference > ea.joules_per_inference
    assert eb.model["joules"]["memory"] > ea.model["joules"]["compute"] + ea.model["joules"]["memory"]
    # weights that do not fit the last-level cache stream from DRAM, ~40x the energy per byte
    ec = energy.from_latency(_lat(), None, "Mystery CPU", wb, cores=2, llc=(2**20, "test: 1 MiB"))
    assert ec.model["bytes_moved"]["weights_dram"] == wb.weight_bytes
    assert ec.model["joules"]["memory"] > 10 * eb.model["joules"]["memory"]


def test_int8_is_cheaper_than_fp32_for_the_same_traffic():
    layers = [("conv", 5_000_000, "fp32", 100_000, 50_000), ("relu", 0, "fp32", 0, 50_000)]
    fp32 = _work(*layers)
    int8, fp16 = (_work(*[(op, m, p if m else "fp32", w, a) for op, m, _, w, a in layers]) for p in ("int8", "fp16"))
    e32, e16, e8 = (energy.from_latency(_lat(), None, "Mystery CPU", w, cores=2, llc=LLC) for w in (fp32, fp16, int8))
    assert e8.joules_per_inference < e16.joules_per_inference < e32.joules_per_inference
    assert e8.model["joules"]["memory"] == e32.model["joules"]["memory"]  # same bytes: only compute differs
    assert e8.model["joules"]["compute"] < e32.model["joules"]["compute"] / 10
    # an OpenVINO bf16 hint runs the fp32 layers in bf16
    assert energy.from_latency(_lat(), None, "x", fp32.with_precision("bf16"), cores=2,
                               llc=LLC).model["macs_by_precision"] == {"bf16": 5_000_000}


@pytest.fixture(scope="module")
def digits_onnx(digits_artifact):
    import laser

    return laser.export(digits_artifact, to="onnx")


@pytest.mark.parametrize(("method", "precision"), [(None, "fp32"), ("fp16", "fp16"), ("int8-static", "int8")])
def test_precision_and_bytes_are_taken_from_the_artifact(digits_artifact, digits_onnx, method, precision):
    import warnings

    from laser.compress.quantize import quantize
    from laser.measure.workload import of_artifact

    art = digits_onnx
    if method:
        options = {"calibration": "random", "samples": 16} if method == "int8-static" else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fp16's 'no faster on this CPU' QuantizeWarning
            art = quantize(digits_onnx, method, check_speed=False, **options)
    work, torch_work = of_artifact(art), of_artifact(digits_artifact)
    assert work.macs_by_precision() == {precision: torch_work.macs}
    # weights shrink with their dtype: fp32 4 B, fp16 2 B, int8 1 B per weight (+ biases, scales)
    per_weight = {"fp32": 4, "fp16": 2, "int8": 1}[precision]
    assert work.weight_bytes == pytest.approx(torch_work.weight_bytes * per_weight / 4, rel=0.05)
    e = energy.from_latency(_lat(), None, "Mystery CPU", work, cores=2, llc=LLC)
    assert f"M MACs {precision}" in e.source


def test_workload_falls_back_to_the_size_figures():
    from laser.measure.workload import fallback

    w = fallback({"macs": 1000, "bytes_by_dtype": {"int8": 900, "float32": 100}, "peak_activation_bytes": 50}, "test")
    assert w.macs_by_precision() == {"int8": 1000} and w.weight_bytes == 1000 and w.activation_bytes == 100
    assert "derived from the size figures (test)" in w.source


def test_energy_on_this_machine_is_estimated(digits_artifact):
    if energy.reader_for("cpu") is not None:
        pytest.skip("this machine has readable RAPL counters: energy is measured here, not estimated")
    import laser

    report = laser.measure(digits_artifact, max_seconds=0.05, min_iters=5, warmup=1, repeats=1, peak=False,
                           activations=False)
    e, p50_s = report.artifacts[0]["energy"], report.artifacts[0]["latency"]["p50_ms"] / 1e3
    assert e["method"] == "estimated" and e["joules_per_inference"] > 0 and e["gops_per_joule"] > 0
    assert e["source"].startswith("estimated (model)") and e["model"]["macs_by_precision"]["fp32"] > 1e6
    assert e["joules_per_inference"] <= e["model"]["max_watts"] * p50_s * (1 + 1e-9) <= 50 * p50_s
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
