"""The Pareto front over measured LASER figures, and its plot.

A candidate dominates another when it is at least as good on every axis and strictly better on one.
Axes: accuracy (higher is better), p50 latency, bytes on disk and energy per inference (lower is better).
An axis is used only when every candidate has a figure for it, so a missing measurement never
decides dominance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# metric key -> True when higher is better
AXES: dict[str, bool] = {"accuracy": True, "p50_ms": False, "bytes": False, "energy_j": False}


def axes_for(metrics: Sequence[Mapping[str, Any]]) -> list[str]:
    """The axes every candidate has a finite figure for."""
    return [k for k in AXES if metrics and all(_finite(m.get(k)) for m in metrics)]


def dominates(a: Mapping[str, Any], b: Mapping[str, Any], axes: Sequence[str]) -> bool:
    better = False
    for k in axes:
        x, y = (float(a[k]), float(b[k])) if AXES[k] else (-float(a[k]), -float(b[k]))
        if x < y:
            return False
        better = better or x > y
    return better


def front(metrics: Sequence[Mapping[str, Any]], axes: Sequence[str] | None = None) -> list[int]:
    """Indices of the non-dominated candidates, in input order."""
    axes = axes_for(metrics) if axes is None else list(axes)
    if not axes:
        return list(range(len(metrics)))
    return [i for i, m in enumerate(metrics)
            if not any(dominates(o, m, axes) for j, o in enumerate(metrics) if j != i)]


def dominated_by(metrics: Sequence[Mapping[str, Any]], i: int, axes: Sequence[str]) -> list[int]:
    """Indices of the candidates that dominate candidate ``i``."""
    return [j for j, o in enumerate(metrics) if j != i and dominates(o, metrics[i], axes)]


def plot(points: Sequence[Mapping[str, Any]], path: Path, *, title: str = "",
         p50_limit_ms: float | None = None, accuracy_floor: float | None = None,
         accuracy_label: str = "accuracy") -> Path:
    """Latency (x, log scale) vs accuracy (y), marker area by size; front in colour, dominated grey.

    ``points``: dicts with ``label``, ``p50_ms``, ``accuracy`` (fraction), ``bytes``, ``backend``,
    ``on_front``, ``feasible`` and ``winner``. Dashed lines show the budget's latency limit and accuracy floor.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [p for p in points if _finite(p.get("p50_ms")) and _finite(p.get("accuracy"))]
    fig, ax = plt.subplots(figsize=(10.5, 5.6), dpi=110)
    sizes = [float(p.get("bytes") or 0) for p in pts]
    biggest = max(sizes, default=1) or 1
    colours = {"torch": "#d62728", "torchscript": "#ff7f0e", "onnxruntime": "#1f77b4",
               "openvino": "#9467bd", "aoti": "#8c564b", "compiled": "#e377c2"}
    for p, size in zip(pts, sizes):
        area = 40 + 560 * math.sqrt(size / biggest)  # area grows with the square root: small ones stay visible
        x, y = p["p50_ms"], 100 * p["accuracy"]
        if p.get("on_front"):
            colour = colours.get(p.get("backend", ""), "#2ca02c")
            ax.scatter(x, y, s=area, color=colour, alpha=0.75, edgecolors="black", linewidths=0.8, zorder=3)
        else:
            ax.scatter(x, y, s=area, color="#bbbbbb", alpha=0.5, edgecolors="#888888", linewidths=0.5, zorder=2)
        if p.get("winner"):
            ax.scatter(x, y, s=260, marker="*", color="gold", edgecolors="black", linewidths=0.9, zorder=5)
    on_front = sorted((p for p in pts if p.get("on_front")), key=lambda p: p["p50_ms"])
    if len(on_front) > 1:  # staircase through the front in latency order
        best, xs, ys = -math.inf, [], []
        for p in on_front:
            best = max(best, 100 * p["accuracy"])
            xs.append(p["p50_ms"])
            ys.append(best)
        ax.step(xs, ys, where="post", color="#444444", linewidth=0.8, alpha=0.6, zorder=1)
    if p50_limit_ms is not None:
        ax.axvline(p50_limit_ms, color="#d62728", linestyle="--", linewidth=1,
                   label=f"budget: p50 ≤ {p50_limit_ms:g} ms")
    if accuracy_floor is not None:
        ax.axhline(100 * accuracy_floor, color="#2ca02c", linestyle="--", linewidth=1,
                   label=f"budget: {accuracy_label} ≥ {100 * accuracy_floor:.2f} %")
    if pts:
        from matplotlib.ticker import FuncFormatter, LogLocator

        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.autoscale_view()
    numbered = _label(ax, on_front)
    ax.set_xlabel("p50 latency, batch 1 (ms, measured, log scale)")
    ax.set_ylabel(f"{accuracy_label} (%)")
    ax.set_title(title or "Candidates: latency vs accuracy (marker area ∝ size on disk)")
    ax.grid(True, which="both", alpha=0.25)
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=c, label=f"front · {b}")
               for b, c in colours.items() if any(p.get("on_front") and p.get("backend") == b for p in pts)]
    handles.append(plt.Line2D([], [], marker="o", linestyle="", color="#bbbbbb", label="dominated"))
    handles.append(plt.Line2D([], [], marker="*", linestyle="", color="gold", markeredgecolor="black",
                              markersize=12, label="winner"))
    extra, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + extra + numbered, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _label(ax: Any, front: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Number the front's points (in latency order) on their markers; the names go to the legend, where
    they cannot collide however close the points are. Returns the legend entries."""
    import matplotlib.pyplot as plt

    entries = []
    for i, p in enumerate(front, 1):
        offset = (8, 8) if p.get("winner") else (0, 0)  # the winner's star covers its marker's centre
        ax.annotate(str(i), (p["p50_ms"], 100 * p["accuracy"]), xytext=offset, textcoords="offset points",
                    ha="center", va="center", fontsize=7, fontweight="bold", zorder=6,
                    bbox={"boxstyle": "circle,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7})
        entries.append(plt.Line2D([], [], marker=f"${i}$", linestyle="", color="black", markersize=6,
                                  label=p["label"] + (" (winner)" if p.get("winner") else "")))
    return entries


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(float(v))
