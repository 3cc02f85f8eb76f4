"""laser's plain-torch NMS against a straightforward reference implementation."""

from __future__ import annotations

import pytest
import torch

from laser.errors import InputError
from laser.hub.nms import batched_nms, box_iou, nms


def reference_nms(boxes: torch.Tensor, scores: torch.Tensor, thr: float) -> list[int]:
    """Textbook greedy NMS, one pair at a time."""
    def iou(a, b):
        ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = ix * iy
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    keep: list[int] = []
    for i in order:
        if all(iou(boxes[i].tolist(), boxes[k].tolist()) <= thr for k in keep):
            keep.append(i)
    return keep


def random_boxes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 40 + 1
    return torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g)


def test_hand_made_case_keeps_the_best_of_each_overlapping_group():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.5]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]


@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_the_reference_on_random_boxes(thr, seed):
    boxes, scores = random_boxes(300, seed)
    assert nms(boxes, scores, thr).tolist() == reference_nms(boxes, scores, thr)


def test_iou_equal_to_the_threshold_is_kept_as_torchvision_does():
    boxes = torch.tensor([[0, 0, 2, 1], [1, 0, 3, 1]], dtype=torch.float32)  # IoU exactly 1/3
    assert box_iou(boxes[:1], boxes[1:]).item() == pytest.approx(1 / 3)
    assert nms(boxes, torch.tensor([0.9, 0.8]), 1 / 3 + 1e-6).tolist() == [0, 1]
    assert nms(boxes, torch.tensor([0.9, 0.8]), 0.3).tolist() == [0]


def test_batched_nms_never_suppresses_across_classes():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    kept = batched_nms(boxes, scores, torch.tensor([1, 2, 1]), 0.5)
    assert kept.tolist() == [0, 1]


def test_batched_nms_equals_per_class_reference():
    boxes, scores = random_boxes(200, 3)
    classes = torch.randint(0, 4, (200,), generator=torch.Generator().manual_seed(3))
    expected = []
    for c in range(4):
        idx = torch.where(classes == c)[0]
        expected += [int(idx[i]) for i in reference_nms(boxes[idx], scores[idx], 0.5)]
    expected.sort(key=lambda i: -float(scores[i]))
    assert batched_nms(boxes, scores, classes, 0.5).tolist() == expected


def test_empty_input_gives_empty_int64_indices():
    out = batched_nms(torch.zeros((0, 4)), torch.zeros((0,)), torch.zeros((0,), dtype=torch.int64), 0.5)
    assert out.dtype == torch.int64 and out.numel() == 0


def test_bad_shapes_are_input_errors():
    with pytest.raises(InputError, match=r"boxes must have shape \(N, 4\)"):
        nms(torch.zeros((3, 5)), torch.zeros(3), 0.5)
    with pytest.raises(InputError, match="iou_threshold must be in"):
        nms(torch.zeros((3, 4)), torch.zeros(3), 1.5)
