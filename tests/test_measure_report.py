import json
import shutil
import subprocess

import pytest

import laser
from laser.errors import ArtifactError
from laser.measure.report import Report


@pytest.fixture(scope="module")
def report(digits_artifact):
    other = laser.load("digits-cnn", random_weights=True)
    return laser.measure([digits_artifact, other], data="digits", batch_sizes=(1, 4), repeats=2, warmup=2,
                         warmup_seconds=0, min_iters=10, max_seconds=0.05, robustness=True, robust_samples=32,
                         epsilons=(0.0, 0.007, 0.1), peak=False,
                         threads=1)  # 1 thread: OpenMP barriers make 2 threads crawl on a busy shared CPU


def test_json_has_the_shape_other_tools_read(report):
    d = json.loads(report.to_json())
    assert set(d) >= {"artifacts", "hardware"} and len(d["artifacts"]) == 2
    for a in d["artifacts"]:
        assert {"name", "backend", "latency", "accuracy", "size", "energy", "robustness"} <= set(a)
        assert {"p50_ms", "p90_ms", "p99_ms", "throughput_per_s", "batch_size"} <= set(a["latency"])
        assert {"params", "nonzero_params", "macs", "flops", "bytes"} <= set(a["size"])
        assert {"joules_per_inference", "gops_per_joule", "method", "source"} <= set(a["energy"])
        assert a["energy"]["method"] in ("measured", "estimated")
        assert {"clean", "fgsm", "pgd", "corruptions"} <= set(a["robustness"])
        assert set(a["robustness"]["fgsm"]) == {"0", "0.007", "0.1"}
        assert all(isinstance(v, float) for v in a["accuracy"].values() if not isinstance(v, int))
        assert a["name"] == "digits-cnn" and a["backend"] == "torch"
    assert d["hardware"]["cpu"]["model"] and d["hardware"]["torch"]


def test_flops_are_twice_macs(report):
    for a in report.artifacts:
        assert a["size"]["flops"] == 2 * a["size"]["macs"] > 0


def _numeric_leaves(d, prefix=""):
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _numeric_leaves(v, path + ".")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            yield path


def test_every_figure_has_a_unit_a_method_and_a_kind(report):
    for a in report.artifacts:
        figures = a["figures"]
        leaves = [p for g in ("accuracy", "size", "robustness") for p in _numeric_leaves(a[g] or {}, g + ".")]
        leaves += [f"latency.{k}" for k in a["latency"] if k.endswith(("_ms", "_per_s", "_pct"))
                   and k != "samples_ms"]
        leaves += ["energy.joules_per_inference", "energy.gops_per_joule", "energy.watts"]
        for leaf in leaves:
            parts = leaf.split(".")
            label = next((figures[".".join(parts[:i])] for i in range(len(parts), 0, -1)
                          if ".".join(parts[:i]) in figures), None)
            assert label is not None, f"{leaf} has no label"
            assert label["unit"] and label["method"] and label["kind"] in ("measured", "counted", "estimated"), leaf


def test_second_artifact_reports_agreement_with_the_first(report):
    first, second = report.artifacts
    assert "top1_agreement" not in first["accuracy"]
    assert second["accuracy"]["top1_agreement"] < 0.5 and second["accuracy"]["max_abs_error"] > 0
    assert first["accuracy"]["top1"] > 0.95 > second["accuracy"]["top1"]
    assert first["label"] != second["label"]  # same name and backend: numbered apart


def test_latency_sweep_offline_and_repeats_are_recorded(report):
    a = report.artifacts[0]
    assert [r["batch_size"] for r in a["latency_sweep"]] == [1, 4]
    assert a["offline"]["batch_size"] in (1, 4)
    assert a["offline"]["throughput_per_s"] == max(r["throughput_per_s"] for r in a["latency_sweep"])
    assert len(a["latency"]["p50_runs_ms"]) == 2 and a["latency"]["spread_pct"] >= 0
    assert a["latency"]["threads"] >= 1 and a["latency"]["scenario"] == "single-stream"


