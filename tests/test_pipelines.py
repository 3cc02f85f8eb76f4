"""Each task pipeline end to end on tiny models and inputs, plus the bad inputs users will send."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import laser
from laser.artifact import Artifact
from laser.errors import ConfigError, InputError, NotFoundError
from laser.hub.pipelines import pipeline_for
from laser.hub.pipelines.draw import decode_mask
from laser.spec import ModelSpec, TensorSpec


def digit_png(index: int) -> tuple[bytes, int]:
    """A scikit-learn digit drawn as an 8x8 grey PNG (dark ink on light paper, like a scan)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    img = Image.fromarray((255 - bunch.images[index] * 255 / 16).astype(np.uint8)).resize((32, 32), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue(), int(bunch.target[index])


def test_classification_pipeline_reads_a_digit_picture_right(digits_artifact):
    pipe = laser.pipeline("classification", model=digits_artifact)
    hits = 0
    for i in range(1500, 1520):
        png, truth = digit_png(i)
        result = pipe.run(png, top_k=3)
        hits += result["label"] == str(truth)
        assert len(result["top_k"]) == 3 and result["score"] == result["top_k"][0]["score"]
    assert hits >= 17  # digits-cnn: ~98 % on the test split; these are rescaled pictures of the same digits


def test_classification_runs_the_same_on_an_onnx_export(digits_artifact, tmp_path):
    onnx = laser.export(digits_artifact, to="onnx", exporter="legacy")  # the fast exporter; both are validated
    png, _ = digit_png(1600)
    a = pipeline_for(digits_artifact).run(png)
    b = pipeline_for(onnx).run(png)
    assert b["format"] == "onnx" and b["label"] == a["label"]
    assert b["score"] == pytest.approx(a["score"], rel=1e-3)


class BrightSegmenter(nn.Module):
    """Class 1 where the picture is bright: logit1 = sum of normalised RGB (in [-3, 3]), logit0 = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x[:, :1]), x.sum(1, keepdim=True)], dim=1)


def seg_artifact() -> Artifact:
    spec = ModelSpec(inputs=(TensorSpec("input", "float32", ("batch", 3, 32, 32)),),
                     outputs=(TensorSpec("logits", "float32", ("batch", 2, 32, 32)),))
    return Artifact.from_module(BrightSegmenter(), name="bright", task="segmentation", spec=spec,
                                architecture={"factory": "test_pipelines:BrightSegmenter"}, labels=("dark", "bright"),
                                preprocessing={"type": "image", "mode": "RGB", "size": [32, 32],
                                               "mean": [0.5] * 3, "std": [0.5] * 3})


def test_segmentation_mask_is_at_the_picture_size_and_finds_the_bright_region(tmp_path):
    picture = np.zeros((90, 120, 3), np.uint8)
    picture[30:60, 40:100] = 255  # a bright 60 x 30 rectangle
    path = tmp_path / "scene.png"
    Image.fromarray(picture).save(path)
    pipe = pipeline_for(seg_artifact())
    inline = pipe.run(path)
    mask = decode_mask(inline["mask_png"])
    assert mask.shape == (90, 120)
    truth = np.zeros((90, 120), bool)
    truth[30:60, 40:100] = True
    iou = (truth & (mask == 1)).sum() / (truth | (mask == 1)).sum()
    assert iou > 0.9
    shares = {c["label"]: c["fraction"] for c in inline["classes"]}
    assert shares["bright"] == pytest.approx(truth.mean(), abs=0.03) and sum(shares.values()) == pytest.approx(1)
    written = pipe.run(path, output=tmp_path / "out")
    assert "mask_png" not in written and Image.open(written["files"]["overlay"]).size == (120, 90)
    assert np.array_equal(np.asarray(Image.open(written["files"]["mask"])), mask)


class FixedDetector(nn.Module):
    """Ignores the picture: three candidates on a 100 x 100 input, two of them overlapping."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        boxes = torch.tensor([[10, 10, 50, 50], [12, 12, 52, 52], [60, 60, 90, 90], [0, 0, 5, 5.0]])
        scores = torch.tensor([0.9, 0.8, 0.7, 0.1])
        labels = torch.tensor([1, 1, 2, 1])
        b = x.shape[0]
        return boxes.expand(b, -1, -1), scores.expand(b, -1), labels.expand(b, -1)


def det_artifact() -> Artifact:
    spec = ModelSpec(inputs=(TensorSpec("input", "float32", ("batch", 3, 100, 100)),),
                     outputs=(TensorSpec("boxes", "float32", ("batch", 4, 4)),
                              TensorSpec("scores", "float32", ("batch", 4)),
                              TensorSpec("labels", "int64", ("batch", 4))))
    return Artifact.from_module(FixedDetector(), name="fixed", task="detection", spec=spec,
                                architecture={"factory": "test_pipelines:FixedDetector"},
                                labels=("background", "cat", "dog"),
                                preprocessing={"type": "image", "mode": "RGB", "size": [100, 100]})


def test_detection_applies_threshold_and_nms_and_maps_boxes_to_the_picture(tmp_path):
    path = tmp_path / "street.jpg"
    Image.new("RGB", (200, 300), (90, 120, 150)).save(path)  # W 200, H 300: x scale 2, y scale 3
    result = pipeline_for(det_artifact()).run(path, output=tmp_path / "out", score_threshold=0.5)
    dets = result["detections"]
    assert [d["label"] for d in dets] == ["cat", "dog"]  # 0.8 box suppressed by NMS, 0.1 below threshold
    assert dets[0]["box"] == [20.0, 30.0, 100.0, 150.0] and dets[1]["box"] == [120.0, 180.0, 180.0, 270.0]
    drawn = Image.open(result["files"]["image"])
    assert drawn.size == (200, 300) and drawn.getpixel((20, 90)) != (90, 120, 150)  # box outline drawn


def test_detection_iou_threshold_controls_suppression(tmp_path):
    path = tmp_path / "x.png"
    Image.new("RGB", (100, 100)).save(path)
    loose = pipeline_for(det_artifact()).run(path, score_threshold=0.5, iou_threshold=0.95)
    assert len(loose["detections"]) == 3


def tiny_text_artifact(tmp_path) -> Artifact:
    from laser.models.text import bert_classifier, build_wordpiece_vocab, read_vocab, text_spec

    vocab = read_vocab(build_wordpiece_vocab(["stocks rally on earnings", "team wins the final match"] * 5,
                                             tmp_path / "vocab", vocab_size=120))
    torch.manual_seed(0)
    module = bert_classifier(classes=2, vocab_size=len(vocab), hidden=16, layers=1, heads=2, intermediate=32,
                             max_length=16).eval()
    arch = {"factory": "laser.models.text:bert_classifier",
            "kwargs": {"classes": 2, "vocab_size": len(vocab), "hidden": 16, "layers": 1, "heads": 2,
                       "intermediate": 32, "max_length": 16}}
    return Artifact.from_module(module, name="tiny-text", task="text-classification",
                                spec=text_spec(16, len(vocab), 2), architecture=arch, labels=("business", "sport"),
                                preprocessing={"type": "text", "tokenizer": "wordpiece", "lowercase": True,
                                               "max_length": 16, "vocab": vocab})


def test_text_pipeline_tokenizes_with_the_artifacts_vocab_and_matches_the_model(tmp_path):
    from laser.hub.pipelines.text import encode

    art = tiny_text_artifact(tmp_path)
    pipe = pipeline_for(art)
    feeds = encode(art.preprocessing, ["Stocks rally"], art.spec.input_names)
    ids = feeds["input_ids"][0]
    vocab = art.preprocessing["vocab"]
    assert [vocab[i] for i in ids[:4]] == ["[CLS]", "stocks", "rally", "[SEP]"] and ids[4:].tolist() == [0] * 12
    with torch.inference_mode():
        logits = art.module(*(torch.from_numpy(feeds[n]) for n in art.spec.input_names)).numpy()
    result = pipe.run("Stocks rally")
    probs = np.exp(logits[0]) / np.exp(logits[0]).sum()
    assert result["label"] == ("business", "sport")[int(probs.argmax())]
    assert result["score"] == pytest.approx(float(probs.max()), rel=1e-5)
    batch = pipe.run_batch(["Stocks rally", "team wins"])
    assert batch[0]["score"] == pytest.approx(result["score"], rel=1e-5) and len(batch) == 2


def test_text_pipeline_refuses_empty_and_non_utf8_input(tmp_path):
    pipe = pipeline_for(tiny_text_artifact(tmp_path))
    with pytest.raises(InputError, match="empty"):
        pipe.run("   ")
    with pytest.raises(InputError, match="not valid UTF-8"):
        pipe.run(b"\xff\xfe\x00")


def test_unreadable_image_is_a_clear_input_error(digits_artifact, tmp_path):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"this is not a jpeg")
    pipe = pipeline_for(digits_artifact)
    with pytest.raises(InputError, match=r"cannot read an image from .*photo\.jpg.*give a PNG or JPEG"):
        pipe.run(bad)
    with pytest.raises(InputError, match="does not exist"):
        pipe.run(tmp_path / "missing.png")


