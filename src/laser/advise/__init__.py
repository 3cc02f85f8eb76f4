"""``laser.advise``: which hardware should run this model — predicted from the model's own ONNX graph, with
the cost model calibrated on what laser measures on this machine.

    advice = laser.advise.advise("resnet18", budget="p50<=10ms,power<=30W")
    print(advice.to_text())

Pieces: ``catalog`` (devices.toml: spec-sheet figures, each with its source), ``cost`` (per-op roofline +
per-op overhead on the graph), ``calibrate`` (fit on this machine, held-out error), ``budget``, ``rank``,
``report`` (table, JSON, hardware table, HTML page with latency-vs-power / latency-vs-price scatter).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from laser.advise import budget as budget_mod
from laser.advise.calibrate import Calibration, calibrate, measure_point, to_onnx
from laser.advise.catalog import Device, load
from laser.advise.cost import GraphCost, graph_cost
from laser.advise.rank import PRECISION_CHOICES, Row, choose_precision, rank, row
from laser.artifact import Artifact
from laser.errors import ConfigError


@dataclass(frozen=True)
class Advice:
    model: str
    batch: int
    cost: GraphCost
    rows: tuple[Row, ...]  # ranked
    calibration: Calibration
    budget: str
    precision: str
    target: dict[str, Any] | None  # the model measured on this machine at the batch

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "batch": self.batch, "budget": self.budget or None, "precision": self.precision,
                "graph": self.cost.summary(), "devices": [r.to_dict(self.cost) for r in self.rows],
                "calibration": self.calibration.to_dict(), "measured_here": self.target}

    def to_text(self) -> str:
        from laser.advise.report import text

        return text(self)

    def write_html(self, path: str | Path) -> Path:
        from laser.advise.report import write_html

        return write_html(self, Path(path))


def advise(model: Artifact | str, *, budget: str | None = None, batch: int = 1, catalog: str | Path | None = None,
           devices: list[Device] | None = None, precision: str = "model", calibration: Calibration | None = None,
           measure_here: bool = True) -> Advice:
    """Rank the catalog's devices (and this machine) for ``model`` at ``batch`` under ``budget``.

    ``catalog``: a devices TOML file (default: the one shipped with laser); ``devices`` overrides it.
    ``precision``: 'model' (the graph's own; int8-only devices are predicted for the quantized model and
    say so), 'best' (each device's fastest), or fp32 / fp16 / int8. ``calibration``: a fitted one (default:
    measured here, once per process). ``measure_here``: also measure the model on this machine.
    """
    if precision not in PRECISION_CHOICES:
        raise ConfigError(f"precision {precision!r} is unknown; use one of {PRECISION_CHOICES}")
    if not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch must be a positive integer, got {batch!r}")
    terms = budget_mod.parse(budget)
    catalog_devices = devices if devices is not None else load(catalog)  # bad input fails before measuring
    if isinstance(model, str):
        from laser.loader import load as load_model

        model = load_model(model)
    onnx_art = to_onnx(model)
    cost = graph_cost(onnx_art.model_file, onnx_art.spec, batch)
    cal = calibration or calibrate()
    target = None
    if measure_here:
        point = measure_point(onnx_art, batch, "target")
        predicted = point.predicted_s(cal.machine, cal.efficiency)
        target = {"model": model.name, "batch": batch, "measured_ms": 1e3 * point.measured_s,
                  "measured_wall_p50_ms": 1e3 * point.wall_p50_s, "predicted_ms": 1e3 * predicted,
                  "error_pct": 100 * (predicted / point.measured_s - 1),
                  "method": "measured: process CPU time per onnxruntime call, one intra-op thread"}
    here, _ = choose_precision(cal.machine, precision, cost.precision)
    rows = [row(cal.machine, cost, cal.efficiency, terms, precision,  # the measurement ran at the graph's precision
                measured=target if target and here == cost.precision else None)]
    rows += [row(d, cost, cal.efficiency, terms, precision) for d in catalog_devices]
    return Advice(model.name, batch, cost, tuple(rank(rows)), cal, budget or "", precision, target)


__all__ = ["Advice", "Device", "advise", "calibrate", "graph_cost", "load"]