def test_json_round_trips(report, tmp_path):
    again = Report.from_json(report.to_json())
    assert again.to_dict() == report.to_dict()
    path = tmp_path / "r.json"
    path.write_text(report.to_json())
    assert Report.from_json(path).to_markdown() == report.to_markdown()


def test_from_json_rejects_other_json():
    with pytest.raises(ArtifactError, match="not a laser report"):
        Report.from_json('{"artifacts": []}')


def test_markdown_table_puts_artifacts_side_by_side_with_units(report):
    md = report.to_markdown()
    head = md.splitlines()[0]
    assert head.count("digits-cnn@torch") == 2 and "| unit |" in head
    for text in ("latency p50 | ms", "FLOPs / sample (= 2 × MACs)", "energy / inference [estimated] | J",
                 "robust: FGSM ε=0.007", "top1_agreement", "hardware:"):
        assert text in md, text


def test_html_report_is_self_contained_with_plots(report, tmp_path):
    page = report.write_html(tmp_path / "out")
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"report.html", "report.json", "pareto.png", "latency.png", "robustness.png", "corruptions.png"} <= files
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 4
    assert "src='http" not in html and 'src="http' not in html and "<link" not in html
    assert "LASER table" in html and "estimated" in html
    assert Report.from_json(tmp_path / "out" / "report.json").to_dict() == report.to_dict()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_html_report_renders_in_headless_chromium(report, tmp_path):
    from PIL import Image

    page = report.write_html(tmp_path / "out")
    flags = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chr'}"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=90).stdout
    assert "LASER report" in dom and dom.count("<img") == 4 and "digits-cnn@torch" in dom
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()], capture_output=True,
                   timeout=90, check=True)
    img = Image.open(shot).convert("L")
    assert img.size == (1200, 1600)
    lo, hi = img.getextrema()
    assert hi - lo > 100  # not a blank page: dark text on a light background


def test_noisy_latency_and_a_busy_cpu_are_flagged_in_the_report(report):
    from laser.measure.bench import _noise_notes

    hw = {"cpu": {"usable_cores": 2}}
    assert _noise_notes(3.0, 3, 0.5, hw) == []
    noisy = _noise_notes(45.0, 3, 0.5, hw)
    assert len(noisy) == 1 and "differed by 45 %" in noisy[0]
    assert "load average 7.0 on 2 usable cores" in _noise_notes(3.0, 3, 7.0, hw)[0]
    flagged = Report.from_dict({**report.to_dict()})
    flagged.artifacts[0]["warnings"] = noisy
    assert f"warning ({flagged.label(flagged.artifacts[0])}): p50 differed by 45 %" in flagged.to_markdown()


def test_repeated_names_are_told_apart_by_their_last_step_then_by_position():
    from laser.measure.bench import _unique_labels

    entries = [{"name": "m", "backend": "torch", "steps": ["load"]},
               {"name": "m", "backend": "onnxruntime", "steps": ["load", "export"]},
               {"name": "m", "backend": "onnxruntime", "steps": ["load", "export", "quantize"]},
               {"name": "m", "backend": "torch", "steps": ["load"]}]
    _unique_labels(entries)
    assert [Report.label(e) for e in entries] == ["m@torch#1", "m+export@onnxruntime", "m+quantize@onnxruntime",
                                                  "m@torch#4"]


def test_a_single_artifact_page_has_no_one_dot_pareto_plot(report, tmp_path):
    from laser.measure.plots import write_plots

    d = report.to_dict()
    d["artifacts"] = d["artifacts"][:1]
    files = write_plots(Report.from_json(json.dumps(d)), tmp_path)
    assert "pareto.png" not in files and "latency.png" in files
    assert "pareto.png" in write_plots(report, tmp_path / "two")  # two artifacts: a trade-off to plot
