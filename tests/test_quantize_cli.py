"""``laser quantize``: bundles, --json, warnings on stderr, one-line errors."""

from __future__ import annotations

import json

import laser
from laser.cli.main import main


def test_quantize_int8_static_writes_a_bundle_and_reports_json(tmp_path, capsys):
    out = tmp_path / "q"
    rc = main(["quantize", "digits-cnn", "--method", "int8-static", "--calibration", "digits", "--samples", "64",
               "--data", "digits", "-o", str(out), "--json"])
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # stdout holds the JSON object only
    assert rc == 0 and report["output"] == str(out.resolve())
    assert report["bytes"]["ratio"] <= 0.3 and report["accuracy"]["drop_points"] <= 1.0
    assert report["calibration"]["samples"] == 64
    art = laser.load(str(out))
    assert art.format == "onnx" and art.lineage[-1].op == "quantize"


def test_int8_dynamic_warning_is_printed_on_stderr(tmp_path, capsys):
    rc = main(["quantize", "digits-cnn", "--method", "int8-dynamic", "-o", str(tmp_path / "d")])
    captured = capsys.readouterr()
    assert rc == 0
    assert "laser quantize: warning: int8-dynamic on a conv-heavy model" in captured.err
    assert "int8-dynamic:" in captured.out and "x the FP32 file" in captured.out


def test_quantize_errors_are_one_line_with_a_nonzero_exit(tmp_path, capsys):
    rc = main(["quantize", "digits-cnn", "--method", "int8-static", "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("laser quantize: error: int8-static needs calibration data")
    assert "\n" not in err
    (tmp_path / "empty").mkdir()
    rc = main(["quantize", "digits-cnn", "--calibration", str(tmp_path / "empty"), "-o", str(tmp_path / "y")])
    assert rc == 2 and "is empty" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()  # nothing half-written


def test_qat_refuses_post_training_only_flags(tmp_path, capsys):
    rc = main(["quantize", "digits-cnn", "--method", "qat", "--max-accuracy-drop", "0.5", "-o", str(tmp_path / "q")])
    assert rc == 2 and "--max-accuracy-drop apply to post-training methods" in capsys.readouterr().err
