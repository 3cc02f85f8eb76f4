"""``laser hub list | info | run | bench`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from laser.cli.main import main
from laser.hub.catalog import CATALOG


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LASER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LASER_OFFLINE", "1")
    return tmp_path / "cache"


@pytest.fixture
def img(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "img.jpg"
    Image.fromarray((rng.random((120, 160, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_list_shows_the_whole_catalog(capsys, cache):
    code, out, _ = run_cli(capsys, "hub", "list")
    assert code == 0 and all(name in out for name in CATALOG)
    assert "built in" in out and "download" in out


def test_list_filters_by_task_and_speaks_json(capsys, cache):
    code, out, _ = run_cli(capsys, "hub", "list", "--task", "detection", "--json")
    names = [m["name"] for m in json.loads(out)["models"]]
    assert code == 0 and names == [n for n, c in CATALOG.items() if c.task == "detection"] and len(names) == 3


def test_info_gives_url_hash_license_and_cache_path(capsys, cache):
    code, out, _ = run_cli(capsys, "hub", "info", "resnet18", "--json")
    d = json.loads(out)
    assert code == 0 and d["weights"]["url"] == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert d["weights"]["sha256"] == "f37072fd" and "prefix" in d["weights"]["checked"]
    assert d["weights"]["cache"].startswith(str(cache)) and d["weights"]["cached"] is False
    assert d["labels"]["count"] == 1000 and "BSD-3-Clause" in d["license"]
    code, out, _ = run_cli(capsys, "hub", "info", "resnet18")
    assert code == 0 and "f37072fd" in out and "not measured yet" in out


def test_run_resnet18_with_random_weights_prints_labels(capsys, cache, img):
    code, out, _ = run_cli(capsys, "hub", "run", "resnet18", "--random-weights", "--input", str(img), "--top-k", "3")
    lines = out.strip().splitlines()
    labels = set(CATALOG["resnet18"].all_labels())
    assert code == 0 and lines[0].startswith("resnet18 (classification")
    assert lines[1].startswith("random weights — labels are meaningless")  # not a real answer
    assert len(lines) == 4 + 3 and all(any(lab in ln for lab in labels) for ln in lines[4:])  # title, note, header, rule
    code, out, _ = run_cli(capsys, "hub", "run", "resnet18", "--random-weights", "--input", str(img), "--json")
    assert code == 0 and json.loads(out)["random_weights"] is True


def test_run_json_and_output_files_for_segmentation(capsys, cache, img, tmp_path):
    code, out, _ = run_cli(capsys, "hub", "run", "lraspp_mobilenet_v3_large", "--random-weights", "--input",
                           str(img), "--output", str(tmp_path / "out"), "--json")
    d = json.loads(out)
    assert code == 0 and d["task"] == "segmentation" and d["size"] == [160, 120]
    assert Image.open(d["files"]["overlay"]).size == (160, 120) and (tmp_path / "out" / "img.json").is_file()


def test_run_text_file_one_line_per_text(capsys, cache, tmp_path):
    texts = tmp_path / "titles.txt"
    texts.write_text("a fine film\n\nterrible plot\n")
    code, out, _ = run_cli(capsys, "hub", "run", "distilbert-sst2", "--random-weights", "--input", str(texts), "--json")
    results = json.loads(out)["results"]
    assert code == 0 and [r["text"] for r in results] == ["a fine film", "terrible plot"]
    assert all(r["label"] in ("NEGATIVE", "POSITIVE") for r in results)


def test_offline_run_without_weights_says_where_to_put_them(capsys, cache, img):
    code, _, err = run_cli(capsys, "hub", "run", "resnet18", "--input", str(img))
    assert code != 0 and "Traceback" not in err and err.count("\n") == 1
    assert "not cached" in err and "resnet18-f37072fd.pth or pass --weights" in err


def test_bad_inputs_are_one_line_errors(capsys, cache, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\x00not an image")
    code, _, err = run_cli(capsys, "hub", "run", "digits-cnn", "--input", str(bad))
    assert code != 0 and "cannot read an image" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "hub", "info", "resnet-18")
    assert code == 2 and "did you mean resnet18" in err
    code, _, err = run_cli(capsys, "hub", "run", "digits-cnn", "--input", str(tmp_path / "nope.png"))
    assert code != 0 and "does not exist" in err


def test_bench_measures_a_laser_card_and_info_shows_it(capsys, cache):
    code, out, _ = run_cli(capsys, "hub", "bench", "digits-cnn", "--repeats", "1", "--seconds", "0.2", "--no-peak",
                           "--json")
    report = json.loads(out)
    entry = report["artifacts"][0]
    assert code == 0 and entry["name"] == "digits-cnn" and entry["latency"]["p50_ms"] > 0
    assert entry["figures"]["latency.p50_ms"]["kind"] == "measured"
    code, out, _ = run_cli(capsys, "hub", "info", "digits-cnn", "--json")
    card = json.loads(out)["laser_card"]
    assert card["report"]["artifacts"][0]["latency"]["p50_ms"] == entry["latency"]["p50_ms"]
    assert card["hardware"]
