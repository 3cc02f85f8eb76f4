"""Calibration: fit the cost model's efficiencies on what laser measures on this machine.

This machine's row in the catalog is built from one-core peaks measured here (``one_core_peaks``: FP32 and
INT8 matmul, memory copy). Models are exported to ONNX and run on onnxruntime with one intra-op thread; the
time of a call is its process CPU time (what the core spends on it: on a shared machine, wall time also
holds the time other processes had the core). Three parameters are fitted by grid search on the log
ratio predicted / measured over the fit set (default: digits-cnn at batch 1 and 16, ResNet-18 at 1 and 4):
compute efficiency, memory efficiency, per-op overhead. The held-out models (default: MobileNetV3-small
and a small BERT) are predicted with the fitted values and their error is stated.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from laser.advise.catalog import Device, Figure
from laser.advise.cost import Efficiency, GraphCost, arrays, graph_cost, predict
from laser.artifact import Artifact
from laser.errors import ConfigError, LaserError

log = logging.getLogger(__name__)

FIT_SET: tuple[tuple[str, tuple[int, ...]], ...] = (("digits-cnn", (1, 16)), ("resnet18", (1, 4)))
HELD_OUT: tuple[tuple[str, tuple[int, ...]], ...] = (("mobilenet_v3_small", (1,)), ("bert-small", (1,)))
# The advisor's stated accuracy on this machine: predictions within this factor of the measurement.
STATED_FACTOR = 2.0
BERT_SMALL = {"classes": 2, "vocab_size": 1000, "hidden": 256, "layers": 4, "heads": 4, "intermediate": 1024,
              "max_length": 128}
MACHINE_ID = "this-machine"


@dataclass(frozen=True)
class Point:
    """One model at one batch size, measured on this machine."""

    model: str
    batch: int
    role: str  # "fit" | "held-out" | "target"
    cost: GraphCost
    measured_s: float  # process CPU time per call, one thread
    wall_p50_s: float

    def predicted_s(self, machine: Device, eff: Efficiency) -> float:
        return predict(self.cost, machine.peak_ops(self.cost.precision) or 0.0, bandwidth(machine), eff,
                       self.cost.precision).seconds


@dataclass(frozen=True)
class Calibration:
    machine: Device
    efficiency: Efficiency
    points: tuple[Point, ...]

    def errors(self) -> list[dict[str, Any]]:
        out = []
        for p in self.points:
            pred = p.predicted_s(self.machine, self.efficiency)
            out.append({"model": p.model, "batch": p.batch, "role": p.role, "predicted_ms": 1e3 * pred,
                        "measured_ms": 1e3 * p.measured_s, "measured_wall_p50_ms": 1e3 * p.wall_p50_s,
                        "error_pct": 100 * (pred / p.measured_s - 1),
                        "within_stated_factor": 1 / STATED_FACTOR <= pred / p.measured_s <= STATED_FACTOR})
        return out

    def worst_error_pct(self, role: str) -> float | None:
        errs = [abs(e["error_pct"]) for e in self.errors() if e["role"] == role]
        return max(errs) if errs else None

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.machine.to_dict(), "efficiency": self.efficiency.to_dict(), "points": self.errors(),
                "fit_error_pct": self.worst_error_pct("fit"), "held_out_error_pct": self.worst_error_pct("held-out"),
                "stated_factor": STATED_FACTOR,
                "method": "measured: process CPU time per onnxruntime call (one intra-op thread) after warm-up; "
                          "fitted: grid search minimising Σ log²(predicted / measured) over the fit points"}


def bandwidth(device: Device) -> float | None:
    v = device.value("bandwidth_gbs")
    return v * 1e9 if v else None


def bert_small() -> Artifact:
    """A BERT encoder classifier (hidden 256, 4 layers, sequence 128) with seeded random weights."""
    import torch

    from laser.models.text import bert_classifier, text_spec

    torch.manual_seed(0)
    module = bert_classifier(**BERT_SMALL).eval()
    return Artifact.from_module(module, name="bert-small", task="text-classification",
                                spec=text_spec(BERT_SMALL["max_length"], BERT_SMALL["vocab_size"], BERT_SMALL["classes"]),
                                architecture={"factory": "laser.models.text:bert_classifier", "kwargs": BERT_SMALL})


def model(name: str) -> Artifact:
    """A calibration model by name, with random weights (the timing does not depend on their values)."""
    if name == "bert-small":
        return bert_small()
    from laser.loader import load

    return load(name, random_weights=True)


def to_onnx(artifact: Artifact) -> Artifact:
    """The artifact as ONNX: as is, or exported (TorchScript-based exporter first: several times faster to
    export than the dynamo one; the dynamo exporter when it fails)."""
    if artifact.format == "onnx":
        return artifact
    if artifact.format != "torch":
        raise ConfigError(f"laser advise reads ONNX graphs: {artifact.name!r} is a {artifact.format} artifact; pass "
                          "the torch model (a catalog name, a factory) or its ONNX export")
    from laser.export import export

    try:
        return export(artifact, to="onnx", exporter="legacy")
    except LaserError as exc:
        log.info("legacy ONNX export of %s failed (%s); trying the dynamo exporter", artifact.name, exc)
        return export(artifact, to="onnx", exporter="dynamo")


def measure_point(onnx_art: Artifact, batch: int, role: str, seconds: float = 0.3) -> Point:
    """Cost graph and one-thread onnxruntime time of ``onnx_art`` at ``batch``."""
    from laser.measure.latency import latency
    from laser.runtime import run

    cost = graph_cost(onnx_art.model_file, onnx_art.spec, batch)
    with run(onnx_art, backend="onnxruntime", threads=1) as runner:
        lat = latency(runner, batch_size=batch, warmup=3, warmup_seconds=0.1, min_iters=5, max_seconds=seconds)
    return Point(onnx_art.name, batch, role, cost, lat.cpu_seconds / lat.iters, lat.p50_ms / 1e3)


def this_machine() -> Device:
    """This machine as a catalog device: one core's peaks and bandwidth measured here, its power estimated."""
    from laser.measure.energy import watts_per_core
    from laser.measure.hardware import cpu_info, one_core_peaks

    peaks = one_core_peaks()
    cpu = cpu_info()
    watts, how = watts_per_core(cpu.get("model", ""))
    figures = {"fp32_tflops": Figure(peaks["fp32"]["gops"] / 1e3, "measured", peaks["fp32"]["method"]),
               "bandwidth_gbs": Figure(peaks["bandwidth"]["gbs"], "measured", peaks["bandwidth"]["method"]),
               "tdp_w": Figure(watts, "estimated", f"one busy core: {how}")}
    if "int8" in peaks:
        figures["int8_tops"] = Figure(peaks["int8"]["gops"] / 1e3, "measured", peaks["int8"]["method"])
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
        figures["memory_gb"] = Figure(ram, "measured", "os.sysconf: physical pages × page size")
    except (ValueError, OSError, AttributeError):
        pass
    return Device(id=MACHINE_ID, name=f"this machine: {cpu.get('model', 'CPU')}, one core (measured)",
                  kind="CPU (this machine)", runtime="onnxruntime CPU, one intra-op thread",
                  formats=("onnx", "ort", "torch", "torchscript"), precisions=("fp32", "int8") if "int8" in peaks
                  else ("fp32",), figures=figures, measured=True)


