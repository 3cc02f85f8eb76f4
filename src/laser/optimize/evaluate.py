"""How one candidate is measured: ``laser.measure`` on its backend, reduced to the figures a budget reads.

Accuracy is the task metric on the given labelled dataset. Without one it is *fidelity* to the FP32 parent
on realistic inputs (the user's unlabelled samples, else spec examples): the relative L2 of the outputs, with
cosine, KL and top-1 agreement beside it; agreement counts only when the parent's own predictions are
diverse (a random-weight parent that gives one class for every input is matched by any child landing on
that class). ``Budget.for_fidelity`` maps an accuracy budget onto these figures.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from laser.artifact import Artifact
from laser.data import Dataset
from laser.errors import ConfigError
from laser.measure.accuracy import PRIMARY
from laser.measure.fidelity import Diversity, compare, diversity
from laser.measure.figures import Figures


@dataclass(frozen=True)
class Settings:
    """Measurement and build settings. The ones in ``key()`` change figures, so they key the cache."""

    repeats: int = 2  # independent latency runs per candidate; the median run is reported
    warmup: int = 10
    min_iters: int = 20
    max_seconds: float = 0.25  # per latency run (a time budget; at least min_iters calls)
    threads: int | None = None
    synthetic_samples: int = 64  # fidelity inputs when there is no labelled dataset
    accuracy_samples: int | None = None  # cap on dataset samples (None: the whole test split)
    robustness: bool = False
    distill_epochs: int = 3  # distillation after pruning; digits-cnn recovers within 1 point in 2-3
    calibration_samples: int | None = None  # INT8 calibration samples (None: the quantize stage's default)
    search_epochs: int | None = None  # fine-tuning epochs of the width search (None: distill_epochs)
    doctor: bool = True
    max_diagnoses: int = 6
    probe_seconds: float = 0.3  # the doctor's throughput / thread-scaling timings, each
    profile_runs: int = 20  # the doctor's profiled runs
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
                    calibration_samples=64, search_epochs=1, max_diagnoses=2, probe_seconds=0.05, profile_runs=5,
                    exporter="legacy")
        return cls(**{**base, **changes})

    def key(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("doctor", "max_diagnoses", "probe_seconds", "profile_runs"):
            d.pop(k)
        return d

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The no-label budget mapping: an allowed drop of X points of accuracy becomes "relative L2 of the outputs
# vs the parent <= X x REL_L2_PER_POINT" (plus top-1 agreement >= 1 - X/100 when the parent's predictions
# are diverse enough to mean something). A rule of thumb, stated as such: post-training INT8 of CNN
# classifiers, which typically loses well under a point of top-1, moves the logits by a few per cent relative
# L2, while a function-changing edit (pruning without fine-tuning) moves them by tens of per cent.
REL_L2_PER_POINT = 0.05


@dataclass(frozen=True)
class Reference:
    """What every candidate's accuracy is measured on, and what that accuracy means.

    With labels (``proxy`` False): the task metric on ``data``. Without (``proxy`` True): fidelity to the FP32
    parent on ``inputs`` (user-given samples or spec examples), whose outputs are ``outputs``."""

    data: Dataset | None  # labelled test data; None without labels
    metric: str  # "top1" / "accuracy" / "miou" / "map_50", or "fidelity"
    proxy: bool
    base_accuracy: float  # the parent's task metric; 1.0 (identical) for fidelity
    distinct: int = 0  # distinct classes among the labels (the parent's own top-1 when proxy)
    inputs: tuple[dict[str, np.ndarray], ...] = ()  # fidelity inputs, as batches
    outputs: tuple[dict[str, np.ndarray], ...] = ()  # the parent's outputs on them
    input_source: str = ""
    samples: int = 0
    diversity: Diversity | None = None  # of the parent's top-1 over the inputs (classifiers)
    classifier: bool = False

    @property
    def agreement_meaningful(self) -> bool:
        return self.diversity is not None and not self.diversity.degenerate

    @property
    def label(self) -> str:
        if not self.proxy:
            assert self.data is not None
            return f"{self.metric} on {self.data.name} ({len(self.data)} samples)"
        return f"fidelity to the FP32 parent (1 − relative L2 of the outputs, {self.samples} inputs: {self.input_source})"

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data.name if self.data is not None else None,
                "samples": len(self.data) if self.data is not None else self.samples,
                "metric": self.metric, "proxy": self.proxy, "base_accuracy": self.base_accuracy,
                "label": self.label, "distinct_classes": self.distinct, "inputs": self.input_source or None,
                "agreement_meaningful": self.agreement_meaningful if self.proxy else None,
                "diversity": self.diversity.describe() if self.diversity is not None else None,
                "warning": self.warning}

    @property
    def warning(self) -> str | None:
        """Why top-1 agreement is left out, when it is: a parent with random weights often gives every input
        the same class, and then agreement only separates 'same constant class' from 'another one'."""
        if not self.proxy or self.diversity is None or not self.diversity.degenerate:
            return None
        return (f"the FP32 parent is degenerate on these inputs ({self.diversity.describe()}; random weights?): "
                "top-1 agreement would say little, so fidelity is judged by the relative L2 of the outputs alone")

    def fidelity(self, runner: Any) -> dict[str, Any]:
        """The runner's fidelity figures against the parent's stored outputs (see laser.measure.fidelity)."""
        names = list(runner.spec.output_names)
        got = [runner.in_steps(feeds) for feeds in self.inputs]  # a fixed-batch program: in calls it takes
        child = {n: np.concatenate([g[n] for g in got]) for n in names}
        parent = {n: np.concatenate([o[n] for o in self.outputs]) for n in names}
        return compare(child, parent, names, self.classifier)


def reference(base: Artifact, data: Dataset | str | None, settings: Settings,
              inputs: Any = None) -> Reference:
    """Labelled test data and the base's task metric on it; without labels, the fidelity inputs (``inputs``:
    an image folder, ``.npy``/``.npz`` files or a Dataset; else spec examples) and the base's outputs on them."""
    from laser import data as datasets
    from laser.measure.accuracy import evaluate
    from laser.runtime import run

    if isinstance(data, str):
        data = datasets.load(data, "test")
    if data is not None:
        if data.labels is None:
            raise ConfigError(f"dataset {data.name!r} has no labels; give a labelled dataset, or pass it as "
                              "--inputs (unlabelled samples: then accuracy is fidelity to the FP32 parent)")
        if settings.accuracy_samples:
            data = data.take(settings.accuracy_samples)
        metric = PRIMARY.get(base.task, "top1")
        with run(base, backend=_reference_backend(base)) as runner:
            acc, _ = evaluate(base.task, runner, data)
        if metric not in acc:
            raise ConfigError(f"the {base.task} metrics {sorted(acc)} have no {metric!r}; cannot rank candidates")
        return Reference(data, metric, False, float(acc[metric]), len(np.unique(np.asarray(data.labels))))
    from laser.compress.calibration import calibration_set

    calib = calibration_set(inputs if inputs is not None else "random", base.spec, base.preprocessing,
                            samples=settings.synthetic_samples, seed=1)
    source = ("spec example inputs (N(0, 1) floats, random token ids)" if inputs is None else calib.source)
    with run(base, backend=_reference_backend(base)) as runner:
        outputs = tuple(runner(feeds) for feeds in calib.feeds)
    first = np.concatenate([o[base.spec.output_names[0]] for o in outputs])
    classifier = base.task in ("classification", "text-classification") and first.ndim == 2
    div = diversity(first) if classifier else None
    return Reference(None, "fidelity", True, 1.0, div.distinct if div else 0, calib.feeds, outputs, source,
                     calib.samples, div, classifier)


