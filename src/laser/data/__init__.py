"""Datasets as plain numpy arrays: the built-in digits, and (by name) whatever else is registered.

``laser.data.load(name, split)`` returns a ``Dataset``; ``laser.data.digits(split)`` returns the
``(images, labels)`` arrays of the built-in one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from laser.errors import ConfigError, NotFoundError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Dataset:
    """Samples as arrays in the model's input order, and labels (None for unlabelled data)."""

    name: str
    inputs: tuple[np.ndarray, ...]
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = {len(a) for a in self.inputs}
        if len(n) != 1 or (self.labels is not None and len(self.labels) not in n):
            raise ConfigError(f"dataset {self.name!r}: arrays have different lengths {sorted(n)}")

    def __len__(self) -> int:
        return len(self.inputs[0])

    def take(self, n: int) -> Dataset:
        return Dataset(self.name, tuple(a[:n] for a in self.inputs),
                       None if self.labels is None else self.labels[:n])

    def feeds(self, names: Sequence[str], start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """Inputs as a Runner feed ``{name: array}``; names follow the model spec's input order."""
        if len(names) != len(self.inputs):
            raise ConfigError(f"dataset {self.name!r} has {len(self.inputs)} input array(s), the model "
                              f"takes {len(names)} ({list(names)})")
        return {n: np.ascontiguousarray(a[start:stop]) for n, a in zip(names, self.inputs)}

    def batches(self, names: Sequence[str], batch_size: int) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray | None]]:
        for i in range(0, len(self), batch_size):
            labels = None if self.labels is None else self.labels[i:i + batch_size]
            yield self.feeds(names, i, i + batch_size), labels


def digits(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits: images float32 (N, 1, 8, 8) normalised as digits-cnn's spec
    says ((v / 16 - 0.5) / 0.5), labels int64. Split 70/10/20 % train/val/test, seeded, stratified."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {SPLITS}")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0 - 0.5) / 0.5
    y = bunch.target.astype(np.int64)
    rng = np.random.default_rng(0)
    idx: dict[str, list[int]] = {s: [] for s in SPLITS}
    for cls in range(10):  # stratified: every class split 70/10/20
        members = rng.permutation(np.flatnonzero(y == cls))
        a, b = int(0.7 * len(members)), int(0.8 * len(members))
        idx["train"] += members[:a].tolist()
        idx["val"] += members[a:b].tolist()
        idx["test"] += members[b:].tolist()
    chosen = np.sort(np.array(idx[split]))
    return np.ascontiguousarray(x[chosen][:, None]), y[chosen]


def _digits_dataset(split: str) -> Dataset:
    x, y = digits(split)
    return Dataset("digits", (x,), y)


def _lazy(module: str, function: str) -> Callable[[str], Dataset]:
    """A loader that imports its generator module only when the dataset is asked for (they pull PIL, fonts,
    espeak-ng or scikit-image)."""
    def load_split(split: str) -> Dataset:
        import importlib

        return getattr(importlib.import_module(module), function)(split)  # type: ignore[no-any-return]

    return load_split


LOADERS: Mapping[str, Callable[[str], Dataset]] = {
    "digits": _digits_dataset,
    "ocr-lines": _lazy("laser.data.ocr", "ocr_lines"),  # rendered text lines, PP-OCRv4 recogniser
    "ocr-docs": _lazy("laser.data.ocr", "ocr_docs"),  # rendered pages, PP-OCRv4 detector
    "vad-espeak": _lazy("laser.data.vad", "vad_espeak"),  # espeak-ng speech in noise, Silero VAD
    "faces": _lazy("laser.data.faces", "faces"),  # MTCNN O-Net crops with true boxes
    "faces-rnet": _lazy("laser.data.faces", "faces_rnet"),  # MTCNN R-Net crops (calibration)
    "faces-pnet": _lazy("laser.data.faces", "faces_pnet"),  # MTCNN P-Net pyramid tiles (calibration)
}


def load(name: str, split: str = "test") -> Dataset:
    """A dataset by name (``digits``) and split; ``name:split`` (``ocr-lines:val``) names the split itself."""
    base, _, named = name.rpartition(":")
    if base and named in SPLITS:
        name, split = base, named
    if name not in LOADERS:
        raise NotFoundError(f"unknown dataset {name!r}; known: {sorted(LOADERS)}")
    return LOADERS[name](split)
