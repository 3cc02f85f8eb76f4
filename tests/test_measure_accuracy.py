import numpy as np
import pytest

from laser.data import Dataset
from laser.errors import ConfigError
from laser.measure.accuracy import (
    agreement,
    evaluate,
    f1_macro,
    iou_dice,
    mean_average_precision,
    segmentation,
    text_classification,
    topk,
)
from laser.runtime import run
from laser.spec import ModelSpec, TensorSpec


class TableRunner:
    """Returns precomputed outputs for the rows it is given (inputs carry the row index)."""

    def __init__(self, outputs, out_names=("logits",), dtype="int64"):
        self.outputs = outputs if isinstance(outputs, dict) else {out_names[0]: outputs}
        self.spec = ModelSpec(inputs=(TensorSpec("idx", dtype, ("batch",)),),
                              outputs=tuple(TensorSpec(n, "float32", ("batch", *v.shape[1:]))
                                            for n, v in self.outputs.items()))
        self.artifact = type("A", (), {"name": "table"})()

    def __call__(self, feeds):
        idx = feeds["idx"]
        return {k: v[idx] for k, v in self.outputs.items()}


def rows(n, labels):
    return Dataset("toy", (np.arange(n, dtype=np.int64),), labels)


def test_topk_counts_hits_in_the_k_best():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    assert topk(scores, np.array([2, 0]), ks=(1, 2)) == {"top1": 0.5, "top2": 1.0}


def test_text_classification_accuracy_and_macro_f1_match_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 3)).astype(np.float32)
    labels = rng.integers(0, 3, 50)
    m = text_classification(TableRunner(logits), rows(50, labels))
    pred = logits.argmax(1)
    assert m["accuracy"] == pytest.approx((pred == labels).mean())
    assert m["f1_macro"] == pytest.approx(f1_score(labels, pred, average="macro"))
    assert f1_macro(labels, labels, 3) == 1.0


