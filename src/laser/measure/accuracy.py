"""Accuracy figures measured by running the artifact on a dataset through a Runner.

Task metrics (all fractions in [0, 1]):

- classification: top-1, top-5
- text-classification: accuracy, macro F1
- segmentation: mIoU and Dice (mean over classes present in prediction or ground truth)
- detection: mAP@0.5 and mAP@[.5:.95] (COCO-style, torchmetrics' MeanAveragePrecision over pycocotools)
- ocr-recognition: character accuracy (1 - CER), line exact match; ocr-detection: precision/recall/F1 at
  IoU 0.5; vad: frame F1
- face-landmarks (MTCNN O-Net): precision / recall / F1 of the final faces at IoU 0.5

and agreement with a reference artifact: top-1 agreement and max-abs error of the first output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from laser.data import Dataset
from laser.errors import ConfigError

# task -> its primary metric: what "accuracy" means in budgets, plots and the doctor
PRIMARY = {"classification": "top1", "text-classification": "accuracy", "segmentation": "miou",
           "detection": "map_50", "ocr-recognition": "char_accuracy", "ocr-detection": "det_f1",
           "vad": "frame_f1", "face-landmarks": "f1"}


def topk(scores: np.ndarray, labels: np.ndarray, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy (fractions in [0, 1]) from (N, C) scores and (N,) integer labels."""
    order = np.argsort(-scores, axis=1)
    out = {}
    for k in ks:
        k_eff = min(k, scores.shape[1])
        out[f"top{k}"] = float((order[:, :k_eff] == labels[:, None]).any(axis=1).mean())
    return out


def predict(runner: Any, data: Dataset, batch_size: int = 64, output: int = 0) -> np.ndarray:
    """One output of ``runner`` (by index in the spec) over the whole dataset, concatenated (in calls of
    ``batch_size`` samples, or of the program's fixed batch)."""
    names = runner.spec.input_names
    key = runner.spec.output_names[output]
    outs = [runner(feeds)[key] for feeds, _ in data.batches(names, runner.spec.batch_step(batch_size))]
    return np.concatenate(outs) if outs else np.zeros((0,))


def _labelled(data: Dataset) -> np.ndarray:
    if data.labels is None or len(data) == 0:
        raise ConfigError(f"dataset {data.name!r} is empty or unlabelled; accuracy needs labelled samples")
    return data.labels


def classification(runner: Any, data: Dataset, batch_size: int = 64) -> dict[str, float]:
    """top-1 and top-5 of a classifier on a labelled dataset."""
    labels = _labelled(data)
    scores = predict(runner, data, batch_size)
    return {**topk(scores, labels), "samples": len(data)}


def f1_macro(pred: np.ndarray, labels: np.ndarray, classes: int) -> float:
    """Macro F1: the unweighted mean over classes of 2·TP / (2·TP + FP + FN) (classes absent from
    both prediction and truth are left out)."""
    scores = []
    for c in range(classes):
        tp = int(((pred == c) & (labels == c)).sum())
        fp = int(((pred == c) & (labels != c)).sum())
        fn = int(((pred != c) & (labels == c)).sum())
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def text_classification(runner: Any, data: Dataset, batch_size: int = 64) -> dict[str, float]:
    """accuracy and macro F1 of a text classifier (first output: (N, C) logits)."""
    labels = _labelled(data)
    scores = predict(runner, data, batch_size)
    pred = scores.argmax(axis=1)
    return {"accuracy": float((pred == labels).mean()), "f1_macro": f1_macro(pred, labels, scores.shape[1]),
            "samples": len(data)}


def iou_dice(pred: np.ndarray, target: np.ndarray, classes: int, ignore_index: int | None = 255,
             ) -> dict[str, float]:
    """mIoU and mean Dice from integer masks (N, H, W); classes present in neither are left out."""
    keep = np.ones(target.shape, bool) if ignore_index is None else target != ignore_index
    ious, dices = [], []
    for c in range(classes):
        p, t = (pred == c) & keep, (target == c) & keep
        inter, union, total = int((p & t).sum()), int((p | t).sum()), int(p.sum() + t.sum())
        if union:
            ious.append(inter / union)
            dices.append(2 * inter / total)
    return {"miou": float(np.mean(ious)) if ious else 0.0, "dice": float(np.mean(dices)) if dices else 0.0}


def segmentation(runner: Any, data: Dataset, batch_size: int = 16) -> dict[str, float]:
    """mIoU and Dice of a segmenter: first output (N, C, H, W) scores, labels (N, H, W) class masks."""
    labels = _labelled(data)
    scores = predict(runner, data, batch_size)
    if scores.ndim != 4:
        raise ConfigError(f"segmentation expects a (N, C, H, W) first output, got shape {list(scores.shape)}")
    return {**iou_dice(scores.argmax(axis=1), labels, scores.shape[1]), "samples": len(data)}


