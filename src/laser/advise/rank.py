"""One row per device: the precision it would run the model at, whether it can (formats, ops, memory), the
predicted figures at the batch, and the budget terms it fails; then the ranking."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from laser.advise.budget import Term
from laser.advise.catalog import PEAK_KEY, Device
from laser.advise.cost import BYTES_PER_ELEMENT, Efficiency, GraphCost, Prediction, predict

ROOFLINE = ("roofline model: Williams, Waterman, Patterson, 'Roofline: an insightful visual performance model "
            "for multicore architectures', CACM 52(4), 2009, https://doi.org/10.1145/1498765.1498785")
ESTIMATED = "estimated (roofline, vendor peak × fitted efficiency)"
PRECISION_CHOICES = ("model", "best", "fp32", "fp16", "int8")


@dataclass(frozen=True)
class Row:
    device: Device
    precision: str | None
    prediction: Prediction | None
    figures: dict[str, float | None]  # p50_ms, throughput_per_s, joules_per_inference, gops_per_joule, watts, price_usd
    problems: tuple[str, ...]  # why it cannot run the model (not deployable), or why it was not predicted
    violations: tuple[str, ...]  # budget terms it fails, with the figure
    notes: tuple[str, ...]
    label: str
    measured: dict[str, Any] | None = None  # this machine: measured time, prediction error

    @property
    def meets(self) -> bool:
        return self.prediction is not None and not self.problems and not self.violations

    def to_dict(self, cost: GraphCost | None = None) -> dict[str, Any]:
        p = self.prediction
        return {"device": self.device.id, "name": self.device.name, "kind": self.device.kind, "label": self.label,
                "precision": self.precision, "meets_budget": self.meets, "deployable": not self.problems,
                "problems": list(self.problems), "fails": list(self.violations), "notes": list(self.notes),
                **self.figures,
                "bound": None if p is None else {"compute_bound_ops": p.compute_bound_ops,
                                                 "memory_bound_ops": p.memory_bound_ops,
                                                 "compute_ms": 1e3 * p.compute_s, "memory_ms": 1e3 * p.memory_s,
                                                 "overhead_ms": 1e3 * p.overhead_s,
                                                 "memory_modelled": p.memory_modelled,
                                                 **({"top_ops": p.top_ops(cost)} if cost is not None else {})},
                "measured": self.measured, "runtime": self.device.runtime, "formats": list(self.device.formats),
                "figure_sources": {k: f.to_dict() for k, f in self.device.figures.items()},
                "sources": self.device.sources, "method": ROOFLINE}


def choose_precision(device: Device, wanted: str, model_precision: str) -> tuple[str | None, list[str]]:
    """(precision the device runs the model at, notes), or (None, [why not])."""
    stated = [p for p in device.precisions if device.value(PEAK_KEY[p]) is not None]
    if not stated:
        return None, [f"no peak throughput figure for {'/'.join(device.precisions)} in its spec sheet"]
    if wanted == "best":
        return max(stated, key=lambda p: device.peak_ops(p) or 0.0), []
    target = model_precision if wanted == "model" else wanted
    if target in stated:
        return target, []
    if wanted != "model":
        return None, [f"no {target} peak figure (it states {', '.join(stated)})"]
    low = min(stated, key=lambda p: BYTES_PER_ELEMENT[p])
    how = {"int8": "laser quantize", "fp16": "an FP16 export", "fp32": "the FP32 export of the model"}[low]
    return low, [f"runs {'/'.join(stated)} only: predicted for the model converted to {low} ({how}), not as given"]


def _problems(device: Device, cost: GraphCost, precision: str | None) -> list[str]:
    out = []
    if not device.formats:
        out.append(f"not deployable: its runtime ({device.runtime}) takes no format laser exports")
    if device.supported_ops is not None:
        missing = sorted(cost.op_types - device.supported_ops)
        if missing:
            out.append(f"not deployable: its compiler does not take op(s) {', '.join(missing)} "
                       f"(op list: {device.supported_ops_source})")
    scale = BYTES_PER_ELEMENT[precision or "fp32"] / BYTES_PER_ELEMENT.get(cost.precision, 4)
    weights, acts = cost.weight_bytes * scale, cost.peak_activation_bytes * scale
    storage, memory = device.value("storage_gb"), device.value("memory_gb")
    if storage is not None and weights > storage * 1e9:
        out.append(f"does not fit: weights need {weights / 1e6:.3g} MB at {precision}, storage holds {storage * 1e3:.3g} MB")
    need = acts if storage is not None else weights + acts
    if memory is not None and need > memory * 1e9:
        out.append(f"does not fit: needs ≥ {need / 1e6:.3g} MB of memory at {precision}, has {memory * 1e3:.3g} MB")
    return out


def row(device: Device, cost: GraphCost, eff: Efficiency, terms: Sequence[Term], wanted: str = "model",
        measured: dict[str, Any] | None = None) -> Row:
    precision, notes = choose_precision(device, wanted, cost.precision)
    problems = _problems(device, cost, precision)
    figures: dict[str, float | None] = {"p50_ms": None, "throughput_per_s": None, "joules_per_inference": None,
                                        "gops_per_joule": None, "watts": device.value("tdp_w"),
                                        "price_usd": device.value("price_usd")}
    pred = None
    if precision is None:
        problems += [f"not predicted: {n}" for n in notes]
        notes = []
    else:
        bw = device.value("bandwidth_gbs")
        pred = predict(cost, device.peak_ops(precision) or 0.0, bw * 1e9 if bw else None, eff, precision)
        seconds = measured["measured_ms"] / 1e3 if measured else pred.seconds
        figures["p50_ms"] = 1e3 * seconds
        figures["throughput_per_s"] = cost.batch / seconds
        if figures["watts"] is not None:
            joules = figures["watts"] * seconds / cost.batch
            figures["joules_per_inference"] = joules
            figures["gops_per_joule"] = cost.flops / cost.batch / joules / 1e9
        if not pred.memory_modelled:
            notes.append("no bandwidth figure: memory time not modelled (the prediction is a lower bound)")
    violations = tuple(v for t in terms if (v := t.check(figures[t.key])) is not None)
    label = ("measured (process CPU time per call, one thread); predicted alongside, error stated"
             if measured else ESTIMATED)
    if device.measured and not measured:
        label = "estimated (roofline, measured peak × fitted efficiency)"
    return Row(device, precision, pred, figures, tuple(problems), violations, tuple(notes), label, measured)


def rank(rows: Sequence[Row]) -> list[Row]:
    """Devices that meet the budget first (fastest first), then deployable ones that fail it, then the rest."""
    def key(r: Row) -> tuple[int, float]:
        group = 0 if r.meets else 1 if r.prediction is not None and not r.problems else \
            2 if r.prediction is not None else 3
        p50 = r.figures.get("p50_ms")
        return group, p50 if p50 is not None else math.inf

    return sorted(rows, key=key)
