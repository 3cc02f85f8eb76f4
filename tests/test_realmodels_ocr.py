"""PP-OCRv4 through laser: real weights from rapidocr-onnxruntime's wheel (fetched by `make real-models`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from laser.errors import InputError

REAL_CACHE = Path(os.environ.get("LASER_REAL_CACHE", os.path.expanduser("~/.cache/laser/weights")))
FETCH = "run `make real-models` (laser hub fetch pp-ocr silero-vad) to fetch the real models"


@pytest.fixture
def real_cache(monkeypatch):
    """The user's laser cache holding the real models (offline: a test never downloads)."""
    from laser import hub

    monkeypatch.setenv("LASER_CACHE", str(REAL_CACHE))
    monkeypatch.setenv("LASER_OFFLINE", "1")
    for name in ("pp-ocrv4-det", "pp-ocrv4-cls", "pp-ocrv4-rec"):
        if not (REAL_CACHE / name / hub.card(name).weights.filename).is_file():
            pytest.skip(f"{name} is not cached; {FETCH}")
    return REAL_CACHE


@pytest.fixture
def fonts():
    from laser.data import ocr

    try:
        ocr.font_path("DejaVuSans.ttf"), ocr.font_path(ocr.CJK_FONT)
    except Exception as exc:
        pytest.skip(str(exc))


def test_recogniser_reads_a_rendered_line_exactly(real_cache, fonts):
    from laser import hub
    from laser.data.ocr import render_line
    from laser.hub.pipelines.ocr import RecognitionPipeline

    art = hub.load("pp-ocrv4-rec")
    assert len(art.labels) == 6625 and art.labels[0] == "blank" and art.labels[-1] == " "  # from the ONNX metadata
    with RecognitionPipeline(art, backend="onnxruntime") as rec:
        result = rec.run(render_line("laser 2026", "DejaVuSans.ttf"))
    assert result["text"] == "laser 2026" and result["score"] > 0.9


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_reader_finds_every_line_of_a_document_at_its_place_and_reads_it(real_cache, fonts, tmp_path):
    from laser.data.ocr import document
    from laser.hub.pipelines.ocr import ocr_pipeline

    texts = ["laser 2026", "Invoice 4711", "合计金额 128", "Total 42.50"]
    page, truth = document(texts, seed=1)
    result = ocr_pipeline(backend="onnxruntime").run(page, output=tmp_path)
    found = result["lines"]
    assert len(found) == len(texts)
    for line, box, text in zip(found, truth, texts):
        xs, ys = [p[0] for p in line["box"]], [p[1] for p in line["box"]]
        assert _iou([min(xs), min(ys), max(xs), max(ys)], box) > 0.5
        assert line["text"].replace(" ", "") == text.replace(" ", "")  # PP-OCR may drop a space in a crop
    assert Path(result["files"]["image"]).is_file() and Path(result["files"]["json"]).is_file()


def test_a_picture_without_text_gives_no_lines_and_a_broken_jpeg_a_clear_error(real_cache, tmp_path):
    from PIL import Image

    from laser.hub.pipelines.ocr import ocr_pipeline

    reader = ocr_pipeline(backend="onnxruntime")
    assert reader.run(Image.new("RGB", (320, 240), (255, 255, 255)))["lines"] == []
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(InputError, match="cannot read an image"):
        reader.run(bad)


def test_cli_reads_a_line_with_the_recogniser_card(real_cache, fonts, tmp_path, capsys):
    from laser.cli.main import main
    from laser.data.ocr import render_line

    render_line("laser 2026", "DejaVuSans.ttf").save(tmp_path / "line.png")
    assert main(["hub", "run", "pp-ocrv4-rec", "--input", str(tmp_path / "line.png"), "--backend", "onnxruntime"]) == 0
    assert "text: 'laser 2026'" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.timeout(2400)  # calibration, 51 layer probes, the search's trials and three candidates measured
def test_optimize_recogniser_within_one_point_keeps_sensitive_layers_fp32(real_cache, fonts, tmp_path, capsys):
    """`laser optimize pp-ocrv4-rec --data ocr-lines --max-accuracy-drop 1`: plain INT8 loses more than the
    budget on ocr-lines, int8-mixed (searched on the val split) stays within it on the test split."""
    import json

    import laser
    from laser import data, hub
    from laser.cli.main import main
    from laser.measure.accuracy import ocr_recognition
    from laser.runtime import run

    rc = main(["optimize", "pp-ocrv4-rec", "--data", "ocr-lines", "--max-accuracy-drop", "1", "--recipes",
               "none,int8-static,int8-mixed", "--backends", "onnxruntime", "--quick", "--no-progress",
               "-o", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "winner:" in out and ("kept FP32" in out or "only Conv/MatMul/Gemm quantized" in out)
    report = json.loads((tmp_path / "report.json").read_text())
    by = {c["recipe"]: c for c in report["candidates"] if c["format"] == "onnx"}
    assert by["int8-static"]["metrics"]["accuracy_drop_pts"] > 1.0  # plain INT8 is over the budget
    mixed = by["int8-mixed"]
    assert mixed["feasible"] and mixed["metrics"]["accuracy_drop_pts"] <= 1.0
    assert 0 < mixed["detail"]["fraction"] < 1 and mixed["detail"]["search_data"] == "ocr-lines:val"
    winner = laser.load(tmp_path / "winner")
    test = data.load("ocr-lines", "test")
    with run(hub.load("pp-ocrv4-rec"), backend="onnxruntime") as a, run(winner, backend="onnxruntime") as b:
        assert ocr_recognition(a, test)["char_accuracy"] - ocr_recognition(b, test)["char_accuracy"] <= 0.01


def test_detector_precision_and_recall_at_iou_half_on_degraded_pages(real_cache, fonts):
    from laser import hub
    from laser.data.ocr import det_dataset, documents, page_arrays
    from laser.measure.accuracy import ocr_detection
    from laser.runtime import run

    det = hub.load("pp-ocrv4-det")
    page = page_arrays(documents(1, seed=5))
    page["pages"] = np.concatenate([page["pages"], np.full_like(page["pages"], 255)])  # + a blank page
    page["boxes"] = np.concatenate([page["boxes"], np.full_like(page["boxes"], -1.0)])
    pages = det_dataset("pages", page, dict(det.preprocessing))
    assert pages.inputs[0].shape[1:] == (3, 736, 992) and (pages.labels[0, :, 0] >= 0).sum() >= 4
    with run(det, backend="onnxruntime") as runner:
        m = ocr_detection(runner, pages)
    assert m["det_recall"] >= 0.75 and m["det_precision"] >= 0.75, m  # and nothing claimed on the blank page


def test_datasets_take_a_split_in_their_name(monkeypatch):
    from laser import data

    monkeypatch.setitem(data.LOADERS, "toy", lambda split: data.Dataset(split, (np.zeros(3),)))  # type: ignore[index]
    assert data.load("toy:val").name == "val" and data.load("toy").name == "test"
    assert data.load("toy:val", "train").name == "val"  # the split in the name wins
