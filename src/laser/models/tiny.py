"""Small architectures that train in seconds on a CPU, used by the worked examples.

- ``tiny_segnet``: a 3-level U-Net, (B, 3, H, W) -> (B, classes, H, W) logits.
- ``tiny_detector``: a one-cell-one-box grid detector (YOLO-v1 style) with the same candidate outputs
  as laser's torchvision detection wrappers: boxes (B, N, 4) xyxy pixels, scores (B, N), labels (B, N),
  N = grid cells. ``raw`` gives the training head; ``grid_targets`` and ``detector_loss`` train it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class TinySegNet(nn.Module):
    """U-Net with three resolutions; H and W must be divisible by 4. ~25 k parameters at width 16."""

    def __init__(self, classes: int = 2, width: int = 16):
        super().__init__()
        w = width
        self.enc1 = _conv(3, w)                       # (B, w, H, W)
        self.enc2 = _conv(w, 2 * w, stride=2)         # (B, 2w, H/2, W/2)
        self.enc3 = _conv(2 * w, 4 * w, stride=2)     # (B, 4w, H/4, W/4)
        self.dec2 = _conv(4 * w + 2 * w, 2 * w)       # upsampled enc3 + skip from enc2
        self.dec1 = _conv(2 * w + w, w)               # upsampled dec2 + skip from enc1
        self.head = nn.Conv2d(w, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(torch.cat([F.interpolate(e3, scale_factor=2.0, mode="nearest"), e2], dim=1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0, mode="nearest"), e1], dim=1))
        return self.head(d1)


def tiny_segnet(classes: int = 2, width: int = 16) -> TinySegNet:
    return TinySegNet(classes=classes, width=width)


class TinyDetector(nn.Module):
    """Stride-8 grid detector: each cell predicts objectness, one box (centre offset in the cell, size as
    a fraction of the image) and class logits. ``classes`` counts real classes; label 0 is background."""

    def __init__(self, classes: int = 3, width: int = 16):
        super().__init__()
        self.classes = classes
        self.features = nn.Sequential(_conv(3, width), _conv(width, 2 * width, 2), _conv(2 * width, 2 * width),
                                      _conv(2 * width, 4 * width, 2), _conv(4 * width, 4 * width, 2),
                                      _conv(4 * width, 4 * width))
        self.head = nn.Conv2d(4 * width, 5 + classes, 1)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, H/8, W/8, 5 + classes): objectness, tx, ty, tw, th, class logits."""
        return self.head(self.features(x)).permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _, _, h, w = x.shape
        p = self.raw(x)
        b, gh, gw, _ = p.shape
        ys = torch.arange(gh, dtype=x.dtype).view(1, gh, 1)
        xs = torch.arange(gw, dtype=x.dtype).view(1, 1, gw)
        cx = (xs + torch.sigmoid(p[..., 1])) * (w / gw)  # (B, gh, gw) centre in pixels
        cy = (ys + torch.sigmoid(p[..., 2])) * (h / gh)
        bw, bh = torch.sigmoid(p[..., 3]) * w, torch.sigmoid(p[..., 4]) * h
        boxes = torch.stack((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), dim=-1).reshape(b, -1, 4)
        cls_prob, cls = p[..., 5:].softmax(-1).max(-1)
        scores = (torch.sigmoid(p[..., 0]) * cls_prob).reshape(b, -1)
        labels = (cls + 1).reshape(b, -1)
        x_clip, y_clip = boxes[..., 0::2].clamp(0, w), boxes[..., 1::2].clamp(0, h)
        boxes = torch.stack((x_clip[..., 0], y_clip[..., 0], x_clip[..., 1], y_clip[..., 1]), dim=-1)
        return boxes, scores, labels


def tiny_detector(classes: int = 3, width: int = 16) -> TinyDetector:
    return TinyDetector(classes=classes, width=width)


def grid_targets(boxes: Sequence[Sequence[Sequence[float]]], labels: Sequence[Sequence[int]],
                 size: tuple[int, int], stride: int = 8) -> np.ndarray:
    """Per image lists of xyxy pixel boxes and labels (1-based) -> (N, H/8, W/8, 6) float32 targets:
    objectness, centre offset x/y in the cell, width/height as fractions of the image, label."""
    h, w = size
    out = np.zeros((len(boxes), h // stride, w // stride, 6), np.float32)
    for i, (bxs, lbs) in enumerate(zip(boxes, labels)):
        for (x1, y1, x2, y2), lab in zip(bxs, lbs):
            cx, cy = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride
            gx, gy = min(int(cx), w // stride - 1), min(int(cy), h // stride - 1)
            out[i, gy, gx] = (1.0, cx - gx, cy - gy, (x2 - x1) / w, (y2 - y1) / h, lab)
    return out


def detector_loss(module: TinyDetector, inputs: Sequence[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """Objectness BCE on every cell + box and class losses on the cells that hold an object."""
    p = module.raw(*inputs)
    obj = targets[..., 0]
    loss = F.binary_cross_entropy_with_logits(p[..., 0], obj)
    pos = obj > 0
    if pos.any():
        box = torch.sigmoid(p[..., 1:5][pos])
        loss = loss + 5.0 * F.mse_loss(box, targets[..., 1:5][pos])
        loss = loss + F.cross_entropy(p[..., 5:][pos], targets[..., 5][pos].long() - 1)
    return loss