def mean_average_precision(preds: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]],
                           ) -> dict[str, float]:
    """COCO mAP@0.5 and mAP@[.5:.95] from per-image dicts: preds {boxes (K, 4) xyxy, scores (K,),
    labels (K,)}, targets {boxes, labels}. Computed by torchmetrics (pycocotools backend)."""
    import torch

    from laser.errors import require
    from laser.vision_compat import torchvision

    torchvision()  # torchmetrics imports torchvision; load it through the compat shim first
    detection = require("torchmetrics.detection", "metrics", "torchmetrics")
    metric = detection.MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")

    def tensors(d: Mapping[str, np.ndarray], keys: tuple[str, ...]) -> dict[str, Any]:
        return {k: torch.as_tensor(np.asarray(d[k])) for k in keys}

    metric.update([tensors(p, ("boxes", "scores", "labels")) for p in preds],
                  [tensors(t, ("boxes", "labels")) for t in targets])
    res = metric.compute()
    return {"map_50": float(res["map_50"]), "map_50_95": float(res["map"])}


def detection(runner: Any, data: Dataset, batch_size: int = 8, iou_threshold: float = 0.5,
              max_detections: int = 100) -> dict[str, float]:
    """mAP of a detector whose outputs are named boxes (N, K, 4), scores (N, K), labels (N, K);
    dataset labels are one dict per image {boxes, labels}. Padding rows have score <= 0.
    The exported detectors output candidates before non-maximum suppression (the pipelines run it), so
    per-class NMS at ``iou_threshold`` is applied here too: duplicates would count as false positives."""
    import torch

    from laser.hub.nms import batched_nms

    targets = list(_labelled(data))
    names = runner.spec.output_names
    missing = {"boxes", "scores", "labels"} - set(names)
    if missing:
        raise ConfigError(f"detection needs outputs named boxes, scores, labels; the model has {names}")
    preds = []
    for feeds, _ in data.batches(runner.spec.input_names, runner.spec.batch_step(batch_size)):
        out = runner(feeds)
        for i in range(len(out["boxes"])):
            valid = out["scores"][i] > 0
            boxes, scores = out["boxes"][i][valid], out["scores"][i][valid]
            labels = out["labels"][i][valid].astype(np.int64)
            keep = batched_nms(torch.from_numpy(boxes).float(), torch.from_numpy(scores).float(),
                               torch.from_numpy(labels), iou_threshold)[:max_detections].numpy()
            preds.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
    return {**mean_average_precision(preds, targets), "samples": len(data)}


def edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def _text(row: np.ndarray, space: int) -> list[int]:
    """Class indices without the spaces at either end (a line has none there)."""
    out = [int(v) for v in row]
    while out and out[0] == space:
        out.pop(0)
    while out and out[-1] == space:
        out.pop()
    return out


