"""torchvision detectors as exportable modules with tensor outputs, built with ``weights=None``.

torchvision's detection models take a list of images, resize and normalise inside, run NMS through
``torchvision.ops`` (absent with the CPU torch build here) and return a list of dicts. The wrappers
here take one preprocessed tensor (resize and normalisation are done by the pipeline, as the card's
preprocessing says) and return fixed-rank *candidates*, before NMS::

    boxes  (B, N, 4) float32  x1, y1, x2, y2 in input pixels, clipped to the image
    scores (B, N)    float32  best non-background class probability of each candidate
    labels (B, N)    int64    that class's index into the card's labels (0 = background, never chosen)

NMS and the score threshold run in the pipeline (``laser.hub.nms``), so the same artifact exports to
ONNX and its outputs can be compared element-wise. One class per candidate (the best one) instead of
torchvision's per-class candidates: a box rarely matters for two classes, and the shapes stay fixed.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn

from laser.errors import ConfigError
from laser.models.vision import freeze_batchnorm
from laser.vision_compat import torchvision

DETECTORS = ("ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_320_fpn", "retinanet_resnet50_fpn")
# torchvision freezes the backbone's batch norm whenever these models are built for their weights, and
# sets eps to 0 for RetinaNet's COCO_V1 weights (torchvision's overwrite_eps: they were trained so).
_FROZEN_BN_EPS = {"fasterrcnn_mobilenet_v3_large_320_fpn": 1e-5, "retinanet_resnet50_fpn": 0.0}


def _best_class(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., C) class probabilities with background at 0 -> best non-background (score, label)."""
    best, idx = scores[..., 1:].max(dim=-1)
    return best, idx + 1


