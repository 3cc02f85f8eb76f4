"""laser.optimize on digits-cnn with the real stages and a small candidate set (none, int8-static on ORT)."""

import json
import shutil

import numpy as np
import pytest

import laser
from laser.cli.main import main
from laser.optimize import Settings, optimize

SETTINGS = Settings.fast(max_diagnoses=1)
SMALL = {"recipes": "none,int8-static", "formats": "onnx", "backends": "onnxruntime"}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("optimize")
    result = optimize("digits-cnn", data="digits", budget="accuracy_drop<=1%", output=out, settings=SETTINGS,
                      progress=False, **SMALL)
    return result, out


def _copy_cache(src, dst):
    shutil.copytree(src / "cache", dst / "cache")


def test_winner_meets_the_budget_and_is_on_the_pareto_front(first_run):
    result, out = first_run
    names = {o.name for o in result.outcomes}
    assert names == {"none · torch · torch", "none · onnx · onnxruntime", "int8-static · onnx · onnxruntime"}
    assert all(o.measured for o in result.outcomes), [o.error for o in result.outcomes]
    w = result.winner
    assert result.feasible and not w.violations and w.on_front
    assert w.metrics["accuracy_drop_pts"] <= 1.0
    int8 = result.get("int8-static", "onnx", "onnxruntime")
    assert int8.metrics["bytes"] < 0.35 * result.eager.metrics["bytes"]  # INT8 weights: about a quarter
    assert int8.parent == "none · onnx · onnxruntime"
    report = json.loads((out / "report.json").read_text())
    assert report["winner"] == w.name and w.name in report["front"]
    assert {a["label"] for a in report["artifacts"]} == names
    entry = report["artifacts"][0]  # laser.measure's JSON shape, energy labelled
    assert {"latency", "accuracy", "size", "energy"} <= set(entry)
    assert entry["energy"]["method"] in ("measured", "estimated")
    assert laser.load(out / "winner").format == w.candidate.format
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and w.name in html


def test_impossible_budget_returns_the_best_effort_and_names_the_failed_constraint(first_run, tmp_path):
    _, out = first_run
    _copy_cache(out, tmp_path)
    result = optimize("digits-cnn", data="digits", budget="accuracy_drop<=1%,p50<=1ns", output=tmp_path,
                      settings=SETTINGS, progress=False, **SMALL)
    assert not result.feasible and result.winner is not None
    assert [v.constraint.metric for v in result.winner.violations] == ["p50"]
    assert "p50<=1ns" in result.verdict() and "No candidate meets the budget" in result.verdict()
    assert json.loads((tmp_path / "report.json").read_text())["feasible"] is False


def test_resume_skips_the_candidates_already_measured(first_run, tmp_path):
    first, out = first_run
    _copy_cache(out, tmp_path)
    result = optimize("digits-cnn", data="digits", budget="accuracy_drop<=1%", output=tmp_path, settings=SETTINGS,
                      progress=False, **SMALL)
    assert {o.status for o in result.outcomes} == {"cached"}
    # the screening figures come from the cache; the final side-by-side round is always taken anew (so two
    # candidates a few µs apart, FP32 and INT8 digits-cnn on ORT, may swap places in it)
    same = ("screen_p50_ms", "accuracy", "accuracy_drop_pts", "bytes", "macs")
    before = {o.name: {k: o.metrics.get(k) for k in same} for o in first.outcomes}
    assert {o.name: {k: o.metrics.get(k) for k in same} for o in result.outcomes} == before
    assert result.finals is not None and result.winner.final and result.feasible


def test_recipe_file_rebuilds_the_winner(first_run, tmp_path):
    first, out = first_run
    again = optimize(recipe=out / "winner.toml", output=tmp_path, settings=SETTINGS, progress=False)
    assert again.winner.candidate.recipe == first.winner.candidate.recipe
    assert not any("base model differs" in n for n in again.notes)  # same base sha256 as in the recipe
    assert again.winner.metrics["accuracy"] == first.winner.metrics["accuracy"]
    x, _ = laser.data.digits("test")
    a = laser.run(laser.load(out / "winner"), backend="onnxruntime")({"input": x})["logits"]
    b = laser.run(laser.load(tmp_path / "winner"), backend="onnxruntime")({"input": x})["logits"]
    assert (a.argmax(1) == b.argmax(1)).all() and np.allclose(a, b, atol=1e-4)


def test_cli_optimize_writes_the_outputs_and_prints_the_verdict(first_run, tmp_path, capsys):
    _, out = first_run
    _copy_cache(out, tmp_path)
    code = main(["optimize", "--recipes", "none,int8-static", "--formats", "onnx", "--backends", "onnxruntime",
                 "--quick", "--no-progress", "-o", str(tmp_path), "--json"])
    d = json.loads(capsys.readouterr().out)
    assert code == 0 and d["feasible"] is True and d["winner"] in d["front"]
    assert (tmp_path / "pareto.png").is_file() and (tmp_path / "winner.toml").is_file()


def test_cli_bad_budget_is_one_line_error(capsys, tmp_path):
    code = main(["optimize", "--budget", "p50<=5", "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and "has no unit" in err and "Traceback" not in err


def test_cli_serve_starts_laser_serve_on_the_winner(first_run, tmp_path, capsys, monkeypatch):
    import laser.serve

    _, out = first_run
    _copy_cache(out, tmp_path)
    calls = []
    monkeypatch.setattr(laser.serve, "serve", lambda *a, **kw: calls.append((a, kw)))
    code = main(["optimize", "--recipes", "none,int8-static", "--formats", "onnx", "--backends", "onnxruntime",
                 "--quick", "--no-progress", "-o", str(tmp_path), "--serve", "--port", "8123"])
    assert code == 0 and "serving" in capsys.readouterr().out
    [(args, kw)] = calls
    assert args == (str(tmp_path / "winner"),) and kw["http_port"] == 8123 and kw["host"] == "127.0.0.1"
    assert kw["backend"] == "onnxruntime"
