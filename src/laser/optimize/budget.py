"""Budgets: constraints on measured LASER figures, an objective, and a wall-clock time budget.

A budget is a comma-separated list of constraints, each ``METRIC OP VALUE UNIT``::

    accuracy_drop<=1%, p50<=5ms, size<=2MB, energy<=0.5mJ

``laser optimize`` keeps ``accuracy_drop<=1%`` in every budget unless the budget constrains accuracy itself
or removes it explicitly with ``accuracy_drop<=none``. Without labelled data an accuracy constraint is
mapped onto fidelity to the FP32 parent (``rel_l2``, ``agreement``; see ``Budget.for_fidelity``).

Every figure is converted to one canonical unit (milliseconds, bytes, joules, percentage points,
fractions) before it is compared, so ``p50<=500us`` and ``p50<=0.5ms`` are the same constraint. A value
without a unit is refused where the unit is ambiguous (latency, size, energy, accuracy).

``check(metrics)`` returns the violated constraints with the amount by which each one failed; a
candidate is feasible when the list is empty. A figure that was not measured counts as a violation
("not measured"), never as a pass.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from laser.errors import BudgetError

# metric name -> (key in a candidate's metrics, kind, better direction, label for humans)
# kind selects the unit table; "lower"/"higher" is the direction in which the figure improves.
METRICS: dict[str, tuple[str, str, str, str]] = {
    "p50": ("p50_ms", "time", "lower", "p50 latency"),
    "latency": ("p50_ms", "time", "lower", "p50 latency"),
    "p90": ("p90_ms", "time", "lower", "p90 latency"),
    "p99": ("p99_ms", "time", "lower", "p99 latency"),
    "throughput": ("throughput_per_s", "rate", "higher", "throughput"),
    "accuracy": ("accuracy", "fraction", "higher", "accuracy"),
    "accuracy_drop": ("accuracy_drop_pts", "points", "lower", "accuracy drop"),
    "size": ("bytes", "bytes", "lower", "size on disk"),
    "params": ("params", "count", "lower", "parameters"),
    "macs": ("macs", "count", "lower", "MACs per sample"),
    "energy": ("energy_j", "energy", "lower", "energy per inference"),
    "robust_accuracy": ("robust_accuracy", "fraction", "higher", "robust accuracy (FGSM)"),
    # without labels: fidelity to the FP32 parent (what an accuracy budget maps onto, see for_fidelity)
    "rel_l2": ("rel_l2", "fraction", "lower", "relative L2 of the outputs vs the FP32 parent"),
    "agreement": ("agreement", "fraction", "higher", "top-1 agreement with the FP32 parent"),
}
ACCURACY = ("accuracy", "accuracy_drop", "rel_l2", "agreement")  # constraints on "is it still the same model"
DEFAULT_ACCURACY = "accuracy_drop<=1%"

# Unit tables: unit -> factor to the canonical unit of the kind.
UNITS: dict[str, dict[str, float]] = {
    "time": {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3},  # canonical: ms
    "rate": {"/s": 1.0, "ips": 1.0, "qps": 1.0, "/ms": 1e3},  # canonical: inferences per second
    "fraction": {"%": 0.01},  # canonical: fraction in [0, 1]
    "points": {"%": 1.0, "pp": 1.0, "pts": 1.0, "points": 1.0},  # canonical: percentage points
    "bytes": {"b": 1, "kb": 1e3, "kib": 1024, "mb": 1e6, "mib": 1024**2, "gb": 1e9, "gib": 1024**3},
    "count": {"": 1, "k": 1e3, "m": 1e6, "g": 1e9},
    "energy": {"j": 1.0, "mj": 1e-3, "uj": 1e-6, "µj": 1e-6, "nj": 1e-9},  # canonical: joules
}
CANONICAL = {"time": "ms", "rate": "/s", "fraction": "", "points": " pts", "bytes": " B", "count": "",
             "energy": " J"}
OPERATORS = ("<=", ">=", "<", ">")
_TERM = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>|=<|=>|==|=)?\s*(.*?)\s*$")
_VALUE = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*)$")


@dataclass(frozen=True)
class Constraint:
    """One measured figure compared to a limit, both in the canonical unit of the metric."""

    metric: str  # the name used in the budget text (p50, size, ...)
    op: str  # one of OPERATORS
    limit: float  # canonical unit
    text: str  # as the user wrote it, for messages

    @property
    def key(self) -> str:
        return METRICS[self.metric][0]

    @property
    def kind(self) -> str:
        return METRICS[self.metric][1]

    def holds(self, value: float) -> bool:
        return {"<=": value <= self.limit, "<": value < self.limit,
                ">=": value >= self.limit, ">": value > self.limit}[self.op]

    def to_dict(self) -> dict[str, object]:
        return {"metric": self.metric, "op": self.op, "limit": self.limit, "key": self.key,
                "unit": CANONICAL[self.kind].strip(), "text": self.text}


@dataclass(frozen=True)
class Violation:
    """A constraint a candidate fails, and by how much (in the canonical unit and relative to the limit)."""

    constraint: Constraint
    value: float | None  # None: the figure was not measured

    @property
    def excess(self) -> float:
        """How far past the limit, >= 0, in the canonical unit (inf when not measured)."""
        if self.value is None:
            return math.inf
        return abs(self.value - self.constraint.limit)

    @property
    def relative(self) -> float:
        """Excess as a fraction of the limit (inf when not measured or the limit is 0)."""
        limit = abs(self.constraint.limit)
        return self.excess / limit if limit else math.inf

    def message(self) -> str:
        c = self.constraint
        if self.value is None:
            return f"{c.text}: {METRICS[c.metric][3]} was not measured"
        rel = f", {100 * self.relative:+.0f} %" if math.isfinite(self.relative) else ""
        side = "over" if c.op in ("<=", "<") else "under"
        return (f"{c.text}: measured {fmt(self.value, c.kind)}, {side} the limit by "
                f"{fmt(self.excess, c.kind)}{rel}")

    def to_dict(self) -> dict[str, object]:
        return {"constraint": self.constraint.text, "metric": self.constraint.metric, "value": self.value,
                "limit": self.constraint.limit, "excess": None if self.value is None else self.excess,
                "relative": None if not math.isfinite(self.relative) else self.relative,
                "message": self.message()}


@dataclass(frozen=True)
class Objective:
    """What the winner minimises (or maximises) among the feasible candidates."""

    metric: str = "p50"

    def __post_init__(self) -> None:
        if self.metric not in METRICS or self.metric == "accuracy_drop":
            known = sorted(m for m in METRICS if m != "accuracy_drop")
            raise BudgetError(f"unknown objective {self.metric!r}{_did_you_mean(self.metric, known)}; "
                              f"use one of {known} (default: p50)")

    @property
    def key(self) -> str:
        return METRICS[self.metric][0]

    @property
    def maximise(self) -> bool:
        return METRICS[self.metric][2] == "higher"

    def score(self, metrics: Mapping[str, float | None]) -> float:
        """Lower is better; an unmeasured figure scores worst."""
        v = metrics.get(self.key)
        if v is None:
            return math.inf
        return -float(v) if self.maximise else float(v)

    def describe(self) -> str:
        return f"{'highest' if self.maximise else 'lowest'} {METRICS[self.metric][3]}"


@dataclass(frozen=True)
class Budget:
    constraints: tuple[Constraint, ...] = ()
    objective: Objective = Objective()
    removed: tuple[str, ...] = ()  # metrics the user switched off with METRIC<=none
    mapping: str = ""  # how an accuracy budget was mapped onto fidelity figures (no labels), in words

    @classmethod
    def parse(cls, text: str | None, objective: str = "p50") -> Budget:
        """Parse ``"accuracy_drop<=1%,p50<=5ms"``; empty or None means no constraint; ``METRIC<=none``
        records that the user removed that constraint (see ``with_default_accuracy``)."""
        terms = [t for t in re.split(r"[,;]", text or "") if t.strip()]
        removed = tuple(m for t in terms if (m := _removed(t)))
        kept = tuple(parse_constraint(t) for t in terms if not _removed(t))
        return cls(kept, Objective(objective), removed)

    def with_default_accuracy(self) -> Budget:
        """This budget, plus accuracy_drop<=1% unless it constrains accuracy already or the user removed
        that constraint explicitly (``accuracy_drop<=none``): a latency budget alone must never crown a
        model that lost accuracy."""
        if any(c.metric in ACCURACY for c in self.constraints) or any(m in ACCURACY for m in self.removed):
            return self
        return dataclasses.replace(self, constraints=(parse_constraint(DEFAULT_ACCURACY), *self.constraints))

    def for_fidelity(self, rel_l2_per_point: float, agreement_samples: int | None) -> Budget:
        """Without labels: each accuracy constraint (an allowed drop of X points) becomes
        ``rel_l2 <= X * rel_l2_per_point`` and, when ``agreement_samples`` is given (the parent's predictions
        are diverse), ``agreement >= 1 - max(X/100, 2/samples)`` (two disagreements are within sampling noise)."""
        out: list[Constraint] = []
        said: list[str] = []
        for c in self.constraints:
            if c.metric not in ("accuracy", "accuracy_drop"):
                out.append(c)
                continue
            pts = c.limit if c.metric == "accuracy_drop" else 100 * (1.0 - c.limit)
            rel = Constraint("rel_l2", "<=", pts * rel_l2_per_point, f"rel_l2<={100 * pts * rel_l2_per_point:g}%")
            out.append(rel)
            said.append(f"{c.text} -> {rel.text}")
            if agreement_samples:
                floor = max(0.0, 1.0 - max(pts / 100, 2 / agreement_samples))
                agree = Constraint("agreement", ">=", floor, f"agreement>={100 * floor:.4g}%")
                out.append(agree)
                said[-1] += f" and {agree.text}"
        if not said:
            return self
        mapping = ("no labelled data, so the accuracy budget is judged by fidelity to the FP32 parent: "
                   + "; ".join(said) + f" (relative L2 of the outputs: {100 * rel_l2_per_point:g} % per point "
                   "of accuracy allowed" + ("; top-1 agreement counted because the parent's predictions are "
                                            "diverse)" if agreement_samples else
                                            "; top-1 agreement not counted: the parent's predictions are not "
                                            "diverse enough to mean anything)"))
        return dataclasses.replace(self, constraints=tuple(out), mapping=mapping)

    def check(self, metrics: Mapping[str, float | None]) -> list[Violation]:
        out = []
        for c in self.constraints:
            v = metrics.get(c.key)
            if v is None or not c.holds(float(v)):
                out.append(Violation(c, None if v is None else float(v)))
        return out

    def shortfall(self, metrics: Mapping[str, float | None]) -> float:
        """Sum of relative excesses: 0 when feasible; ranks best-effort candidates when none is."""
        return sum(min(v.relative, 1e6) for v in self.check(metrics))

    def allowed_drop_pts(self) -> float | None:
        """The tightest ``accuracy_drop<=N%`` of this budget in percentage points (None when it has none)."""
        limits = [c.limit for c in self.constraints if c.metric == "accuracy_drop"]
        return min(limits) if limits else None

    @property
    def text(self) -> str:
        terms = [c.text for c in self.constraints] + [f"{m}<=none" for m in self.removed]
        return ", ".join(terms) or "(no constraint)"

    def to_dict(self) -> dict[str, object]:
        return {"text": self.text, "constraints": [c.to_dict() for c in self.constraints],
                "removed": list(self.removed), "mapping": self.mapping or None,
                "objective": {"metric": self.objective.metric, "key": self.objective.key,
                              "goal": self.objective.describe()}}


def _removed(term: str) -> str | None:
    """The metric of a ``METRIC<=none`` term (the user switches that constraint off), else None."""
    m = _TERM.match(term.strip())
    if m and m.group(3).strip().lower() == "none" and m.group(1).lower() in METRICS:
        return m.group(1).lower()
    return None


def parse_constraint(term: str) -> Constraint:
    text = term.strip()
    m = _TERM.match(text)
    if not m or not m.group(3):
        raise BudgetError(f"cannot read budget term {text!r}; write METRIC<=VALUE UNIT, e.g. p50<=5ms, "
                          "size<=2MB, accuracy_drop<=1%")
    name, op, raw = m.group(1).lower(), m.group(2), m.group(3)
    if name not in METRICS:
        raise BudgetError(f"unknown budget metric {name!r} in {text!r}{_did_you_mean(name, METRICS)}; "
                          f"known: {', '.join(sorted(METRICS))}")
    if op is None:
        raise BudgetError(f"budget term {text!r} needs a comparison (<=, <, >=, >), e.g. {name}<={raw}")
    if op in ("==", "="):
        raise BudgetError(f"budget term {text!r}: a measurement never meets an exact value; "
                          f"use {name}<={raw} or {name}>={raw}")
    op = {"=<": "<=", "=>": ">="}.get(op, op)
    _, kind, _, _ = METRICS[name]
    return Constraint(name, op, parse_value(raw, kind, context=text), text.replace(" ", ""))


def parse_value(raw: str, kind: str, context: str = "") -> float:
    """A number with a unit of ``kind`` in that kind's canonical unit."""
    where = f" in {context!r}" if context else ""
    m = _VALUE.match(raw.strip())
    if not m:
        raise BudgetError(f"{raw!r}{where} is not a number with a unit; e.g. 5ms, 2MB, 1%, 0.5mJ")
    number, unit = float(m.group(1)), m.group(2).strip()
    table = UNITS[kind]
    key = unit.lower()  # units are case-insensitive: MB == mb, mJ == mj
    if key not in table:
        units = ", ".join(u or "(none)" for u in table)
        if not unit:
            raise BudgetError(f"{raw!r}{where} has no unit; add one of: {units}")
        raise BudgetError(f"unknown unit {unit!r}{where}; use one of: {units}")
    value = number * table[key]
    if value < 0 or not math.isfinite(value):
        raise BudgetError(f"{raw!r}{where} must be a finite value >= 0")
    return value


