"""What an optimize run returns: one Outcome per candidate, and the OptimizeResult around them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from laser.artifact import Artifact
from laser.measure.figures import Figures
from laser.optimize.budget import Budget, Violation
from laser.optimize.candidates import BASELINE, Candidate
from laser.optimize.evaluate import Reference, Settings


@dataclass
class Outcome:
    """What happened to one candidate."""

    candidate: Candidate
    status: str  # measured | cached | failed | skipped
    stages: list[dict[str, Any]] = field(default_factory=list)
    metrics: Figures = field(default_factory=Figures)
    entry: dict[str, Any] | None = None  # the laser.measure report entry (issue-6 JSON shape)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)  # what the stages warned about while building it
    load_1m: float | None = None  # the machine's 1-minute load average right after it was measured
    unverified: bool = False  # changes the function and had no data to recover: listed, never the winner
    off_target: bool = False  # not a format/backend the --target runs (the eager reference): never the winner
    final: bool = False  # re-timed side by side with the other finalists (metrics hold those figures)
    detail: dict[str, Any] | None = None  # what its stages chose (mixed precision: layers kept FP32, INT8 MACs)
    seconds: float = 0.0
    key: str = ""
    artifact_key: str = ""
    # filled in by the analysis
    violations: list[Violation] = field(default_factory=list)
    on_front: bool = False
    dominated_by: list[str] = field(default_factory=list)
    parent: str | None = None
    speedup_vs_parent: float | None = None
    speedup_vs_eager: float | None = None
    screen_speedup_vs_parent: float | None = None  # from screening figures: only flags doctor candidates
    diagnosis: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.candidate.name

    @property
    def measured(self) -> bool:
        return self.status in ("measured", "cached") and self.metrics.get("p50_ms") is not None

    @property
    def feasible(self) -> bool:
        return self.measured and not self.violations and not self.unverified and not self.off_target

    def record(self) -> dict[str, Any]:
        """What the cache keeps."""
        c = self.candidate
        return {"recipe": c.recipe, "format": c.format, "backend": c.backend, "status": self.status,
                "stages": self.stages, "metrics": self.metrics.to_dict(), "entry": self.entry, "seconds": self.seconds,
                "artifact_key": self.artifact_key, "warnings": self.warnings, "load_1m": self.load_1m,
                "unverified": self.unverified, **({"detail": self.detail} if self.detail else {})}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.record(), "key": self.key, "error": self.error,
                "feasible": self.feasible, "violations": [v.to_dict() for v in self.violations],
                "on_front": self.on_front, "dominated_by": self.dominated_by, "parent": self.parent,
                "speedup_vs_parent": self.speedup_vs_parent, "speedup_vs_eager": self.speedup_vs_eager,
                "final": self.final, "diagnosis": self.diagnosis, "off_target": self.off_target}


@dataclass
class OptimizeResult:
    """Every candidate's outcome, the winner and how it was chosen, and where the outputs were written."""

    base: Artifact
    source: str
    budget: Budget
    reference: Reference
    settings: Settings
    outcomes: list[Outcome]
    winner: Outcome | None = None
    feasible: bool = False  # True: the winner meets every constraint; False: it is the best effort
    interrupted: bool = False
    timed_out: bool = False
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    output: Path | None = None
    winner_artifact: Artifact | None = None
    hardware: dict[str, Any] = field(default_factory=dict)
    winner_from: list[str] = field(default_factory=list)  # recipe names the winner must come from
    finals: dict[str, Any] | None = None  # the side-by-side re-timing of the finalists (finals.run_finals)
    inputs: str | None = None  # unlabelled samples fidelity was measured on (None: spec examples)
    requested_budget: str = ""  # the budget as given, before the default accuracy and the fidelity mapping
    target: str = "server"  # where the winner is to run (laser.optimize.targets)
    baseline: Candidate = BASELINE  # the reference every speed-up is quoted against (--on: FP32 ONNX there)
    device: dict[str, Any] | None = None  # --on: the device measured on (url, label, emulated, baseline)

    @property
    def measured(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.measured]

    @property
    def front(self) -> list[Outcome]:
        return [o for o in self.measured if o.on_front]

    def get(self, recipe: str, format: str, backend: str) -> Outcome | None:
        for o in self.outcomes:
            if (o.candidate.recipe, o.candidate.format, o.candidate.backend) == (recipe, format, backend):
                return o
        return None

    @property
    def eager(self) -> Outcome | None:
        o = self.get(*triple(self.baseline))
        return o if o is not None and o.measured else None

    @property
    def baseline_label(self) -> str:
        """What "× eager" means in this run: PyTorch eager here, or the FP32 ONNX model on the --on device."""
        return self.device["baseline"] if self.device else "PyTorch eager"

    def verdict(self) -> str:
        """One sentence: what won, how it compares with the eager model, and whether the budget holds."""
        from laser.optimize.report import verdict

        return verdict(self)

    def summary(self) -> str:
        from laser.optimize.report import terminal_summary

        return terminal_summary(self)

    def to_dict(self) -> dict[str, Any]:
        from laser.optimize.report import result_dict

        return result_dict(self)

    def budget_drop_limit(self) -> float | None:
        """The accuracy drop the budget allows, in percentage points (None: no accuracy constraint)."""
        limits = []
        for c in self.budget.constraints:
            if c.metric == "accuracy_drop":
                limits.append(c.limit)
            elif c.metric == "accuracy":
                limits.append(100 * (self.reference.base_accuracy - c.limit))
            elif c.metric == "rel_l2":  # fidelity (no labels): "accuracy" = 1 - relative L2
                limits.append(100 * c.limit)
        return min(limits) if limits else None


def triple(c: Candidate) -> tuple[str, str, str]:
    return c.recipe, c.format, c.backend
