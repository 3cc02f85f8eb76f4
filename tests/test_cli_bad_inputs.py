"""Every subcommand, fed the mistakes a new user makes, answers with one line and a non-zero exit code.

In-process (``laser.cli.main.main``): each case fails before any model is trained, exported or served.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from laser.cli.main import main, parser


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad-inputs")
    (d / "bad.npz").write_bytes(b"not a zip at all")
    np.savez(d / "good.npz", input=np.zeros((1, 1, 8, 8), np.float32))
    (d / "trunc.npz").write_bytes((d / "good.npz").read_bytes()[:40])
    np.save(d / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    Image.new("RGB", (32, 32), "red").save(d / "img.png")
    (d / "file").write_text("a file where a directory is expected\n")
    return d


# (case id, argv); {d} is the folder of bad files. Each must fail with one line, before any heavy work.
CASES = [
    ("info-typo", ["info", "digit-cnn"]),
    ("info-missing-path", ["info", "{d}/no-such-bundle"]),
    ("info-wrong-input-shape", ["info", "torchvision.models:resnet18", "--random-weights", "--input-shape", "3"]),
    ("info-unparsable-shape", ["info", "torchvision.models:resnet18", "--random-weights", "--input-shape", "3,a"]),
    ("eval-unknown-data", ["eval", "digits-cnn", "--data", "no-such-dataset"]),
    ("train-unknown-model", ["train", "no-such-model", "-o", "{d}/t"]),
    ("train-output-under-file", ["train", "digits-cnn", "-o", "{d}/file/t"]),
    ("export-output-under-file", ["export", "digits-cnn", "--to", "onnx", "-o", "{d}/bad.npz/x"]),
    ("export-missing-onnx", ["export", "{d}/missing.onnx", "--to", "onnx", "-o", "{d}/e"]),
    ("run-not-a-zip", ["run", "digits-cnn", "--input", "{d}/bad.npz"]),
    ("run-truncated-npz", ["run", "digits-cnn", "--input", "{d}/trunc.npz"]),
    ("run-pickled-npy", ["run", "digits-cnn", "--input", "{d}/objects.npy"]),
    ("run-missing-input", ["run", "digits-cnn", "--input", "{d}/none.npz"]),
    ("run-output-not-npz", ["run", "digits-cnn", "--input", "{d}/good.npz", "-o", "{d}/y.png"]),
    ("run-unknown-backend", ["run", "digits-cnn", "--input", "{d}/good.npz", "--backend", "no-such-backend"]),
    ("diff-missing-child", ["diff", "digits-cnn", "{d}/no-such.onnx"]),
    ("quantize-image-calibration", ["quantize", "digits-cnn", "--calibration", "{d}/img.png", "-o", "{d}/q"]),
    ("quantize-missing-calibration", ["quantize", "digits-cnn", "--calibration", "{d}/none.npz", "-o", "{d}/q"]),
    ("quantize-no-calibration", ["quantize", "digits-cnn", "-o", "{d}/q"]),
    ("bench-missing", ["bench", "{d}/no-such-bundle"]),
    ("bench-robustness-without-data", ["bench", "digits-cnn", "--robustness"]),
    ("bench-bad-batch-sizes", ["bench", "digits-cnn", "--batch-sizes", "1,a"]),
    ("prune-bad-ratio", ["prune", "digits-cnn", "--ratio", "1.5", "-o", "{d}/p"]),
    ("distill-unknown-teacher", ["distill", "digits-cnn", "--teacher", "no-such-teacher", "-o", "{d}/kd"]),
    ("search-bad-budget", ["search", "digits-cnn", "--latency-budget", "fast", "-o", "{d}/s"]),
    ("serve-missing-repository", ["serve", "{d}/no-such-repo", "--http-port", "0", "--no-grpc", "--no-socket"]),
    ("perf-bad-levels", ["perf", "http://127.0.0.1:9", "-m", "m", "--concurrency", "1,x"]),
    ("optimize-bad-budget", ["optimize", "-o", "{d}/o", "--budget", "speed>=fast"]),
    ("optimize-unknown-recipe", ["optimize", "-o", "{d}/o", "--recipes", "no-such-recipe"]),
    ("doctor-missing-child", ["doctor", "digits-cnn", "{d}/no-such-child"]),
    ("hub-info-unknown", ["hub", "info", "no-such-model"]),
    ("hub-run-image-to-text-model", ["hub", "run", "distilbert-sst2", "--random-weights", "--input", "{d}/img.png"]),
    ("hub-run-missing-input", ["hub", "run", "digits-cnn", "--input", "{d}/none.png"]),
    ("hub-bench-unknown", ["hub", "bench", "no-such-model"]),
]


def run(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("argv", [argv for _, argv in CASES], ids=[name for name, _ in CASES])
def test_a_mistake_gets_one_line_and_a_nonzero_exit(capsys, files, argv, monkeypatch):
    monkeypatch.setenv("LASER_OFFLINE", "1")
    code, _out, err = run(capsys, [a.format(d=files) for a in argv])
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code not in (0, None), err
    assert "Traceback" not in err and "internal error" not in err, err
    errors = [ln for ln in lines if ": error: " in ln]
    assert len(errors) == 1 and len(lines) <= 2, err  # the error line (+ at most one warning)
    assert errors[0].startswith(f"laser {argv[0]}: error: "), err


def subcommands() -> list[str]:
    sub = next(a for a in parser()._actions if a.dest == "command")
    return sorted(sub.choices)  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", subcommands())
def test_every_subcommand_refuses_a_missing_path_without_a_traceback(capsys, files, command, monkeypatch):
    """Also subcommands added later: a path that does not exist, where their first argument goes."""
    monkeypatch.setenv("LASER_OFFLINE", "1")
    code, _out, err = run(capsys, [command, str(files / "no-such-thing"), "-o", str(files / f"out-{command}")])
    assert code not in (0, None) and "Traceback" not in err and "internal error" not in err, err