def parse_duration(text: str | float | None) -> float | None:
    """Seconds from ``"90s"``, ``"10m"``, ``"1h30m"`` (a bare number is refused: say the unit)."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(h|m|min|s|sec)", text.strip().lower())
    rebuilt = "".join(n + u for n, u in parts)
    if not parts or rebuilt != re.sub(r"\s+", "", text.strip().lower()):
        raise BudgetError(f"cannot read the time budget {text!r}; write e.g. 90s, 10m or 1h30m")
    seconds = sum(float(n) * {"h": 3600, "m": 60, "min": 60, "s": 1, "sec": 1}[u] for n, u in parts)
    if seconds <= 0:
        raise BudgetError(f"the time budget must be positive, got {text!r}")
    return seconds


def fmt(value: float, kind: str) -> str:
    """A canonical-unit value for humans: '5.20 ms', '1.91 MiB', '0.50 mJ', '97.5 %', '0.8 pts'."""
    if kind == "time":
        return f"{value * 1e3:.1f} µs" if value < 0.1 else f"{value:.2f} ms"
    if kind == "bytes":
        for unit, div in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
            if value >= div:
                return f"{value / div:.2f} {unit}"
        return f"{int(value)} B"
    if kind == "energy":
        for unit, mul in (("J", 1), ("mJ", 1e3), ("µJ", 1e6), ("nJ", 1e9)):
            if value * mul >= 1 or unit == "nJ":
                return f"{value * mul:.3g} {unit}"
    if kind == "fraction":
        return f"{100 * value:.2f} %"
    if kind == "points":
        return f"{value:.2f} pts"
    if kind == "rate":
        return f"{value:,.0f}/s"
    return f"{value:,.0f}"


def _did_you_mean(name: str, known: object) -> str:
    close = difflib.get_close_matches(name, list(known), n=2, cutoff=0.5)  # type: ignore[call-overload]
    return f" (did you mean {' or '.join(close)}?)" if close else ""
