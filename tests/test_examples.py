"""The worked examples in examples/ run end to end (train, pipeline, export, quantize, measure, serve).

Each runs as a script in a subprocess, as a user would run it: ``--fast`` in the default suite, the
full example in the slow suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# A full example trains for minutes on 2 busy cores: slow suite, with room beyond the default 600 s timeout.
FULL = [pytest.mark.slow, pytest.mark.timeout(1800)]


def run_example(script: str, out: Path, *flags: str) -> str:
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning", "LASER_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), "--out", str(out), *flags], cwd=out.parent,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def check_deployed(stdout: str, out: Path) -> None:
    assert "validated against torch: passed" in stdout
    assert "| miou |" in stdout or "| accuracy |" in stdout or "| map_50 |" in stdout  # measured accuracy row
    assert "served " in stdout and "one request, stopped" in stdout
    assert (out / "model-int8" / "laser.json").is_file()


@pytest.mark.parametrize("flags", [("--fast",), pytest.param((), marks=FULL)], ids=["fast", "full"])
def test_segmentation_example_trains_segments_and_deploys(tmp_path, flags):
    out = tmp_path / "optic_disc"
    stdout = run_example("segmentation_optic_disc.py", out, *flags)
    check_deployed(stdout, out)
    assert (out / "fundus_mask.png").is_file() and (out / "fundus_overlay.png").is_file()
    miou = float(stdout.rsplit("validation mIoU", 1)[1].split(":")[1].split()[0])
    assert miou > (0.6 if flags else 0.8)  # background + disc averaged; chance level is far below


@pytest.mark.parametrize("flags", [("--fast",), pytest.param((), marks=FULL)], ids=["fast", "full"])
def test_text_example_trains_classifies_titles_and_deploys(tmp_path, flags):
    out = tmp_path / "news"
    stdout = run_example("text_news_titles.py", out, *flags)
    check_deployed(stdout, out)
    assert (out / "train.csv").is_file() and (out / "vocab" / "vocab.txt").is_file()
    accuracy = float(stdout.rsplit("validation accuracy", 1)[1].split(":")[1].split()[0])
    assert accuracy > (40 if flags else 90)  # percent; four topics, chance is 25 %


@pytest.mark.parametrize("flags", [("--fast",), pytest.param((), marks=FULL)], ids=["fast", "full"])
def test_detection_example_trains_detects_and_deploys(tmp_path, flags):
    out = tmp_path / "shapes"
    stdout = run_example("detection_shapes.py", out, *flags)
    check_deployed(stdout, out)
    assert (out / "shapes_detections.png").is_file() and (out / "shapes.json").is_file()
    map50 = float(stdout.rsplit("validation mAP@0.5", 1)[1].split(":")[1].split()[0])
    assert map50 > (0.3 if flags else 0.7)
