"""digits-cnn: laser's built-in default model, a small CNN for scikit-learn's 8x8 digits."""

from __future__ import annotations

import torch
from torch import nn

from laser.spec import ModelSpec, TensorSpec

LABELS = tuple(str(i) for i in range(10))
# Pixels are scaled to [0, 1] (digits: value / 16; image files: value / 255), then normalised.
PREPROCESSING = {"type": "image", "mode": "L", "size": [8, 8], "mean": [0.5], "std": [0.5], "ink": "light"}
SPEC = ModelSpec(
    inputs=(TensorSpec("input", "float32", ("batch", 1, 8, 8)),),
    outputs=(TensorSpec("logits", "float32", ("batch", 10)),),
)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DigitsCNN(nn.Module):
    """(B, 1, 8, 8) -> (B, 10) logits. ~0.1 M parameters, ~2.4 M MACs per image."""

    def __init__(self, classes: int = 10, widths: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        c1, c2, c3 = widths
        self.features = nn.Sequential(
            _block(1, c1),          # (B, c1, 8, 8)
            _block(c1, c2),         # (B, c2, 8, 8)
            nn.MaxPool2d(2),        # (B, c2, 4, 4)
            _block(c2, c3),         # (B, c3, 4, 4)
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(c3, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))  # (B, c3, 1, 1) -> (B, c3) -> (B, 10)


def digits_cnn(classes: int = 10, widths: tuple[int, int, int] | list[int] = (32, 64, 128)) -> DigitsCNN:
    return DigitsCNN(classes=classes, widths=tuple(widths))  # type: ignore[arg-type]
