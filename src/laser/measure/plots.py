"""Report plots as PNG files (matplotlib, headless Agg backend).

- pareto.png: latency p50 (x, log) vs accuracy (y); marker area proportional to bytes on disk;
  the Pareto front (no other point both faster and more accurate) joined by a line.
- latency.png: per-query latency distributions (one box + points per artifact, log scale).
- robustness.png: accuracy vs ε for FGSM (solid) and PGD (dashed), one colour per artifact.
- corruptions.png: accuracy vs severity per corruption, one panel per corruption.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from laser.errors import require

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def _plt() -> Any:
    matplotlib = require("matplotlib", "report")
    matplotlib.use("Agg", force=True)  # no display here; never open a window
    import matplotlib.pyplot as plt

    return plt


def accuracy_key(report: Any) -> str | None:
    """The accuracy metric shared by all entries, preferring top1 / accuracy / miou / map_50_95."""
    common = None
    for a in report.artifacts:
        keys = {k for k, v in (a.get("accuracy") or {}).items() if isinstance(v, float)}
        common = keys if common is None else common & keys
    for k in ("top1", "accuracy", "miou", "map_50_95", "top1_agreement"):
        if common and k in common:
            return k
    return None


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (another point with lower-or-equal x and higher-or-equal y,
    strictly better in one), sorted by x."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def pareto(report: Any, path: Path) -> Path | None:
    key = accuracy_key(report)
    if key is None or len(report.artifacts) < 2:  # one dot is no trade-off: the table says it all
        return None
    plt = _plt()
    arts = report.artifacts
    pts = [(a["latency"]["p50_ms"], a["accuracy"][key]) for a in arts]
    sizes = [a["size"]["bytes"] for a in arts]
    biggest = max(sizes) or 1
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for i, (a, (x, y)) in enumerate(zip(arts, pts)):
        area = 80 + 1400 * sizes[i] / biggest  # marker area in pt², proportional to bytes on disk
        ax.scatter([x], [100 * y], s=area, color=COLORS[i % len(COLORS)], alpha=0.5, edgecolors="black",
                   linewidths=0.8, label=f"{i + 1}: {report.label(a)} ({sizes[i] / 1024:.0f} KiB)")
        # The number, not the name, sits on the marker: names of near-identical points would overlap.
        ax.annotate(str(i + 1), (x, 100 * y), ha="center", va="center", fontsize=8, fontweight="bold")
    front = pareto_front(pts)
    if len(front) > 1:
        ax.plot([pts[i][0] for i in front], [100 * pts[i][1] for i in front], "k--", lw=1, label="Pareto front")
    ax.set_xscale("log")
    xs = [p[0] for p in pts]
    ax.set_xlim(min(xs) / 1.6, max(xs) * 1.6)
    ys = [100 * p[1] for p in pts]
    pad = max(0.5, 0.3 * (max(ys) - min(ys)))
    top = min(max(ys) + pad, 100.0) if max(ys) < 99.9 else 100.4  # accuracy ends at 100 %
    ax.set_ylim(max(0.0, min(ys) - 2 * pad), top)
    from matplotlib.ticker import LogLocator

    ax.xaxis.set_major_formatter(_plain_formatter())
    ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))  # label 0.02, 0.05, 0.2 ... between decades
    ax.xaxis.set_minor_formatter(_plain_formatter())
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("latency p50, batch 1 (ms, log scale) — lower is better")
    ax.set_ylabel(f"{key} (%) — higher is better")
    ax.set_title("Latency vs accuracy (marker area ∝ bytes on disk)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", markerscale=0.35)
    return _save(fig, plt, path)


def latency_distribution(report: Any, path: Path) -> Path | None:
    arts = [a for a in report.artifacts if a["latency"].get("samples_ms")]
    if not arts:
        return None
    plt = _plt()
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.7 * len(arts)), dpi=110)
    data = [a["latency"]["samples_ms"] for a in arts]
    ax.boxplot(data, orientation="horizontal", widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)
    for i, d in enumerate(data, 1):  # every sample as a faint dot, jittered vertically
        ax.scatter(d, i + rng.uniform(-0.18, 0.18, len(d)), s=4, alpha=0.35, color=COLORS[(i - 1) % len(COLORS)])
        p50 = arts[i - 1]["latency"]["p50_ms"]
        ax.annotate(f"p50 {p50:.3g} ms", (p50, i + 0.3), fontsize=7, ha="center")
    ax.set_yticks(range(1, len(arts) + 1), [report.label(a) for a in arts], fontsize=8)
    low, high = min(min(d) for d in data), max(max(d) for d in data)
    log = low > 0 and high / low > 10  # within one decade a log axis only crowds sci-notation minor ticks
    if log:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(_plain_formatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    scale = "log scale" if log else "linear scale"
    ax.set_xlabel(f"latency per query (ms, {scale}); box = quartiles, whiskers = 1.5 IQR")
    ax.set_title(f"Latency distribution, batch {arts[0]['latency']['batch_size']} (median run)")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    return _save(fig, plt, path)


def robustness_curve(report: Any, path: Path) -> Path | None:
    arts = [a for a in report.artifacts if (a.get("robustness") or {}).get("fgsm")]
    if not arts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for i, a in enumerate(arts):
        c = COLORS[i % len(COLORS)]
        for attack, style in (("fgsm", "-o"), ("pgd", "--s")):
            curve = a["robustness"].get(attack) or {}
            eps = sorted(curve, key=float)
            ax.plot([float(e) for e in eps], [100 * curve[e] for e in eps], style, color=c, ms=4,
                    label=f"{report.label(a)} {attack.upper()}")
    ax.set_xscale("symlog", linthresh=0.005)
    eps_all = sorted({float(e) for a in arts for g in ("fgsm", "pgd") for e in (a["robustness"].get(g) or {})})
    ax.set_xticks(eps_all, [f"{e:g}" for e in eps_all])  # tick exactly the ε values measured
    ax.xaxis.set_minor_locator(_no_ticks())
    ax.set_xlabel("ε (L∞, pixel units on [0, 1]; symlog)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 102)
    ax.set_title("Robustness: accuracy under FGSM and PGD")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, plt, path)


def corruption_curves(report: Any, path: Path) -> Path | None:
    arts = [a for a in report.artifacts if (a.get("robustness") or {}).get("corruptions")]
    if not arts:
        return None
    plt = _plt()
    names = sorted({k.partition("@")[0] for a in arts for k in a["robustness"]["corruptions"]})
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), dpi=110, sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        for i, a in enumerate(arts):
            rob = a["robustness"]
            pts = sorted((int(k.partition("@")[2]), v) for k, v in rob["corruptions"].items() if k.startswith(name + "@"))
            ax.plot([0] + [s for s, _ in pts], [100 * rob["clean"]] + [100 * v for _, v in pts], "-o", ms=3,
                    color=COLORS[i % len(COLORS)], label=report.label(a))
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.set_xlabel("severity (0 = clean)")
        ax.set_ylim(0, 102)
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][-1].legend(fontsize=7)
    return _save(fig, plt, path)


def _no_ticks() -> Any:
    from matplotlib.ticker import NullLocator

    return NullLocator()


def _plain_formatter() -> Any:
    """Tick labels as plain numbers (0.03, 0.2) instead of 3×10⁻²."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: f"{v:g}")


def _save(fig: Any, plt: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


PLOTS = {
    "pareto.png": pareto,
    "latency.png": latency_distribution,
    "robustness.png": robustness_curve,
    "corruptions.png": corruption_curves,
}


def write_plots(report: Any, directory: Path) -> dict[str, Path]:
    """Every plot that has data, as PNG files in ``directory``: file name -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, fn in PLOTS.items():
        p = fn(report, directory / name)
        if p is not None:
            out[name] = p
    return out
