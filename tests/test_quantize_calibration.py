"""Calibration sources become bounded, spec-checked batches; the ORT calibration pass writes ranges."""

from __future__ import annotations

import numpy as np
import pytest

from laser.compress.calibration import calibrate, calibration_set
from laser.data import Dataset
from laser.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def spec(digits_artifact):
    return digits_artifact.spec


def _rows(calib) -> int:
    return sum(len(f["input"]) for f in calib.feeds)


def test_dataset_name_uses_the_train_split_and_stops_at_samples(spec):
    calib = calibration_set("digits", spec, samples=40)
    assert calib.source == "digits/train" and calib.samples == 40 and _rows(calib) == 40
    assert [len(f["input"]) for f in calib.feeds] == [16, 16, 8]


def test_iterable_of_single_samples_without_batch_dim_is_batched(spec):
    items = ({"input": np.full((1, 8, 8), i, np.float32)} for i in range(100))
    calib = calibration_set(items, spec, samples=20)
    assert calib.samples == 20 and calib.feeds[0]["input"].shape == (16, 1, 8, 8)
    assert calib.feeds[1]["input"][:, 0, 0, 0].tolist() == [16, 17, 18, 19]


def test_generator_is_read_only_as_far_as_needed(spec):
    pulled = []

    def gen():
        for i in range(10_000):
            pulled.append(i)
            yield {"input": np.zeros((4, 1, 8, 8), np.float32)}

    calibration_set(gen(), spec, samples=8)
    assert len(pulled) == 2


def test_folder_of_npy_files_and_a_list_of_paths(spec, tmp_path):
    for i in range(3):
        np.save(tmp_path / f"{i}.npy", np.full((2, 1, 8, 8), i, np.float32))
    calib = calibration_set(tmp_path, spec, samples=5)
    assert calib.samples == 5 and calib.feeds[0]["input"][:, 0, 0, 0].tolist() == [0, 0, 1, 1, 2]
    listed = calibration_set([tmp_path / "2.npy"], spec, samples=100)
    assert listed.samples == 2


def test_npz_file_maps_arrays_by_input_name(spec, tmp_path):
    np.savez(tmp_path / "a.npz", input=np.ones((3, 1, 8, 8), np.float32))
    assert calibration_set(tmp_path / "a.npz", spec).samples == 3


def test_folder_of_images_is_preprocessed_as_the_artifact_says(digits_artifact, tmp_path):
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    calib = calibration_set(tmp_path, digits_artifact.spec, digits_artifact.preprocessing)
    x = calib.feeds[0]["input"]
    assert x.shape == (3, 1, 8, 8) and x.dtype == np.float32
    assert x[0].min() == pytest.approx(-1.0)  # black pixel: (0 - 0.5) / 0.5


def test_images_need_image_preprocessing(spec, tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(ConfigError, match="no image preprocessing"):
        calibration_set(tmp_path, spec, {})


def test_wrong_dtype_is_an_input_error_with_the_fix(spec):
    with pytest.raises(InputError, match=r"item 0.*float64.*astype"):
        calibration_set([{"input": np.zeros((2, 1, 8, 8))}], spec)


def test_empty_folder_and_empty_dataset_are_config_errors(spec, tmp_path):
    with pytest.raises(ConfigError, match="is empty"):
        calibration_set(tmp_path, spec)
    empty = Dataset("none", (np.zeros((0, 1, 8, 8), np.float32),))
    with pytest.raises(ConfigError, match="is empty"):
        calibration_set(empty, spec)


def test_random_source_fits_the_spec(spec):
    calib = calibration_set("random", spec, samples=3)
    assert calib.samples == 3 and "latency work" in calib.source


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_calibration_writes_a_range_for_every_activation(digits_artifact, tmp_path, method, capsys):
    import torch

    from laser.data import load

    model = tmp_path / "m.onnx"
    torch.onnx.export(digits_artifact.module, (torch.zeros(2, 1, 8, 8),), str(model), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}}, dynamo=False)
    calib = calibration_set(load("digits", "train"), digits_artifact.spec, samples=32)
    cache = calibrate(model, calib, method, tmp_path / "ranges.json", progress=False)
    from onnxruntime.quantization import load_tensors_data

    ranges = load_tensors_data(cache)
    assert "input" in ranges.data and "logits" in ranges.data
    lo, hi = ranges.data["input"].range_value
    assert -1.0 <= float(np.min(lo)) < float(np.max(hi)) <= 1.0
    assert capsys.readouterr().out == ""  # ORT's histogram chatter goes to stderr, not stdout
