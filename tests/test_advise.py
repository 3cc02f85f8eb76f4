"""laser advise: catalog with sources, the per-op cost model, calibration on this machine, budget, ranking, HTML."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

import laser
from laser.advise import advise, budget, catalog
from laser.advise.calibrate import FIT_SET, HELD_OUT, STATED_FACTOR, calibrate, exported
from laser.advise.cost import Efficiency, graph_cost
from laser.advise.rank import rank, row
from laser.cli.main import main
from laser.errors import BudgetError, ConfigError


@pytest.fixture(scope="module")
def calibration():
    """Fit on digits-cnn + ResNet-18, held out MobileNetV3-small + a small BERT, all measured here (once)."""
    return calibrate()


@pytest.fixture(scope="module")
def digits_cost():
    art = exported("digits-cnn")
    return graph_cost(art.model_file, art.spec, 1)


# -- catalog ---------------------------------------------------------------------------------------

def test_catalog_loads_and_every_figure_has_a_spec_sheet_source():
    devices = catalog.load()
    assert len(devices) >= 8
    kinds = " ".join(d.kind for d in devices).lower()
    assert all(k in kinds for k in ("cloud gpu", "edge gpu", "cpu", "npu", "fpga", "microcontroller"))
    for d in devices:
        assert d.figures, d.id
        for key, f in d.figures.items():
            assert f.source.startswith("https://"), (d.id, key)
            assert f.kind in ("vendor peak", "vendor spec"), (d.id, key)
        assert any(d.value(k) for k in ("fp32_tflops", "fp16_tflops", "int8_tops")), d.id


def test_catalog_refuses_a_figure_without_a_source(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[device]]\nid = "x"\nname = "X"\nkind = "GPU"\nruntime = "r"\nformats = ["onnx"]\n'
                    'precisions = ["fp32"]\nfp32_tflops = { value = 10, kind = "vendor peak" }\n')
    with pytest.raises(ConfigError, match="has no source"):
        catalog.load(path)
    path.write_text("not toml [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        catalog.load(path)


# -- cost model ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["digits-cnn", "resnet18"])
def test_cost_model_flops_are_laser_measured_macs_times_two(name):
    from laser.measure.size import size_of

    torch_macs = size_of(laser.load(name, random_weights=True), activations=False)["macs"]
    art = exported(name)
    cost = graph_cost(art.model_file, art.spec, 1)
    assert cost.flops == 2 * torch_macs
    if name == "digits-cnn":
        assert graph_cost(art.model_file, art.spec, 4).macs == 4 * torch_macs  # shapes at the batch asked for


# -- calibration -----------------------------------------------------------------------------------

def test_calibration_predicts_held_out_models_within_the_stated_factor(calibration):
    errors = calibration.errors()
    assert {(e["model"], e["batch"]) for e in errors if e["role"] == "fit"} == {
        (m, b) for m, bs in FIT_SET for b in bs}
    held = [e for e in errors if e["role"] == "held-out"]
    assert {e["model"] for e in held} == {m for m, _ in HELD_OUT}
    for e in held:
        ratio = e["predicted_ms"] / e["measured_ms"]
        assert 1 / STATED_FACTOR <= ratio <= STATED_FACTOR, e
    stated = calibration.to_dict()
    assert stated["held_out_error_pct"] == pytest.approx(max(abs(e["error_pct"]) for e in held))
    assert calibration.machine.measured and calibration.machine.figures["fp32_tflops"].kind == "measured"


# -- budget and ranking ----------------------------------------------------------------------------

def _device(id_: str, tflops: float, watts: float, price: float | None = None, **extra):
    d = {"id": id_, "name": id_.upper(), "kind": extra.pop("kind", "GPU"), "runtime": "test runtime",
         "formats": extra.pop("formats", ["onnx"]), "precisions": extra.pop("precisions", ["fp32"]),
         extra.pop("peak", "fp32_tflops"): {"value": tflops, "kind": "vendor peak", "source": "https://example.com/a"},
         "tdp_w": {"value": watts, "kind": "vendor spec", "source": "https://example.com/b"}, **extra}
    if price is not None:
        d["price_usd"] = {"value": price, "kind": "vendor spec", "source": "https://example.com/c"}
    return catalog.device_from_dict(d)


def test_budget_filter_and_ranking_on_a_three_device_catalog(digits_cost):
    devices = [_device("cool", 0.01, 5, 100), _device("hot", 100, 300),
               _device("npu", 50, 2, 50, kind="NPU", precisions=["int8"], peak="int8_tops",
                       supported_ops=["Conv", "Gemm"], supported_ops_source="https://example.com/ops")]
    eff = Efficiency(compute=0.5, memory=0.5, overhead_s=1e-6)
    free = rank([row(d, digits_cost, eff, ()) for d in devices])
    assert [r.device.id for r in free][:2] == ["hot", "cool"]  # fastest first; the NPU cannot run it
    npu = free[2]
    assert npu.device.id == "npu" and not npu.meets and any("Relu" in p for p in npu.problems)
    assert npu.precision == "int8" and any("int8" in n for n in npu.notes)
    capped = rank([row(d, digits_cost, eff, budget.parse("power<=30W,price<=$500")) for d in devices])
    assert capped[0].device.id == "cool" and capped[0].meets
    hot = next(r for r in capped if r.device.id == "hot")
    assert hot.violations == ("power<=30W: power 300 W", "price<=$500: price not known")
    assert hot.figures["p50_ms"] < capped[0].figures["p50_ms"]  # faster, but over the budget


def test_budget_names_the_known_figures_when_one_is_unknown():
    with pytest.raises(BudgetError, match=r"unknown budget figure 'watts'.*known: p50, latency, throughput, energy, "
                                          r"power, price"):
        budget.parse("watts<=5W")
    with pytest.raises(BudgetError, match="unknown unit 'V'"):
        budget.parse("power<=5V")
    terms = budget.parse("p50<=500us, power<=15W, price<=500")
    assert [(t.figure, t.limit) for t in terms] == [("p50", 0.5), ("power", 15.0), ("price", 500.0)]


def test_an_op_the_edge_tpu_compiler_does_not_take_is_named(calibration):
    coral = next(d for d in catalog.load() if d.id == "coral-usb")
    bert = exported("bert-small")
    r = row(coral, graph_cost(bert.model_file, bert.spec, 1), calibration.efficiency, ())
    ops = next(p for p in r.problems if "does not take op(s)" in p)
    assert "Gather" in ops and "LayerNormalization" in ops and "Conv" not in ops and "coral.ai" in ops
    assert not r.meets


def test_a_missing_catalog_or_a_torchscript_model_is_one_line(capsys, tmp_path):
    code = main(["advise", "digits-cnn", "--catalog", str(tmp_path / "none.toml")])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and "Traceback" not in err
    from laser.advise.calibrate import to_onnx
    from laser.export import export

    with pytest.raises(ConfigError, match="laser advise reads ONNX graphs"):
        to_onnx(export(laser.load("digits-cnn"), to="torchscript"))


def test_a_model_that_does_not_fit_a_microcontroller_says_how_much_it_needs(digits_cost):
    mcu = catalog.device_from_dict({
        "id": "mcu", "name": "MCU", "kind": "microcontroller", "runtime": "r", "formats": ["onnx"],
        "precisions": ["fp32"], "fp32_tflops": {"value": 0.001, "kind": "vendor peak", "source": "https://example.com"},
        "storage_gb": {"value": 0.0001, "kind": "vendor spec", "source": "https://example.com"}})
    r = row(mcu, digits_cost, Efficiency(), ())
    assert not r.meets and any(p.startswith("does not fit: weights need 0.376 MB") for p in r.problems)


# -- end to end ------------------------------------------------------------------------------------

def test_advise_cli_json_ranks_the_catalog_with_sources_and_a_measured_row(calibration, capsys):
    code = main(["advise", "digits-cnn", "--budget", "p50<=1s,power<=30W", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    devices = out["devices"]
    assert len(devices) == len(catalog.load()) + 1
    assert all(d["sources"] or d["label"].startswith("measured") for d in devices)
    here = [d for d in devices if d["measured"]]
    assert len(here) == 1 and here[0]["device"] == "this-machine"
    assert here[0]["measured"]["measured_ms"] > 0 and "error_pct" in here[0]["measured"]
    assert out["graph"]["flops"] == 2 * out["graph"]["macs"]
    meets = [d for d in devices if d["meets_budget"]]
    assert meets and devices[: len(meets)] == meets  # devices that meet the budget come first
    over = next(d for d in devices if d["device"] == "h100-sxm")
    assert over["fails"] == ["power<=30W: power 700 W"]


def test_bad_budget_is_one_line_before_anything_is_measured(capsys):
    code = main(["advise", "digits-cnn", "--budget", "cost<=5"])
    err = capsys.readouterr().err
    assert code != 0 and "unknown budget figure 'cost'" in err and "known:" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def page(calibration, tmp_path_factory):
    advice = advise("digits-cnn", budget="price<=300", calibration=calibration)
    return advice, advice.write_html(tmp_path_factory.mktemp("advise") / "page")


def test_html_page_has_both_scatter_plots_and_the_table(page):
    advice, path = page
    text = path.read_text()
    assert path.name == "advise.html" and text.count("data:image/png;base64,") == 2
    assert "latency vs watts" in text and "latency vs price_usd" in text and "<link" not in text
    assert all(r.device.name.split(" (")[0] in text for r in advice.rows)
    assert not list(path.parent.glob("*.tmp"))


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium is not installed (apt-get install -y chromium)")
def test_html_page_renders_in_headless_chromium(page, tmp_path):
    from PIL import Image

    _, path = page
    flags = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chr'}"]
    dom = subprocess.run([*flags, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=90).stdout
    assert "Which hardware for digits-cnn?" in dom and dom.count("<img") == 2
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, "--window-size=1200,1400", f"--screenshot={shot}", path.as_uri()], capture_output=True,
                   timeout=90, check=True)
    lo, hi = Image.open(shot).convert("L").getextrema()
    assert hi - lo > 100  # not blank


def test_optimize_advise_view_of_a_winner(calibration):
    from laser.cli.advise import winner_view

    text, d = winner_view(exported("digits-cnn"), where="out/winner")
    assert text.startswith("advise: the winner on other hardware") and "this machine: measured" in text
    assert "laser advise out/winner" in text and len(d["devices"]) > 8


def test_hardware_table_has_the_seeds_columns_for_resnet18_and_the_model(page):
    from laser.advise.report import hardware_table

    advice, _ = page
    lines = hardware_table(advice).splitlines()
    for head in ("throughput (img/s)", "peak TFLOP/s", "effective TFLOP/s", "% of peak", "power W", "GOP/J"):
        assert head in lines[0]
    assert any("resnet18 (batch" in line for line in lines[2:4]) and any("digits-cnn (batch 1)" in line
                                                                         for line in lines[2:4])


def test_roofline_marks_a_depthwise_layer_memory_bound_and_a_dense_one_compute_bound():
    from laser.advise.cost import GraphCost, Op, predict

    dense = Op("conv", "Conv", macs=10**9, precision="fp32", weight_bytes=10**6, activation_bytes=10**5)  # 2 GFLOP
    depthwise = Op("dw", "Conv", macs=10**6, precision="fp32", weight_bytes=10**4, activation_bytes=8 * 2**20)
    relu = Op("relu", "Relu", macs=0, precision="fp32", weight_bytes=0, activation_bytes=2**10)
    cost = GraphCost((dense, depthwise, relu), frozenset({"Conv", "Relu"}), 1, 10**6)
    eff = Efficiency(compute=0.5, memory=0.5, overhead_s=1e-5)
    p = predict(cost, peak_ops=1e12, bandwidth=1e11, eff=eff, precision="fp32")  # 1 TFLOP/s, 100 GB/s
    assert p.op_memory_bound == (False, True, False)  # relu: 1 KiB stays on chip, only the overhead is left
    assert p.op_seconds[0] == pytest.approx(2e9 / 0.5e12 + 1e-5)
    assert p.op_seconds[1] == pytest.approx((10**4 + 8 * 2**20) / 0.5e11 + 1e-5)
    assert p.op_seconds[2] == pytest.approx(1e-5) and p.seconds == pytest.approx(sum(p.op_seconds))
    assert [t["bound"] for t in p.top_ops(cost, 3)] == ["compute", "memory", "overhead"]
    int8 = predict(cost, peak_ops=1e12, bandwidth=1e11, eff=eff, precision="int8")  # 1 byte per element
    assert int8.op_seconds[1] == pytest.approx((10**4 + 8 * 2**20) / 4 / 0.5e11 + 1e-5)


def test_advise_cli_table_has_reasons_sources_and_the_calibration(calibration, capsys):
    code = main(["advise", "digits-cnn", "--budget", "p50<=1s,power<=30W"])
    out = capsys.readouterr().out
    assert code == 0
    assert "h100-sxm: fails power<=30W: power 700 W" in out
    assert "coral-usb: not deployable" in out and "https://coral.ai/products/accelerator/" in out
    assert "Costliest ops on" in out and "Held-out error (worst):" in out
    for model, _ in (*FIT_SET, *HELD_OUT):
        assert model in out  # predicted vs measured for every model measured here


def test_precision_choice_per_device():
    from laser.advise.rank import choose_precision

    gpu = next(d for d in catalog.load() if d.id == "l4")
    assert choose_precision(gpu, "model", "fp32") == ("fp32", [])
    assert choose_precision(gpu, "best", "fp32") == ("int8", [])
    pi = next(d for d in catalog.load() if d.id == "raspberry-pi-5-8gb")
    precision, why = choose_precision(pi, "int8", "fp32")
    assert precision is None and "no int8 peak figure" in why[0]
    hailo = next(d for d in catalog.load() if d.id == "hailo-8")
    precision, notes = choose_precision(hailo, "model", "fp32")
    assert precision == "int8" and "laser quantize" in notes[0]
