"""The catalog: a plain dict of model cards, name -> Card.

A card says what the model is (task, architecture factory, spec, preprocessing, labels), where its
weights come from (shipped inside laser, or a URL + sha256 + license), and, once measured, its LASER
card with the hardware it was measured on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from laser.models import digits
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
    description: str = ""
    builtin: str | None = None  # weights file shipped in laser/assets
    url: str | None = None  # or downloaded from here ...
    sha256: str | None = None  # ... and checked against this
    license: str = ""
    laser_card: Mapping[str, Any] | None = None  # measured LASER figures + hardware

    @property
    def architecture(self) -> dict[str, Any]:
        return {"factory": self.factory, "kwargs": dict(self.kwargs)}


CATALOG: dict[str, Card] = {
    "digits-cnn": Card(
        name="digits-cnn",
        task="classification",
        factory="laser.models.digits:digits_cnn",
        kwargs={"classes": 10, "widths": [32, 64, 128]},
        spec=digits.SPEC,
        preprocessing=digits.PREPROCESSING,
        labels=digits.LABELS,
        description="Small CNN for scikit-learn's 8x8 handwritten digits; laser's built-in default model.",
        builtin="digits-cnn.safetensors",
        license="BSD-3-Clause (data: scikit-learn digits / UCI)",
    ),
}
