"""Fidelity to a parent model: how closely a child computes the same function, without labels.

Without a labelled dataset, "accuracy" can only mean "does the child still compute what the parent
computes". Top-1 agreement alone is a trap: a random-weight parent often gives one class for every
input, and any child that lands on that class "agrees" 100 % while computing something else entirely
(a 70 %-pruned network, say, whose logits differ from the parent's by ~100 % relative L2). So the
figures here compare the outputs themselves:

- **relative L2**: ||child - parent|| / ||parent|| over every float output, all samples (0 = identical);
- **cosine**: mean per-sample cosine similarity of the flattened outputs;
- **KL**: mean KL(softmax(parent) || softmax(child)) of 2-D (batch, classes) outputs, in nats;
- **top-1 agreement**: same argmax, 2-D outputs only, and only *meaningful* when the parent's own
  predictions are diverse (see ``diversity``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# A parent whose most common top-1 class covers more than this share of the inputs is "degenerate":
# agreement with it says little (a constant classifier is matched by any child that lands on its class).
DEGENERATE_SHARE = 0.5


@dataclass(frozen=True)
class Diversity:
    """How spread the parent's top-1 predictions are over the inputs."""

    samples: int
    distinct: int  # distinct top-1 classes
    top_share: float  # share of inputs given the most common class

    @property
    def degenerate(self) -> bool:
        return self.distinct <= 2 or self.top_share > DEGENERATE_SHARE

    def describe(self) -> str:
        return (f"{self.distinct} distinct top-1 class(es) over {self.samples} inputs, the most common one on "
                f"{100 * self.top_share:.0f} %")


def diversity(logits: np.ndarray) -> Diversity:
    """The spread of ``logits.argmax(1)`` for (batch, classes) outputs."""
    top = np.asarray(logits).reshape(len(logits), -1).argmax(axis=1)
    _, counts = np.unique(top, return_counts=True)
    return Diversity(len(top), len(counts), float(counts.max() / max(1, len(top))))


def _float_outputs(outputs: Mapping[str, np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
    return [np.asarray(outputs[n], dtype=np.float64) for n in names
            if np.issubdtype(np.asarray(outputs[n]).dtype, np.floating)]


def compare(child: Mapping[str, np.ndarray], parent: Mapping[str, np.ndarray], names: Sequence[str],
            classifier: bool) -> dict[str, Any]:
    """Fidelity figures of ``child`` outputs against ``parent`` outputs (same inputs, same names).

    ``classifier``: the first output is (batch, classes) logits, so KL and top-1 agreement apply."""
    a, b = _float_outputs(child, names), _float_outputs(parent, names)
    if not b:
        return {"rel_l2": None, "cosine": None, "kl": None, "top1_agreement": None, "max_abs_error": None}
    for x, y in zip(a, b):
        if x.shape != y.shape:
            raise ValueError(f"outputs differ in shape: {list(x.shape)} vs the parent's {list(y.shape)}")
    diff = sum(float(((x - y) ** 2).sum()) for x, y in zip(a, b))
    norm = sum(float((y**2).sum()) for y in b)
    rel = float(np.sqrt(diff / norm)) if norm > 0 else (0.0 if diff == 0 else float("inf"))
    flat_a = np.concatenate([x.reshape(len(x), -1) for x in a], axis=1)
    flat_b = np.concatenate([y.reshape(len(y), -1) for y in b], axis=1)
    na, nb = np.linalg.norm(flat_a, axis=1), np.linalg.norm(flat_b, axis=1)
    both = (na > 0) & (nb > 0)
    cos = float(((flat_a * flat_b).sum(axis=1)[both] / (na * nb)[both]).mean()) if both.any() else None
    out: dict[str, Any] = {"rel_l2": rel, "cosine": cos, "kl": None, "top1_agreement": None,
                           "max_abs_error": float(max(np.abs(x - y).max() for x, y in zip(a, b)))}
    if classifier and a[0].ndim == 2:
        p, q = _log_softmax(b[0]), _log_softmax(a[0])
        out["kl"] = float((np.exp(p) * (p - q)).sum(axis=1).mean())
        out["top1_agreement"] = float((a[0].argmax(axis=1) == b[0].argmax(axis=1)).mean())
    return out


def _log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))