def fit(points: Sequence[Point], machine: Device) -> Efficiency:
    """Compute and memory efficiency and per-op overhead minimising Σ log²(predicted / measured)."""
    if not points:
        raise ConfigError("calibration needs at least one fit point (a model measured on this machine)")
    ec = np.geomspace(0.02, 2.0, 50)
    em = np.geomspace(0.02, 4.0, 50)
    oo = np.concatenate([[0.0], np.geomspace(1e-7, 1e-3, 50)])
    loss = np.zeros((ec.size, em.size, oo.size))
    for p in points:
        flops, moved = arrays(p.cost, p.cost.precision)
        a = flops / (machine.peak_ops(p.cost.precision) or math.inf)
        m = moved / (bandwidth(machine) or math.inf)
        roof = np.maximum(a[:, None, None] / ec[None, :, None], m[:, None, None] / em[None, None, :]).sum(0)
        total = roof[:, :, None] + len(p.cost.ops) * oo[None, None, :]
        loss += np.log(np.maximum(total, 1e-12) / p.measured_s) ** 2
    i, j, k = np.unravel_index(int(np.argmin(loss)), loss.shape)
    names = ", ".join(f"{p.model}@{p.batch}" for p in points)
    return Efficiency(compute=float(ec[i]), memory=float(em[j]), overhead_s=float(oo[k]),
                      method=f"fitted on this machine ({names}): grid search over compute efficiency "
                             "0.02-2, memory efficiency 0.02-4, per-op overhead 0-1000 µs, minimising "
                             "Σ log²(predicted / measured CPU time per call)")


@functools.cache
def calibrate(fit_set: tuple[tuple[str, tuple[int, ...]], ...] = FIT_SET,
              held_out: tuple[tuple[str, tuple[int, ...]], ...] = HELD_OUT, seconds: float = 0.3) -> Calibration:
    """Measure this machine and the calibration models, fit, predict the held-out ones (once per process)."""
    machine = this_machine()
    points: list[Point] = []
    for role, models in (("fit", fit_set), ("held-out", held_out)):
        for name, batches in models:
            art = exported(name)
            points.extend(measure_point(art, b, role, seconds) for b in batches)
    eff = fit([p for p in points if p.role == "fit"], machine)
    return Calibration(machine, eff, tuple(points))


@functools.cache
def exported(name: str) -> Artifact:
    """A calibration model's ONNX export (once per process)."""
    return to_onnx(model(name))
