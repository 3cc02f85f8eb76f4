"""PP-OCR's geometry in numpy/PIL: DB post-processing (probability map -> text quadrilaterals), line crops.

DB ("differentiable binarisation") post-processing as PaddleOCR does it: threshold the map, dilate,
take each connected region's minimum-area rectangle, score it by the mean probability inside, and
"unclip" it (grow it by ``area x ratio / perimeter`` on every side: the network is trained on shrunk text
regions). For a rectangle, the min-area rectangle of its rounded offset polygon is the rectangle grown by
that distance on each side, which is what is computed here (no polygon-clipping library needed).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MIN_SIZE = 3  # px on the map: shorter boxes are noise


def min_area_rect(points: np.ndarray) -> np.ndarray:
    """(4, 2) corners (tl, tr, br, bl) of the smallest rotated rectangle around (N, 2) x/y points."""
    pts = np.unique(points.astype(np.float64), axis=0)
    hull = pts
    if len(pts) >= 3:
        from scipy.spatial import ConvexHull, QhullError

        try:
            hull = pts[ConvexHull(pts).vertices]
        except QhullError:  # all on one line
            hull = pts
    best: tuple[float, np.ndarray] | None = None
    edges = np.diff(np.vstack([hull, hull[:1]]), axis=0)
    angles = np.unique(np.mod(np.arctan2(edges[:, 1], edges[:, 0]), np.pi / 2)) if len(hull) > 1 else np.zeros(1)
    for a in angles:
        rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])  # rotate by -a
        r = hull @ rot.T
        lo, hi = r.min(0), r.max(0)
        area = float(np.prod(hi - lo))
        if best is None or area < best[0] - 1e-9:
            corners = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]]) @ rot
            best = (area, corners)
    assert best is not None
    return order_corners(best[1])


def order_corners(box: np.ndarray) -> np.ndarray:
    """tl, tr, br, bl: PaddleOCR's get_mini_boxes order (two leftmost by y, two rightmost by y)."""
    by_x = box[np.argsort(box[:, 0], kind="stable")]
    left, right = by_x[:2], by_x[2:]
    tl, bl = left[np.argsort(left[:, 1], kind="stable")]
    tr, br = right[np.argsort(right[:, 1], kind="stable")]
    return np.array([tl, tr, br, bl])


def _sides(box: np.ndarray) -> tuple[float, float]:
    return float(np.linalg.norm(box[1] - box[0])), float(np.linalg.norm(box[3] - box[0]))


def unclip(box: np.ndarray, ratio: float) -> np.ndarray:
    w, h = _sides(box)
    if w == 0 or h == 0:
        return box
    distance = w * h * ratio / (2 * (w + h))
    center = box.mean(0)
    ux, uy = (box[1] - box[0]) / w, (box[3] - box[0]) / h
    hw, hh = w / 2 + distance, h / 2 + distance
    return order_corners(np.array([center - ux * hw - uy * hh, center + ux * hw - uy * hh,
                                   center + ux * hw + uy * hh, center - ux * hw + uy * hh]))


def box_score(prob: np.ndarray, box: np.ndarray) -> float:
    """Mean probability inside the quadrilateral (PaddleOCR's 'fast' score)."""
    from PIL import Image, ImageDraw

    h, w = prob.shape
    x0, x1 = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1)), int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
    y0, y1 = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1)), int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
    mask = Image.new("L", (x1 - x0 + 1, y1 - y0 + 1), 0)
    ImageDraw.Draw(mask).polygon([(float(x - x0), float(y - y0)) for x, y in box], fill=1)
    m = np.asarray(mask, dtype=bool)
    region = prob[y0:y1 + 1, x0:x1 + 1]
    return float(region[m].mean()) if m.any() else 0.0


def db_boxes(prob: np.ndarray, pre: dict[str, Any], scale: tuple[float, float], size: tuple[int, int],
             max_candidates: int = 1000) -> list[tuple[np.ndarray, float]]:
    """[(quad (4, 2) in picture pixels, score)] from the (H, W) map; ``scale`` = picture px per map px."""
    from scipy import ndimage

    bitmap = prob > float(pre.get("thresh", 0.3))
    if pre.get("dilate", True):
        bitmap = ndimage.binary_dilation(bitmap, structure=np.ones((2, 2), bool))
    labels, _count = ndimage.label(bitmap)
    found = []
    for index, sl in enumerate(ndimage.find_objects(labels)[:max_candidates], start=1):
        if sl is None:
            continue
        ys, xs = np.nonzero(labels[sl] == index)
        points = np.stack([xs + sl[1].start, ys + sl[0].start], axis=1)
        box = min_area_rect(points)
        if min(_sides(box)) < MIN_SIZE:
            continue
        score = box_score(prob, box)
        if score < float(pre.get("box_thresh", 0.5)):
            continue
        box = unclip(box, float(pre.get("unclip_ratio", 1.6)))
        if min(_sides(box)) < MIN_SIZE + 2:
            continue
        w, h = size
        box = np.stack([np.clip(np.round(box[:, 0] * scale[0]), 0, w), np.clip(np.round(box[:, 1] * scale[1]), 0, h)], 1)
        found.append((box, score))
    return sort_reading_order(found)


def sort_reading_order(boxes: list[tuple[np.ndarray, float]]) -> list[tuple[np.ndarray, float]]:
    """Top to bottom, then left to right for boxes on one line (tops within 10 px), as PaddleOCR sorts."""
    out = sorted(boxes, key=lambda b: (float(b[0][0][1]), float(b[0][0][0])))
    for i in range(len(out) - 1):
        for j in range(i, -1, -1):
            a, b = out[j][0][0], out[j + 1][0][0]
            if abs(b[1] - a[1]) < 10 and b[0] < a[0]:
                out[j], out[j + 1] = out[j + 1], out[j]
            else:
                break
    return out


def crop_quad(image: Any, box: np.ndarray) -> Any:
    """The quadrilateral warped to an upright rectangle (turned 90 degrees when much taller than wide)."""
    from PIL import Image

    w = max(1, int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3]))))
    h = max(1, int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2]))))
    tl, tr, br, bl = box
    data = (*tl, *bl, *br, *tr)  # PIL QUAD: upper-left, lower-left, lower-right, upper-right
    crop = image.transform((w, h), Image.Transform.QUAD, tuple(float(v) for v in data), Image.Resampling.BICUBIC)
    if h / w >= 1.5:
        crop = crop.transpose(Image.Transpose.ROTATE_90)
    return crop
