"""The advice for people: the ranked table with reasons and sources, the hardware table of the measured
machine (throughput, peak / effective TFLOP/s, power, GOP/J), and an HTML page with the latency-vs-power
and latency-vs-price scatter plots (Pareto front marked)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from laser.advise.calibrate import STATED_FACTOR
from laser.advise.rank import ESTIMATED, ROOFLINE
from laser.text import table


def _n(v: float | None, spec: str = ".3g") -> str:
    return "—" if v is None else format(v, spec)


def _cells(advice: Any) -> list[list[str]]:
    out = []
    for i, r in enumerate(advice.rows, 1):
        f = r.figures
        j = f.get("joules_per_inference")
        out.append([str(i), r.device.name, r.device.kind, r.precision or "—", _n(f["p50_ms"]),
                    _n(f["throughput_per_s"], ",.0f"), _n(None if j is None else 1e3 * j), _n(f["gops_per_joule"]),
                    _n(f["watts"]), "—" if f["price_usd"] is None else f"${f['price_usd']:,.0f}",
                    "yes" if r.meets else "no", "measured" if r.measured else "estimated"])
    return out


HEADS = ["#", "device", "kind", "prec", "p50 ms", "/s", "mJ/inf", "GOP/J", "W", "price", "meets", "figure"]


def _table(heads: list[str], cells: list[list[str]]) -> str:
    return table(cells, heads)


def text(advice: Any) -> str:
    cost = advice.cost
    lines = [f"laser advise: {advice.model} at batch {advice.batch} — {cost.flops / 1e9:.3g} GFLOP per call "
             f"(= 2 × {cost.macs:,} MACs, counted on the ONNX graph), {len(cost.ops)} ops, {cost.precision}, "
             f"weights {cost.weight_bytes / 1e6:.3g} MB; budget: {advice.budget or '(none)'}", ""]
    lines.append(_table(HEADS, _cells(advice)))
    lines.append("")
    first = next((r for r in advice.rows if r.prediction is not None), None)
    if first is not None and first.prediction is not None:
        top = first.prediction.top_ops(cost, 3)
        lines += [f"Costliest ops on {first.device.id} (predicted): " + ", ".join(
            f"{t['op']} ({t['type']}) {t['ms']:.3g} ms, {t['bound']}-bound" for t in top), ""]
    for i, r in enumerate(advice.rows, 1):
        why = [*r.problems, *(f"fails {v}" for v in r.violations), *r.notes]
        if why:
            lines.append(f"{i:>2}. {r.device.id}: " + "; ".join(why))
    lines += ["", f"Figures: {ESTIMATED} unless marked measured; energy = power figure × predicted time "
              "(an upper bound: the device at its full power for the whole call). The per-op overhead is the one fitted on "
              "this machine's CPU runtime: where a call costs more per op (GPU kernel launches, an accelerator's host "
              "link), small batches run slower than predicted.", f"Method: {ROOFLINE}", ""]
    lines.append(calibration_text(advice))
    lines += ["", "Sources (spec sheets; kind and note of each figure in --json):"]
    lines += [f"  {r.device.id}: {' '.join(r.device.sources)}" for r in advice.rows if r.device.sources]
    return "\n".join(lines)


def calibration_text(advice: Any) -> str:
    cal = advice.calibration
    eff = cal.efficiency
    m = cal.machine
    out = [f"Calibration on {m.name}: peak FP32 {m.value('fp32_tflops') * 1e3:.0f} GFLOP/s, "
           + (f"INT8 {m.value('int8_tops') * 1e3:.0f} GOP/s, " if m.value("int8_tops") else "")
           + f"bandwidth {m.value('bandwidth_gbs'):.3g} GB/s (measured); fitted compute efficiency "
           f"{eff.compute:.3g}, memory efficiency {eff.memory:.3g}, per-op overhead {eff.overhead_s * 1e6:.3g} µs"]
    points = [[e["role"], e["model"], str(e["batch"]), f"{e['predicted_ms']:.3g}", f"{e['measured_ms']:.3g}",
               f"{e['error_pct']:+.0f} %"] for e in cal.errors()]
    if advice.target:
        t = advice.target
        points.append(["this model", t["model"], str(t["batch"]), f"{t['predicted_ms']:.3g}", f"{t['measured_ms']:.3g}",
                       f"{t['error_pct']:+.0f} %"])
    out.append(_table(["role", "model", "batch", "predicted ms", "measured ms", "error"], points))
    held = cal.worst_error_pct("held-out")
    out.append(f"Held-out error (worst): {_n(held, '.0f')} %; stated accuracy: within ×/÷ {STATED_FACTOR:g} of the measurement "
               "(measured: process CPU time per onnxruntime call, one thread; load on this machine inflates wall time, "
               "not CPU time)")
    return "\n".join(out)


def hardware_table(advice: Any) -> str:
    """The seeds' hardware table for the measured machine: ResNet-18 and the model given."""
    cal = advice.calibration
    peak = cal.machine.value("fp32_tflops") or 0.0
    watts = cal.machine.value("tdp_w")
    rows = []
    best: dict[str, Any] = {}
    for p in cal.points:
        if p.model == "resnet18" and p.batch / p.measured_s > best.get("rate", 0):
            best = {"model": "resnet18", "batch": p.batch, "flops": p.cost.flops, "s": p.measured_s,
                    "rate": p.batch / p.measured_s}
    entries = [best] if best else []
    if advice.target:
        t = advice.target
        entries.append({"model": t["model"], "batch": t["batch"], "flops": advice.cost.flops,
                        "s": t["measured_ms"] / 1e3, "rate": t["batch"] / (t["measured_ms"] / 1e3)})
    for e in entries:
        eff_tf = e["flops"] / e["s"] / 1e12
        rows.append([cal.machine.name, f"{e['model']} (batch {e['batch']})", f"{e['rate']:,.1f}", f"{peak:.3g}",
                     f"{eff_tf:.3g}", f"{100 * eff_tf / peak:.0f} %" if peak else "—", _n(watts),
                     _n(eff_tf * 1e3 / watts if watts else None)])
    heads = ["platform", "model", "throughput (img/s)", "peak TFLOP/s", "effective TFLOP/s", "% of peak",
             "power W", "GOP/J"]
    return (_table(heads, rows) + "\n\nmeasured: throughput = batch / process CPU time per call (one thread); peak: "
            "one-core torch.mm micro-benchmark; effective = FLOPs per call / time; power estimated "
            f"({cal.machine.figures['tdp_w'].source}); GOP/J = effective GOP/s / power\n\n"
            + _table([h.replace("TFLOP/s", "TOP/s") for h in heads], predicted_rows(advice))
            + f"\n\n{ESTIMATED}, for {advice.model} at batch {advice.batch}: peak at the precision the device runs it "
            "(TOP/s: 10^12 FP32/FP16 FLOPs or INT8 ops per second); power from the spec sheet")