def ocr_recognition(runner: Any, data: Dataset, batch_size: int = 16) -> dict[str, float]:
    """CTC recogniser: character accuracy (1 - CER, total edits / total characters, spaces between words
    counted), the same with every space ignored, and line exact match. Labels are class indices (-1 padded);
    class 0 is the CTC blank and the last class the space (PaddleOCR's ``use_space_char``)."""
    labels = _labelled(data)
    probs = predict(runner, data, batch_size)
    best, space = probs.argmax(-1), probs.shape[-1] - 1
    edits = chars = exact = loose_edits = loose_chars = 0
    for row, truth in zip(best, labels):
        keep = row != 0
        keep[1:] &= row[1:] != row[:-1]
        got, want = _text(row[keep], space), _text(truth[truth >= 0], space)
        e = edit_distance(got, want)
        edits, chars, exact = edits + e, chars + len(want), exact + (e == 0)
        got_ns, want_ns = [v for v in got if v != space], [v for v in want if v != space]
        loose_edits, loose_chars = loose_edits + edit_distance(got_ns, want_ns), loose_chars + len(want_ns)
    return {"char_accuracy": max(0.0, 1 - edits / max(chars, 1)),
            "char_accuracy_no_spaces": max(0.0, 1 - loose_edits / max(loose_chars, 1)),
            "line_exact": exact / len(labels), "samples": len(labels)}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of (N, 4) and (M, 4) boxes [x1, y1, x2, y2]."""
    lo, hi = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def match_boxes(pred: np.ndarray, truth: np.ndarray, iou: float = 0.5) -> int:
    """True positives: predictions (in score order) matched one-to-one to the unmatched truth box they
    overlap most, when that IoU is at least ``iou``."""
    if len(pred) == 0 or len(truth) == 0:
        return 0
    m, used, tp = box_iou(pred, truth), set(), 0
    for i in range(len(pred)):
        order = [j for j in np.argsort(-m[i]) if j not in used]
        if order and m[i, order[0]] >= iou:
            used.add(int(order[0]))
            tp += 1
    return tp


def ocr_detection(runner: Any, data: Dataset, iou: float = 0.5) -> dict[str, float]:
    """Text detector (DB): each page's probability map through the card's post-processing (threshold,
    components, box score, unclip), the quadrilaterals' bounding boxes matched one-to-one to the truth
    lines at IoU >= 0.5; precision, recall and their harmonic mean over all pages. Labels: (N, L, 4) boxes
    in input pixels, -1 rows padding."""
    from laser.hub.pipelines.ocr_boxes import db_boxes

    labels = _labelled(data)
    pre = dict(getattr(getattr(runner, "artifact", None), "preprocessing", None) or {})
    tp = found = true = 0
    for i, (feeds, _) in enumerate(data.batches(runner.spec.input_names, 1)):
        prob = runner(feeds)[runner.spec.output_names[0]]
        if prob.ndim != 4:
            raise ConfigError(f"ocr-detection expects a (N, 1, H, W) probability map, got shape {list(prob.shape)}")
        h, w = prob.shape[2:]
        quads = [q for q, _ in db_boxes(prob[0, 0], pre, (1.0, 1.0), (w, h))]
        pred = np.array([[q[:, 0].min(), q[:, 1].min(), q[:, 0].max(), q[:, 1].max()] for q in quads]).reshape(-1, 4)
        truth = labels[i][labels[i][:, 0] >= 0]
        tp, found, true = tp + match_boxes(pred, truth, iou), found + len(pred), true + len(truth)
    precision, recall = tp / max(found, 1), tp / max(true, 1)
    return {"det_f1": 2 * precision * recall / max(precision + recall, 1e-9), "det_precision": precision,
            "det_recall": recall, "samples": len(data)}


def vad(runner: Any, data: Dataset) -> dict[str, float]:
    """Stateful voice-activity model: the clips of ``data`` (rows = chunks in order, labels (rows, 2) =
    speech 0/1 and clip index) re-read with the model's own state, all clips at once as a batch of
    independent sequences; frame F1 and accuracy of probability >= 0.5 against the truth."""
    labels = _labelled(data)
    clips = int(labels[:, 1].max()) + 1
    frames = len(labels) // clips
    names, outs = runner.spec.input_names, runner.spec.output_names
    chunks = data.inputs[0].reshape(clips, frames, -1)
    state = {n: np.zeros((clips, *a.shape[1:]), a.dtype) for n, a in zip(names[1:], data.inputs[1:])}
    probs = np.zeros((clips, frames), np.float32)
    for i in range(frames):
        out = runner({names[0]: np.ascontiguousarray(chunks[:, i]), **state})
        probs[:, i] = out[outs[0]].reshape(clips)
        state = {n: out[o] for n, o in zip(names[1:], outs[1:])}
    pred, truth = probs.reshape(-1) >= 0.5, labels[:, 0].reshape(clips, frames).reshape(-1) == 1
    tp, fp, fn = int((pred & truth).sum()), int((pred & ~truth).sum()), int((~pred & truth).sum())
    return {"frame_f1": 2 * tp / max(2 * tp + fp + fn, 1), "frame_accuracy": float((pred == truth).mean()),
            "samples": clips}


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def detection_counts(pred: np.ndarray, truth: np.ndarray, iou: float = 0.5) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives): predictions (by decreasing score) matched
    greedily to the unmatched true box of highest IoU, a match when IoU >= ``iou``."""
    pred, truth = np.asarray(pred, np.float64).reshape(-1, 4), np.asarray(truth, np.float64).reshape(-1, 4)
    if len(pred) == 0 or len(truth) == 0:
        return 0, len(pred), len(truth)
    m = _iou_matrix(pred, truth)
    used = np.zeros(len(truth), bool)
    tp = 0
    for row in m:
        row = np.where(used, -1.0, row)
        j = int(row.argmax())
        if row[j] >= iou:
            used[j], tp = True, tp + 1
    return tp, len(pred) - tp, len(truth) - tp


