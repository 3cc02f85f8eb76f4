"""How one candidate is measured: ``laser.measure`` on its backend, reduced to the figures a budget reads.

Accuracy is the task metric on the given labelled dataset. Without one, the accuracy proxy is top-1
agreement with the FP32 parent: synthetic inputs drawn from the spec are labelled with the parent's
own top-1 class (in torch eager), so a candidate's top-1 on them is its agreement with the parent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from laser.artifact import Artifact
from laser.data import Dataset
from laser.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    """Measurement and build settings. The ones in ``key()`` change figures, so they key the cache."""

    repeats: int = 2  # independent latency runs per candidate; the median run is reported
    warmup: int = 10
    min_iters: int = 20
    max_seconds: float = 0.25  # per latency run (a time budget; at least min_iters calls)
    threads: int | None = None
    synthetic_samples: int = 64  # agreement inputs when there is no labelled dataset
    accuracy_samples: int | None = None  # cap on dataset samples (None: the whole test split)
    robustness: bool = False
    distill_epochs: int = 3  # distillation after pruning; digits-cnn recovers within 1 point in 2-3
    doctor: bool = True
    max_diagnoses: int = 6
    quick: bool = False  # fewer epochs and calibration samples: for tests
    exporter: str = "auto"  # ONNX exporter of the export stage ("legacy" exports ~10x faster: smoke runs)

    def __post_init__(self) -> None:
        if min(self.repeats, self.min_iters, self.synthetic_samples, self.distill_epochs) < 1 or self.warmup < 0:
            raise ConfigError(f"settings must be positive (warmup >= 0), got {self}")
        if self.max_seconds < 0:
            raise ConfigError(f"max_seconds must be >= 0, got {self.max_seconds}")

    @classmethod
    def fast(cls, **changes: Any) -> Settings:
        """Few latency iterations and short fine-tuning: for tests and smoke runs."""
        base = dict(repeats=1, warmup=2, min_iters=5, max_seconds=0.0, synthetic_samples=16, distill_epochs=2,
                    max_diagnoses=2, quick=True, exporter="legacy")
        return cls(**{**base, **changes})

    def key(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("doctor", "max_diagnoses"):
            d.pop(k)
        return d

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Reference:
    """The data every candidate's accuracy is measured on, and what that accuracy means."""

    data: Dataset
    metric: str  # "top1" or "top1 agreement with FP32 parent"
    proxy: bool  # True: agreement with the parent on synthetic inputs
    base_accuracy: float
    distinct: int = 0  # distinct classes among the labels (the parent's own top-1 when proxy)

    @property
    def label(self) -> str:
        return (f"top-1 agreement with the FP32 parent ({len(self.data)} synthetic inputs)" if self.proxy
                else f"top-1 on {self.data.name} ({len(self.data)} samples)")

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data.name, "samples": len(self.data), "metric": self.metric, "proxy": self.proxy,
                "base_accuracy": self.base_accuracy, "label": self.label, "distinct_classes": self.distinct,
                "warning": self.warning}

    @property
    def warning(self) -> str | None:
        """Why the proxy says little, when it does: a parent with random weights often gives every input
        the same class, and then agreement only separates 'same constant class' from 'another one'."""
        if not self.proxy or self.distinct > 2:
            return None
        return (f"the FP32 parent gives {self.distinct} distinct top-1 class(es) over {len(self.data)} synthetic "
                "inputs (random weights?): top-1 agreement is a weak proxy here; report.json also holds each "
                "candidate's max |logit difference| from the parent")


def reference(base: Artifact, data: Dataset | str | None, settings: Settings) -> Reference:
    """Labelled test data (or synthetic inputs labelled by the base model) and the base's accuracy on it."""
    from laser import data as datasets
    from laser.measure.accuracy import evaluate
    from laser.runtime import run

    if isinstance(data, str):
        data = datasets.load(data, "test")
    if data is not None:
        if data.labels is None:
            raise ConfigError(f"dataset {data.name!r} has no labels; give a labelled dataset or none "
                              "(then accuracy is top-1 agreement with the FP32 parent)")
        if settings.accuracy_samples:
            data = data.take(settings.accuracy_samples)
        with run(base, backend=_reference_backend(base)) as runner:
            acc, _ = evaluate(base.task, runner, data)
        return Reference(data, "top1", False, float(acc["top1"]), len(np.unique(np.asarray(data.labels))))
    if len(base.spec.outputs[0].shape) != 2:
        raise ConfigError(f"{base.name!r} is not a classifier (first output {base.spec.outputs[0].describe()}); "
                          "without a labelled dataset laser compares top-1 classes, so give --data")
    feeds = base.spec.example_inputs(batch=settings.synthetic_samples, seed=1)
    with run(base, backend=_reference_backend(base)) as runner:
        out = np.concatenate([runner({k: v[i:i + 16] for k, v in feeds.items()})[runner.spec.output_names[0]]
                              for i in range(0, settings.synthetic_samples, 16)])
    labels = out.argmax(axis=1).astype(np.int64)
    ds = Dataset("synthetic (labels: FP32 parent's top-1)", tuple(feeds[n] for n in base.spec.input_names), labels)
    return Reference(ds, "top1 agreement with FP32 parent", True, 1.0, len(np.unique(labels)))


def _reference_backend(art: Artifact) -> str:
    from laser.runtime import backends_for

    return "torch" if art.format == "torch" else backends_for(art)[0]


def measure_candidate(art: Artifact, backend: str, ref: Reference, settings: Settings,
                      parent: Artifact | None = None) -> dict[str, Any]:
    """The issue-6 report entry of ``art`` on ``backend`` (latency, accuracy, size, energy, robustness)."""
    from laser.measure import measure

    report = measure(art, backends=[backend], data=ref.data, reference=parent,
                     repeats=settings.repeats, warmup=settings.warmup, min_iters=settings.min_iters,
                     max_seconds=settings.max_seconds, threads=settings.threads, robustness=settings.robustness,
                     peak=False, activations=False)
    return report.to_dict()["artifacts"][0]  # JSON-clean: NaN -> None, numpy -> Python


def figures(entry: dict[str, Any], ref: Reference) -> dict[str, Any]:
    """The flat figures budgets and the Pareto front read, in canonical units (ms, B, J, fraction, pts)."""
    lat, size, energy = entry.get("latency") or {}, entry.get("size") or {}, entry.get("energy") or {}
    acc = (entry.get("accuracy") or {}).get("top1")
    out: dict[str, Any] = {
        "p50_ms": lat.get("p50_ms"), "p90_ms": lat.get("p90_ms"), "p99_ms": lat.get("p99_ms"),
        "throughput_per_s": lat.get("throughput_per_s"), "spread_pct": lat.get("spread_pct"),
        "accuracy": acc, "bytes": size.get("bytes"), "params": size.get("params"), "macs": size.get("macs"),
        "energy_j": energy.get("joules_per_inference"), "energy_method": energy.get("method"),
    }
    out["accuracy_drop_pts"] = None if acc is None else round(100 * (ref.base_accuracy - acc), 6)
    out["max_abs_error"] = (entry.get("accuracy") or {}).get("max_abs_error")  # vs the parent, output units
    rob = entry.get("robustness") or {}
    fgsm = rob.get("fgsm") or {}
    if fgsm:  # the classic example's epsilon when measured, else the largest one
        eps = "0.007" if "0.007" in fgsm else max(fgsm, key=float)
        out["robust_accuracy"] = fgsm[eps]
    return out
