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


def _ocr_lines(split: str) -> Dataset:
    from laser.data.ocr import ocr_lines

    return ocr_lines(split)  # type: ignore[no-any-return]


def _ocr_docs(split: str) -> Dataset:
    from laser.data.ocr import ocr_docs

    return ocr_docs(split)  # type: ignore[no-any-return]


def _vad_espeak(split: str) -> Dataset:
    from laser.data.vad import vad_espeak

    return vad_espeak(split)  # type: ignore[no-any-return]


def _faces(split: str) -> Dataset:
    from laser.data.faces import faces

    return faces(split)  # type: ignore[no-any-return]


def _faces_rnet(split: str) -> Dataset:
    from laser.data.faces import faces_rnet

    return faces_rnet(split)  # type: ignore[no-any-return]


def _faces_pnet(split: str) -> Dataset:
    from laser.data.faces import faces_pnet

    return faces_pnet(split)  # type: ignore[no-any-return]


LOADERS: Mapping[str, Callable[[str], Dataset]] = {
    "digits": _digits_dataset,
    "ocr-lines": _ocr_lines,  # rendered text lines for PP-OCRv4's recogniser (laser.data.ocr)
    "ocr-docs": _ocr_docs,  # rendered multi-line pages for PP-OCRv4's detector (laser.data.ocr)
    "vad-espeak": _vad_espeak,  # espeak-ng speech in noise for Silero VAD (laser.data.vad)
    "faces": _faces,  # MTCNN O-Net crops of scikit-image faces, with true boxes (laser.data.faces)
    "faces-rnet": _faces_rnet,  # MTCNN R-Net crops (calibration)
    "faces-pnet": _faces_pnet,  # MTCNN P-Net pyramid tiles (calibration)
}


def load(name: str, split: str = "test") -> Dataset:
    """A dataset by name (``digits``) and split; ``name:split`` (``ocr-lines:val``) names the split itself."""
    base, _, named = name.rpartition(":")
    if base and named in SPLITS:
        name, split = base, named
    if name not in LOADERS:
        raise NotFoundError(f"unknown dataset {name!r}; known: {sorted(LOADERS)}")
    return LOADERS[name](split)