def predicted_rows(advice: Any) -> list[list[str]]:
    """The same columns for every catalog device the model was predicted on."""
    out = []
    for r in advice.rows:
        if r.prediction is None or r.device.measured:
            continue
        peak = (r.device.peak_ops(r.precision or "fp32") or 0.0) / 1e12
        eff_tf = advice.cost.flops / (r.figures["p50_ms"] / 1e3) / 1e12
        watts = r.figures["watts"]
        out.append([r.device.name, f"{advice.model} (batch {advice.batch}, {r.precision})",
                    f"{r.figures['throughput_per_s']:,.1f}", f"{peak:.3g}", f"{eff_tf:.3g}",
                    f"{100 * eff_tf / peak:.0f} %" if peak else "—", _n(watts),
                    _n(eff_tf * 1e3 / watts if watts else None)])
    return out


def _scatter(advice: Any, key: str, label: str) -> bytes | None:
    from laser.measure.plots import _plt, pareto_front

    pts = [(r.figures["p50_ms"], r.figures[key], r) for r in advice.rows
           if r.figures["p50_ms"] is not None and r.figures[key] is not None]
    if not pts:
        return None
    front = set(pareto_front([(x, -y) for x, y, _ in pts]))  # lower latency and lower power/price both win
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    for i, (x, y, r) in enumerate(pts):
        on = i in front
        ax.scatter(x, y, s=70 if on else 40, marker="s" if r.measured else "o", zorder=3,
                   color=("#2ca02c" if r.meets else "#1f77b4") if on else "#bbbbbb", edgecolors="black" if on else "#888")
        ax.annotate(r.device.id + (" (not deployable)" if r.problems else ""), (x, y), xytext=(5, 4),
                    textcoords="offset points", fontsize=7)
    line = sorted((pts[i][0], pts[i][1]) for i in front)
    if len(line) > 1:
        ax.step([p[0] for p in line], [p[1] for p in line], where="post", color="#444", lw=0.8, alpha=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"p50 latency at batch {advice.batch} (ms, log; predicted unless the marker is a square)")
    ax.set_ylabel(label)
    ax.set_title(f"{advice.model}: latency vs {label.split(' (')[0]} (Pareto front in colour; green: meets budget)")
    ax.grid(True, which="both", alpha=0.25)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def render(advice: Any) -> str:
    from laser.measure.html import CSS

    e = html.escape
    figs = []
    for key, label in (("watts", "power (W, spec sheet)"), ("price_usd", "price (US$, spec sheet)")):
        png = _scatter(advice, key, label)
        if png:
            figs.append(f"<figure><img alt='latency vs {e(key)}' src='data:image/png;base64,"
                        f"{base64.b64encode(png).decode()}'><figcaption>p50 vs {e(label)}</figcaption></figure>")
    head = "".join(f"<th>{e(h)}</th>" for h in HEADS)
    body = []
    for cells, r in zip(_cells(advice), advice.rows):
        tds = "".join(f"<td class='l'>{e(c)}</td>" if i in (1, 2) else f"<td>{e(c)}</td>" for i, c in enumerate(cells))
        why = "; ".join([*r.problems, *(f"fails {v}" for v in r.violations), *r.notes]) or "meets every term"
        links = " ".join(f"<a href='{e(u)}'>{e(u.split('/')[2])}</a>" for u in r.device.sources) or "measured here"
        body.append(f"<tr>{tds}</tr><tr><td></td><td class='l muted' colspan='{len(HEADS) - 1}'>{e(why)} · "
                    f"sources: {links}</td></tr>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>laser advise: {e(advice.model)}</title><style>{CSS}</style></head><body><main>
<h1>Which hardware for {e(advice.model)}?</h1>
<div class="sub">batch {advice.batch} · budget {e(advice.budget or '(none)')} · {advice.cost.flops / 1e9:.3g} GFLOP per call ·
figures <span class="tag estimated">{e(ESTIMATED)}</span> unless <span class="tag measured">measured</span></div>
<h2>Plots</h2><div class="plots">{''.join(figs) or '<p class="muted">no device has both figures</p>'}</div>
<h2>Ranking</h2><table><tr>{head}</tr>{''.join(body)}</table>
<h2>Calibration</h2><pre style="white-space:pre-wrap">{e(calibration_text(advice))}</pre>
<h2>Hardware table (measured machine)</h2><pre style="white-space:pre-wrap">{e(hardware_table(advice))}</pre>
<p class="muted">{e(ROOFLINE)}</p></main></body></html>
"""


def write_html(advice: Any, path: Path) -> Path:
    """The page at ``path`` (a directory gets advise.html), written beside and renamed: never half-written."""
    if path.suffix != ".html":
        path = path / "advise.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render(advice), encoding="utf-8")
    tmp.replace(path)
    return path