def test_iou_and_dice_of_a_known_mask():
    target = np.array([[[0, 0, 1, 1]]])
    pred = np.array([[[0, 1, 1, 1]]])
    m = iou_dice(pred, target, classes=2)
    # class 0: inter 1, union 2 -> IoU 1/2, Dice 2/3; class 1: inter 2, union 3 -> IoU 2/3, Dice 4/5
    assert m["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2) and m["dice"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert iou_dice(target, target, 2) == {"miou": 1.0, "dice": 1.0}


def test_segmentation_through_a_runner():
    target = np.zeros((2, 4, 4), np.int64)
    target[:, :2] = 1
    scores = np.stack([(target == c) for c in range(3)], axis=1).astype(np.float32)  # perfect (N, C, H, W)
    m = segmentation(TableRunner(scores), rows(2, target))
    assert m["miou"] == 1.0 and m["dice"] == 1.0 and m["samples"] == 2


def test_detection_map_is_one_for_perfect_boxes_and_lower_for_shifted_ones():
    boxes = np.array([[10, 10, 50, 50], [60, 60, 90, 90]], np.float32)
    target = {"boxes": boxes, "labels": np.array([1, 2])}
    perfect = {"boxes": boxes, "scores": np.array([0.9, 0.8], np.float32), "labels": np.array([1, 2])}
    shifted = {**perfect, "boxes": boxes + np.array([8, 8, 8, 8], np.float32)}
    assert mean_average_precision([perfect], [target]) == {"map_50": 1.0, "map_50_95": 1.0}
    worse = mean_average_precision([shifted], [target])
    assert worse["map_50_95"] < 0.9 and worse["map_50"] <= 1.0


def test_evaluate_labels_every_metric_and_rejects_unknown_tasks(digits_artifact, digits_test):
    with run(digits_artifact, backend="torch") as runner:
        metrics, labels = evaluate("classification", runner, digits_test)
        assert metrics["top1"] >= 0.97 and set(labels) == set(metrics)
        assert all(v["unit"] and v["method"] for v in labels.values())
        with pytest.raises(ConfigError, match="no accuracy metric for task 'poetry'"):
            evaluate("poetry", runner, digits_test)


def test_agreement_with_itself_is_perfect_and_with_random_weights_is_not(digits_artifact, digits_test):
    import laser

    data = digits_test.take(100)
    with run(digits_artifact, backend="torch") as a, run(laser.load("digits-cnn", random_weights=True),
                                                          backend="torch") as b:
        same, _ = agreement(a, a, data)
        other, labels = agreement(b, a, data)
    assert same == {"max_abs_error": 0.0, "top1_agreement": 1.0}
    assert other["top1_agreement"] < 0.5 and other["max_abs_error"] > 0.1
    assert "digits-cnn" in labels["top1_agreement"]["method"]


def test_detection_suppresses_duplicate_candidates_before_scoring():
    from laser.data import Dataset
    from laser.measure.accuracy import detection
    from laser.spec import ModelSpec, TensorSpec

    gt = np.array([[10, 10, 50, 50], [60, 60, 90, 90]], np.float32)
    # Pre-NMS candidates as the exported detectors give them: object A, a near-duplicate of A ranked
    # above object B (without NMS it is a false positive before the last true one: AP < 1), padding.
    cand_boxes = np.array([[[10, 10, 50, 50], [11, 11, 51, 51], [60, 60, 90, 90], [0, 0, 0, 0]]], np.float32)
    cand_scores = np.array([[0.9, 0.85, 0.8, 0.0]], np.float32)
    cand_labels = np.array([[1, 1, 1, 0]], np.int64)

    class Detector:
        spec = ModelSpec(inputs=(TensorSpec("image", "float32", ("batch", 3, 4, 4)),),
                         outputs=(TensorSpec("boxes", "float32", ("batch", 4, 4)),
                                  TensorSpec("scores", "float32", ("batch", 4)),
                                  TensorSpec("labels", "int64", ("batch", 4))))

        def __call__(self, feeds):
            return {"boxes": cand_boxes, "scores": cand_scores, "labels": cand_labels}

    labels = np.empty(1, dtype=object)
    labels[0] = {"boxes": gt, "labels": np.array([1, 1])}
    data = Dataset("one", (np.zeros((1, 3, 4, 4), np.float32),), labels)
    result = detection(Detector(), data)
    assert result["map_50"] == 1.0 and result["map_50_95"] > 0.9


def _probs(seq, classes=6):
    """(T, C) one-hot CTC probabilities of a class sequence."""
    out = np.zeros((len(seq), classes), np.float32)
    out[np.arange(len(seq)), seq] = 1.0
    return out


def test_ocr_character_accuracy_counts_a_dropped_space_and_ignores_spaces_at_the_ends():
    from laser.measure.accuracy import ocr_recognition

    space = 5  # the last class, as in PP-OCR (use_space_char); 0 is the CTC blank
    truth = np.array([[1, 2, space, 3, 4, -1], [1, 2, space, 3, 4, -1]])
    read = np.stack([_probs([1, 2, 0, 3, 3, 4, space]),  # "ab cd" missing its space, a trailing space
                     _probs([space, 1, 1, 2, space, 3, 4])])  # exactly "ab cd" after a leading space
    m = ocr_recognition(TableRunner(read), rows(2, truth))
    assert m["char_accuracy"] == pytest.approx(1 - 1 / 10)  # one edit (the space) in 10 characters
    assert m["char_accuracy_no_spaces"] == 1.0 and m["line_exact"] == 0.5


def test_ocr_detection_precision_recall_at_iou_half():
    from laser.measure.accuracy import match_boxes, ocr_detection

    prob = np.zeros((1, 1, 64, 96), np.float32)
    prob[0, 0, 10:20, 10:50] = 0.9  # a line found where it is
    prob[0, 0, 40:50, 60:90] = 0.9  # a line found where there is none
    truth = np.full((1, 3, 4), -1.0, np.float32)
    truth[0, 0] = [6, 6, 54, 24]   # ~the unclipped box of the first region
    truth[0, 1] = [10, 28, 40, 36]  # a line the map missed
    runner = TableRunner({"map": prob})
    m = ocr_detection(runner, rows(1, truth))
    assert m["det_precision"] == 0.5 and m["det_recall"] == 0.5 and m["det_f1"] == pytest.approx(0.5)
    assert match_boxes(np.array([[0, 0, 10, 10.0]]), np.array([[0, 0, 10, 21.0]])) == 0  # IoU 0.48 < 0.5