def _reference_backend(art: Artifact) -> str:
    from laser.runtime import backends_for

    return "torch" if art.format == "torch" else backends_for(art)[0]


def measure_candidate(art: Artifact, backend: str, ref: Reference, settings: Settings,
                      parent: Artifact | None = None, *, on: str | None = None,
                      identity: str | None = None) -> dict[str, Any]:
    """The LASER report entry of ``art`` on ``backend`` (latency, accuracy, size, energy, robustness); without
    labels, plus its ``fidelity`` to the parent on the reference inputs. ``on``: an SSH device (``backend`` is
    then ``ssh:RUNTIME``): timed there, and accuracy and fidelity computed from the outputs the device sends back."""
    from laser.measure import measure
    from laser.runtime import run

    runtime = backend.partition(":")[2] if on else ""
    report = measure(art, backends=[runtime if on else backend], data=ref.data,
                     reference=parent if ref.data is not None else None,
                     repeats=settings.repeats, warmup=settings.warmup, min_iters=settings.min_iters,
                     max_seconds=settings.max_seconds, threads=settings.threads, robustness=settings.robustness,
                     peak=False, activations=False, on=on, identity=identity)
    entry = report.to_dict()["artifacts"][0]  # JSON-clean: NaN -> None, numpy -> Python
    if ref.proxy:
        where: dict[str, Any] = {"backend": "ssh", "on": on, "identity": identity, "runtime": runtime} if on else {
            "backend": backend}
        with run(art, threads=settings.threads, **where) as runner:
            entry["fidelity"] = ref.fidelity(runner)
    return entry


def figures(entry: dict[str, Any], ref: Reference) -> Figures:
    """The flat figures budgets and the Pareto front read, in canonical units (ms, B, J, fraction, pts)."""
    return Figures.from_entry(entry, metric=None if ref.proxy else ref.metric, base_accuracy=ref.base_accuracy,
                              agreement_meaningful=ref.agreement_meaningful)
