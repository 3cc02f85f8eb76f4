"""torchvision architectures as catalog factories: built with ``weights=None`` and no network.

Each factory builds the module exactly as torchvision builds it *for its published weights* (same
auxiliary heads, same frozen batch norms), so the checkpoint from the card's URL loads strictly into
it. Segmentation models are wrapped to return one logits tensor instead of a dict, so they export.
Detection wrappers live in ``laser.models.detection``.

torchvision is imported only through ``laser.vision_compat`` (plain ``import torchvision``
crashes with the CPU build of torch used here).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch
from torch import nn

from laser.errors import ConfigError
from laser.vision_compat import models as tv_models

CLASSIFIERS = ("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
               "efficientnet_b0", "vit_b_16")
SEGMENTERS = ("deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large", "fcn_resnet50")
# torchvision turns the auxiliary classifier on whenever it loads these models' weights.
_AUX_WITH_WEIGHTS = {"deeplabv3_mobilenet_v3_large", "fcn_resnet50"}

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# Where each label set comes from: a torchvision weights enum whose meta["categories"] holds it.
_LABEL_SOURCES = {
    "imagenet": ("", "ResNet18_Weights", "IMAGENET1K_V1"),
    "voc": ("segmentation", "FCN_ResNet50_Weights", "COCO_WITH_VOC_LABELS_V1"),
    "coco": ("detection", "SSDLite320_MobileNet_V3_Large_Weights", "COCO_V1"),
}


def _pick(name: str, allowed: tuple[str, ...], what: str) -> None:
    if name not in allowed:
        raise ConfigError(f"unknown torchvision {what} {name!r}; use one of {list(allowed)}")


def classifier(arch: str, num_classes: int = 1000) -> nn.Module:
    """A torchvision image classifier, (B, 3, H, W) -> (B, num_classes) logits."""
    _pick(arch, CLASSIFIERS, "classifier")
    return getattr(tv_models(), arch)(weights=None, num_classes=num_classes)


class SegmentationLogits(nn.Module):
    """Wraps a torchvision segmentation model: (B, 3, H, W) -> (B, classes, H, W) logits (its ``out``).

    The auxiliary classifier (a training aid) is kept so the published checkpoint loads, but it is
    not run: forward computes only the main head, as torchvision does, minus ``aux``.
    """

    model: Any  # the torchvision segmentation model (its submodules are reached by name)

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        features = self.model.backbone(x)
        if hasattr(self.model, "aux_classifier"):  # DeepLabV3 / FCN: classifier(features["out"])
            out = self.model.classifier(features["out"])
        else:  # LR-ASPP takes the whole feature dict (low- and high-level features)
            out = self.model.classifier(features)
        return nn.functional.interpolate(out, size=size, mode="bilinear", align_corners=False)


def segmenter(arch: str, num_classes: int = 21) -> SegmentationLogits:
    """A torchvision semantic segmentation model with tensor output, built as for its weights."""
    _pick(arch, SEGMENTERS, "segmentation model")
    from laser.vision_compat import torchvision

    seg = torchvision().models.segmentation
    kwargs = {"aux_loss": True} if arch in _AUX_WITH_WEIGHTS else {}
    model = getattr(seg, arch)(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)
    return SegmentationLogits(model)


def freeze_batchnorm(module: nn.Module, eps: float = 1e-5) -> nn.Module:
    """Replace every BatchNorm2d by torchvision's FrozenBatchNorm2d (with ``eps``), in place.

    torchvision builds detection backbones with frozen batch norm whenever weights are loaded, and
    with plain BatchNorm2d otherwise; the published checkpoints hold no ``num_batches_tracked``, so
    the frozen variant is what they fit.
    """
    from laser.vision_compat import torchvision

    frozen = torchvision().ops.misc.FrozenBatchNorm2d
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, frozen(child.num_features, eps=eps))
        else:
            freeze_batchnorm(child, eps)
    return module


@cache
def label_set(name: str) -> tuple[str, ...]:
    """Category names published with torchvision's weights: 'imagenet' (1000), 'voc' (21), 'coco' (91)."""
    if name not in _LABEL_SOURCES:
        raise ConfigError(f"unknown label set {name!r}; use one of {sorted(_LABEL_SOURCES)}")
    sub, enum, member = _LABEL_SOURCES[name]
    module = tv_models()
    if sub:
        module = getattr(module, sub)
    return tuple(getattr(getattr(module, enum), member).meta["categories"])
