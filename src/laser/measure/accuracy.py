"""Accuracy figures measured by running the artifact on a dataset through a Runner."""

from __future__ import annotations

from typing import Any

import numpy as np

from laser.data import Dataset
from laser.errors import ConfigError


def topk(scores: np.ndarray, labels: np.ndarray, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy (fractions in [0, 1]) from (N, C) scores and (N,) integer labels."""
    order = np.argsort(-scores, axis=1)
    out = {}
    for k in ks:
        k_eff = min(k, scores.shape[1])
        out[f"top{k}"] = float((order[:, :k_eff] == labels[:, None]).any(axis=1).mean())
    return out


def predict(runner: Any, data: Dataset, batch_size: int = 64) -> np.ndarray:
    """First output of ``runner`` over the whole dataset, concatenated."""
    names = runner.spec.input_names
    outs = [runner(feeds)[runner.spec.output_names[0]] for feeds, _ in data.batches(names, batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0,))


def classification(runner: Any, data: Dataset, batch_size: int = 64) -> dict[str, float]:
    """top-1 and top-5 of a classifier on a labelled dataset."""
    if data.labels is None or len(data) == 0:
        raise ConfigError(f"dataset {data.name!r} is empty or unlabelled; accuracy needs labelled samples")
    scores = predict(runner, data, batch_size)
    return {**topk(scores, data.labels), "samples": len(data)}