def _clip(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    x = boxes[..., 0::2].clamp(0, width)
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


class SingleShotCandidates(nn.Module):
    """SSD / RetinaNet: backbone + head + anchor decoding, no NMS. See the module docstring."""

    model: Any  # the torchvision detector (its submodules are reached by name)

    def __init__(self, model: nn.Module, activation: str):
        super().__init__()
        if activation not in ("softmax", "sigmoid"):
            raise ConfigError(f"activation must be 'softmax' (SSD) or 'sigmoid' (RetinaNet), got {activation!r}")
        self.model = model
        self.activation = activation

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image_list = torchvision().models.detection.image_list.ImageList
        b, _, h, w = x.shape
        features = list(self.model.backbone(x).values())
        head = self.model.head(features)  # bbox_regression (B, N, 4), cls_logits (B, N, C)
        anchors = self.model.anchor_generator(image_list(x, [(h, w)] * b), features)[0]  # (N, 4), same per image
        deltas = head["bbox_regression"]
        boxes = self.model.box_coder.decode_single(deltas.reshape(-1, 4), anchors.repeat(b, 1)).reshape(b, -1, 4)
        logits = head["cls_logits"]
        probs = logits.softmax(-1) if self.activation == "softmax" else logits.sigmoid()
        scores, labels = _best_class(probs)
        return _clip(boxes, h, w), scores, labels


class TwoStageCandidates(nn.Module):
    """Faster R-CNN: backbone, region proposals (laser NMS inside the RPN), box head; the final
    per-class NMS is left to the pipeline. Images of a batch are padded to the most candidates."""

    model: Any  # the torchvision detector (its submodules are reached by name)

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        # The RPN keeps its top proposals with NMS; torchvision's needs the missing C ops.
        self.model.rpn.filter_proposals = types.MethodType(_filter_proposals, self.model.rpn)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image_list = torchvision().models.detection.image_list.ImageList
        b, _, h, w = x.shape
        sizes = [(h, w)] * b
        features = self.model.backbone(x)
        proposals, _ = self.model.rpn(image_list(x, sizes), features)
        heads = self.model.roi_heads
        pooled = _roi_pool(heads.box_roi_pool, features, proposals, sizes)
        class_logits, box_regression = heads.box_predictor(heads.box_head(pooled))
        boxes = heads.box_coder.decode(box_regression, proposals)  # (R, C, 4) one box per class
        scores, labels = _best_class(class_logits.softmax(-1))
        boxes = _clip(boxes[torch.arange(len(labels)), labels], h, w)  # the chosen class's box
        out_boxes, out_scores, out_labels = [], [], []
        per_image = [len(p) for p in proposals]
        most = max(per_image)
        for bx, sc, lb in zip(boxes.split(per_image), scores.split(per_image), labels.split(per_image)):
            pad = most - len(sc)  # padding candidates score 0: the pipeline's threshold drops them
            out_boxes.append(nn.functional.pad(bx, (0, 0, 0, pad)))
            out_scores.append(nn.functional.pad(sc, (0, pad)))
            out_labels.append(nn.functional.pad(lb, (0, pad)))
        return torch.stack(out_boxes), torch.stack(out_scores), torch.stack(out_labels)


def _roi_pool(pool: Any, features: dict[str, torch.Tensor], boxes: list[torch.Tensor],
              sizes: list[tuple[int, int]]) -> torch.Tensor:
    """MultiScaleRoIAlign.forward, calling roi_align's pure-torch kernel eagerly: without the C ops
    torchvision routes it through torch.compile (12-28 s cold here, and it imports inductor)."""
    import importlib

    torchvision()
    poolers = importlib.import_module("torchvision.ops.poolers")
    kernel = importlib.import_module("torchvision.ops.roi_align")._roi_align
    kernel = getattr(kernel, "__wrapped__", kernel)  # the undecorated function under lazy_compile
    feats = poolers._filter_input(features, pool.featmap_names)
    if pool.scales is None or pool.map_levels is None:
        pool.scales, pool.map_levels = poolers._setup_scales(feats, sizes, pool.canonical_scale, pool.canonical_level)
    rois = poolers._convert_to_roi_format(boxes)  # (R, 5): image index, x1, y1, x2, y2
    levels = pool.map_levels(boxes) if len(feats) > 1 else torch.zeros(len(rois), dtype=torch.int64)
    out_h, out_w = pool.output_size
    result = feats[0].new_zeros((len(rois), feats[0].shape[1], out_h, out_w))
    for level, (feat, scale) in enumerate(zip(feats, pool.scales)):
        idx = torch.where(levels == level)[0]
        result[idx] = kernel(feat, rois[idx], scale, out_h, out_w, pool.sampling_ratio, False)
    return result


def _filter_proposals(self, proposals, objectness, image_shapes, num_anchors_per_level):
    """torchvision's RegionProposalNetwork.filter_proposals with laser's batched NMS."""
    from laser.hub.nms import batched_nms

    box_ops = torchvision().ops.boxes
    num_images = proposals.shape[0]
    objectness = objectness.detach().reshape(num_images, -1)
    levels = torch.cat([torch.full((n,), i, dtype=torch.int64) for i, n in enumerate(num_anchors_per_level)])
    levels = levels.reshape(1, -1).expand_as(objectness)
    top_n_idx = self._get_top_n_idx(objectness, num_anchors_per_level)  # top-n per level, before NMS
    batch_idx = torch.arange(num_images)[:, None]
    objectness, levels = objectness[batch_idx, top_n_idx], levels[batch_idx, top_n_idx]
    proposals = proposals[batch_idx, top_n_idx]
    final_boxes, final_scores = [], []
    for boxes, scores, lvl, shape in zip(proposals, torch.sigmoid(objectness), levels, image_shapes):
        boxes = box_ops.clip_boxes_to_image(boxes, shape)
        keep = box_ops.remove_small_boxes(boxes, self.min_size)
        boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
        keep = torch.where(scores >= self.score_thresh)[0]
        boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
        keep = batched_nms(boxes, scores, lvl, self.nms_thresh)[: self.post_nms_top_n()]
        final_boxes.append(boxes[keep])
        final_scores.append(scores[keep])
    return final_boxes, final_scores


def detector(arch: str, num_classes: int = 91) -> nn.Module:
    """A torchvision detector wrapped to output (boxes, scores, labels) candidates; see the module doc."""
    if arch not in DETECTORS:
        raise ConfigError(f"unknown torchvision detector {arch!r}; use one of {list(DETECTORS)}")
    model = getattr(torchvision().models.detection, arch)(weights=None, weights_backbone=None,
                                                          num_classes=num_classes)
    if arch in _FROZEN_BN_EPS:
        freeze_batchnorm(model.backbone, eps=_FROZEN_BN_EPS[arch])
    if arch.startswith("fasterrcnn"):
        return TwoStageCandidates(model)
    return SingleShotCandidates(model, "softmax" if arch.startswith("ssd") else "sigmoid")