def test_wrong_task_and_unknown_names_are_clear_errors(digits_artifact):
    with pytest.raises(ConfigError, match="'digits-cnn' is a 'classification' model, not 'segmentation'"):
        laser.pipeline("segmentation", model=digits_artifact)
    with pytest.raises(ConfigError, match="no pipeline for task 'pose'"):
        laser.pipeline("pose", model=digits_artifact)
    with pytest.raises(NotFoundError, match="no model named 'resnet-18'"):
        laser.pipeline("classification", model="resnet-18")


def test_catalog_models_run_through_their_pipelines_with_random_weights(tmp_path):
    Image.new("RGB", (64, 48), (200, 30, 30)).save(tmp_path / "red.png")
    cls = laser.pipeline("classification", model="mobilenet_v3_small", random_weights=True).run(tmp_path / "red.png")
    assert len(cls["top_k"]) == 5 and cls["top_k"][0]["label"] in laser.hub.card("mobilenet_v3_small").all_labels()
    det = laser.pipeline("detection", model="ssdlite320_mobilenet_v3_large", random_weights=True)
    out = det.run(tmp_path / "red.png", score_threshold=0.0, output=tmp_path / "det")
    assert out["size"] == [64, 48] and 0 < len(out["detections"]) <= 100
    assert all(0 <= d["box"][0] <= d["box"][2] <= 64 and 0 <= d["box"][1] <= d["box"][3] <= 48 for d in out["detections"])


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, c in laser.hub.CATALOG.items() if c.task != "text-classification"])
def test_every_image_catalog_model_runs_through_its_pipeline(name, tmp_path):
    Image.new("RGB", (96, 72), (40, 160, 90)).save(tmp_path / "green.png")
    result = laser.pipeline(laser.hub.card(name).task, model=name, random_weights=True).run(
        tmp_path / "green.png", output=tmp_path / "out")
    assert result["model"] == name and result["files"]["json"].endswith("green.json")
    if result["task"] == "detection":
        assert Image.open(result["files"]["image"]).size == (96, 72)
