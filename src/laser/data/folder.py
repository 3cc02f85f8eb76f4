"""User data on disk: an image folder (``class_name/*.png``, ImageFolder layout) or a text file of
``label<TAB>text`` lines, read into arrays with a model's preprocessing, and split seeded and stratified."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laser.errors import ConfigError, InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLIT = (0.7, 0.15)  # train, val; the rest is the held-out test split


@dataclass(frozen=True)
class Labelled:
    """Samples (one array per model input), integer labels, class names, and what was skipped."""

    inputs: tuple[np.ndarray, ...]
    labels: np.ndarray
    classes: tuple[str, ...]
    skipped: tuple[str, ...] = ()


def image_folder(root: Path, preprocessing: Mapping[str, Any], skip_bad: bool = False) -> Labelled:
    """Every image under ``root/<class>/``, preprocessed; unreadable files fail (or are skipped)."""
    from laser.preprocess import image_to_array

    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise ConfigError(f"{root} has {len(classes)} class folder(s) {classes}; fine-tuning needs at least 2 "
                          "(one sub-folder of images per class: DIR/cat/*.jpg, DIR/dog/*.jpg)")
    xs, ys, bad = [], [], []
    for k, c in enumerate(classes):
        files = sorted(f for f in (root / c).rglob("*") if f.is_file() and not f.name.startswith("."))
        for f in files:
            try:
                xs.append(image_to_array(f, preprocessing)[0])
            except (InputError, ValueError) as exc:
                bad.append(f"{f} ({str(exc).split(';')[0][-80:]})" if not skip_bad else str(f))
                continue
            ys.append(k)
    if bad and not skip_bad:
        raise InputError(f"{len(bad)} file(s) are not readable images: {'; '.join(bad[:3])}"
                         f"{' ...' if len(bad) > 3 else ''}; remove them or pass --skip-bad")
    empty = [c for k, c in enumerate(classes) if k not in ys]
    if empty:
        raise ConfigError(f"class folder(s) {empty} under {root} hold no readable image; add images or remove them")
    return Labelled((np.stack(xs).astype(np.float32),), np.asarray(ys, np.int64), tuple(classes), tuple(bad))


def text_file(path: Path, labels: tuple[str, ...] | None = None) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """``label<TAB>text`` lines -> (texts, integer labels, class names). With ``labels`` given, every
    line's label must be one of them (the line number is named)."""
    texts, names = [], []
    for no, line in enumerate(path.read_text(encoding="utf-8", errors="strict").splitlines(), 1):
        if not line.strip():
            continue
        label, tab, text = line.partition("\t")
        if not tab or not label.strip() or not text.strip():
            raise InputError(f"{path}:{no}: expected 'label<TAB>text', got {line[:60]!r}")
        if labels is not None and label.strip() not in labels:
            raise InputError(f"{path}:{no}: label {label.strip()!r} is not one of {list(labels)}")
        names.append(label.strip())
        texts.append(text.strip())
    classes = tuple(labels) if labels is not None else tuple(sorted(set(names)))
    if len(classes) < 2:
        raise ConfigError(f"{path} has {len(classes)} label(s) {list(classes)}; fine-tuning needs at least 2")
    index = {c: i for i, c in enumerate(classes)}
    return texts, np.asarray([index[n] for n in names], np.int64), classes


def text_data(path: Path, preprocessing: Mapping[str, Any], names: tuple[str, ...]) -> Labelled:
    """A ``label<TAB>text`` file tokenized with a text model's preprocessing (its vocabulary and fixed
    length), one array per model input (``names``: input_ids, attention_mask, ...)."""
    from laser.hub.pipelines.text import encode

    texts, labels, classes = text_file(path)
    feeds = encode(dict(preprocessing), texts, names)
    return Labelled(tuple(feeds[n] for n in names), labels, classes)


def split(labels: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Stratified seeded indices: 70 % train, 15 % val (early stopping), 15 % test (held out)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        if len(members) < 3:
            raise ConfigError(f"class {int(c)} has {len(members)} sample(s); each class needs at least 3 "
                              "(train, validation and held-out test)")
        a = max(1, int(SPLIT[0] * len(members)))
        b = max(a + 1, int((SPLIT[0] + SPLIT[1]) * len(members)))
        b = min(b, len(members) - 1)
        out["train"] += members[:a].tolist()
        out["val"] += members[a:b].tolist()
        out["test"] += members[b:].tolist()
    return {k: np.sort(np.asarray(v, np.int64)) for k, v in out.items()}


def register_folder(root: Path, preprocessing: Mapping[str, Any], labels: tuple[str, ...] = ()) -> str:
    """Make the image folder ``root`` loadable by name (``laser.data.load(name, split)``) in this
    process, read with ``preprocessing``; class folders map to ``labels``' indices when given (a
    fine-tuned model's classes), and the splits are ``split``'s (test = the fine-tuning hold-out)."""
    from laser import data as datasets

    name = str(root.resolve())
    got = image_folder(root, preprocessing)
    y = got.labels
    if labels:
        unknown = [c for c in got.classes if c not in labels]
        if unknown:
            raise ConfigError(f"class folders {unknown} under {root} are not among the model's labels {list(labels)}")
        y = np.asarray([labels.index(got.classes[k]) for k in y], np.int64)
    idx = split(got.labels, 0)

    def load(part: str) -> datasets.Dataset:
        if part not in idx:
            raise ConfigError(f"unknown split {part!r}; use one of {sorted(idx)}")
        return datasets.Dataset(root.name, tuple(a[idx[part]] for a in got.inputs), y[idx[part]])

    datasets.LOADERS[name] = load  # type: ignore[index]
    return name
