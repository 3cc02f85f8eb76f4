"""Non-maximum suppression in plain torch.

``torchvision.ops.nms`` needs torchvision's compiled ops, which do not load with the CPU build of torch
used here. These functions follow its semantics: boxes are (x1, y1, x2, y2); a box is dropped when its
IoU with a higher-scoring kept box is *greater than* ``iou_threshold``; the kept indices come back
sorted by decreasing score (ties: the earlier box first).

Cost: one vectorised IoU row per *kept* box, so memory stays O(N) and the Python loop runs as many
times as boxes survive (tens to hundreds after a score threshold), not N times.
"""

from __future__ import annotations

import torch

from laser.errors import InputError


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) xyxy -> (N,) areas (0 for degenerate boxes)."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 4), (M, 4) xyxy -> (N, M) intersection over union (0 where the union is empty)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2) top-left of the intersection
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])  # (N, M, 2) bottom-right
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(inter))


def box_overlap_min(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 4), (M, 4) xyxy -> (N, M) intersection over the smaller box's area (MTCNN's "Min" overlap)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    smaller = torch.minimum(box_area(a)[:, None], box_area(b)[None, :])
    return torch.where(smaller > 0, inter / smaller.clamp(min=torch.finfo(smaller.dtype).tiny), torch.zeros_like(inter))


def _check(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> None:
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise InputError(f"boxes must have shape (N, 4) as x1, y1, x2, y2; got {list(boxes.shape)}")
    if scores.shape != boxes.shape[:1]:
        raise InputError(f"scores must have shape ({boxes.shape[0]},) to match the boxes; got {list(scores.shape)}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise InputError(f"iou_threshold must be in [0, 1], got {iou_threshold}")


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, mode: str = "iou") -> torch.Tensor:
    """Indices (int64) of the boxes kept by greedy NMS, by decreasing score. ``mode="min"``: overlap is the
    intersection over the smaller box's area instead of IoU (MTCNN's last stage)."""
    _check(boxes, scores, iou_threshold)
    if mode not in ("iou", "min"):
        raise InputError(f"NMS mode must be 'iou' or 'min', got {mode!r}")
    overlap = box_iou if mode == "iou" else box_overlap_min
    boxes = boxes.detach().float()
    order = torch.sort(scores.detach(), descending=True, stable=True).indices
    keep = []
    while order.numel() > 0:
        best = order[0]
        keep.append(best)
        rest = order[1:]
        if rest.numel() == 0:
            break
        iou = overlap(boxes[best].unsqueeze(0), boxes[rest])[0]
        order = rest[iou <= iou_threshold]
    if not keep:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    return torch.stack(keep).to(torch.int64)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """NMS within each class only (boxes of different classes never suppress each other).

    Each class is shifted by its own offset larger than every coordinate, so one NMS pass treats the
    classes as disjoint (the coordinate trick torchvision uses).
    """
    _check(boxes, scores, iou_threshold)
    if classes.shape != scores.shape:
        raise InputError(f"classes must have shape {list(scores.shape)} like the scores; got {list(classes.shape)}")
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    boxes = boxes.detach().float()
    span = boxes.max() - boxes.min() + 1
    shifted = boxes - boxes.min() + (classes.to(boxes) * span)[:, None]
    return nms(shifted, scores, iou_threshold)