def precision_recall(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall and F1 from counts (precision 1 when nothing was predicted, recall 1 when nothing was there)."""
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def face_landmarks(runner: Any, data: Dataset, batch_size: int = 64) -> dict[str, float]:
    """MTCNN's O-Net on fixed proposals: rows are 48 x 48 crops of the FP32 R-Net's boxes; labels (rows,
    5 + 4 K) = scene index, the crop's box, the scene's true boxes (NaN padded). O-Net's outputs become
    faces as in the pipeline (threshold, box correction, NMS), matched to the truth at IoU 0.5."""
    from laser.hub.pipelines.faces import finish

    labels = _labelled(data)
    names, outs = runner.spec.input_names, runner.spec.output_names
    got = [runner(feeds) for feeds, _ in data.batches(names, batch_size)]
    prob, reg, marks = (np.concatenate([g[k] for g in got]) for k in outs[:3])
    from laser import hub

    # an intermediate model of a search may carry no preprocessing: the card's O-Net rules then apply
    pre = {**hub.card("mtcnn-onet").preprocessing, **(getattr(runner.artifact, "preprocessing", None) or {})}
    tp = fp = fn = 0
    for scene in np.unique(labels[:, 0]):
        rows = np.flatnonzero(labels[:, 0] == scene)
        truth = labels[rows[0], 5:].reshape(-1, 4)
        truth = truth[~np.isnan(truth).any(axis=1)]
        rows = rows[~np.isnan(labels[rows, 1])]
        boxes, _ = finish(labels[rows, 1:5].astype(np.float32), prob[rows, 1], reg[rows], marks[rows], pre)
        a, b, c = detection_counts(boxes[:, :4], truth)
        tp, fp, fn = tp + a, fp + b, fn + c
    return {**precision_recall(tp, fp, fn), "faces": tp + fn, "samples": len(np.unique(labels[:, 0]))}


# task -> (metric function, method text)
TASKS: dict[str, tuple[Callable[[Any, Dataset], dict[str, float]], str]] = {
    "classification": (classification, "top-k over the runner's logits"),
    "text-classification": (text_classification, "argmax of the runner's logits; macro F1"),
    "segmentation": (segmentation, "per-pixel argmax; IoU and Dice per class, mean over classes present"),
    "detection": (detection, "per-class NMS (IoU 0.5, top 100), then torchmetrics MeanAveragePrecision "
                             "(pycocotools), COCO 101-point"),
    "ocr-recognition": (ocr_recognition, "greedy CTC decode; character accuracy = 1 - edits / characters "
                                         "(Levenshtein; spaces between words counted, and apart with every "
                                         "space ignored), line exact match"),
    "ocr-detection": (ocr_detection, "DB post-processing of the card; boxes matched one-to-one to the truth "
                                     "lines at IoU >= 0.5; precision, recall, F1"),
    "vad": (vad, "clips re-read chunk by chunk with the model's own state; frame F1 at probability 0.5"),
    "face-landmarks": (face_landmarks, "O-Net on the FP32 P-Net/R-Net proposals of each scene, faces kept at "
                                       "p >= 0.7 after box correction and NMS; precision / recall / F1 at IoU 0.5"),
}


def evaluate(task: str, runner: Any, data: Dataset) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """(metrics, label per metric) for the artifact's task, measured on every sample of ``data``."""
    if task not in TASKS:
        raise ConfigError(f"no accuracy metric for task {task!r}; known tasks: {sorted(TASKS)}")
    fn, how = TASKS[task]
    metrics = fn(runner, data)
    method = f"measured on {len(data)} samples of {data.name!r} through the runner: {how}"
    labels = {k: {"unit": "fraction (0-1)", "method": method, "kind": "measured"} for k in metrics}
    labels["samples"] = {"unit": "count", "method": "samples evaluated", "kind": "counted"}
    if "faces" in metrics:
        labels["faces"] = {"unit": "count", "method": "true faces in the scenes evaluated", "kind": "counted"}
    return metrics, labels


def agreement(runner: Any, reference: Any, data: Dataset, batch_size: int = 64,
              ) -> tuple[dict[str, float], dict[str, dict[str, str]]]:
    """Top-1 agreement (classification-shaped outputs) and max-abs error of the first output against a
    reference runner on the same inputs."""
    a, b = predict(runner, data, batch_size), predict(reference, data, batch_size)
    if a.shape != b.shape:
        raise ConfigError(f"outputs differ in shape: {list(a.shape)} vs reference {list(b.shape)}")
    out = {"max_abs_error": float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())}
    method = f"measured: first output vs reference {reference.artifact.name!r} on {len(data)} samples"
    labels = {"max_abs_error": {"unit": "output units (e.g. logits)", "method": method, "kind": "measured"}}
    if a.ndim >= 2:
        out["top1_agreement"] = float((a.argmax(axis=1) == b.argmax(axis=1)).mean())
        labels["top1_agreement"] = {"unit": "fraction (0-1)", "method": method + "; same argmax",
                                    "kind": "measured"}
    return out, labels
