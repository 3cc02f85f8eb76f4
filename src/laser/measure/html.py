"""report.html: one self-contained page (inline CSS, plots embedded as data URIs), written next to
report.json and the plots as PNG files."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from laser.measure.plots import accuracy_key, write_plots
from laser.measure.table import hardware_line, rows

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px;overflow-wrap:anywhere}
h1{font-size:26px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid #d8dde3;padding-bottom:4px}
.sub{color:#57606a;margin-bottom:16px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:12px}
.card{background:#fff;border:1px solid #d8dde3;border-radius:8px;padding:12px 14px}
.card h3{margin:0 0 8px;font-size:15px}.card .fmt{color:#57606a;font-weight:normal;font-size:12px}
.kv{display:grid;grid-template-columns:auto 1fr;gap:2px 10px;font-size:13px}
.kv b{font-size:15px}.L{color:#1f77b4}.A{color:#2ca02c}.S{color:#9467bd}.E{color:#d62728}.R{color:#ff7f0e}
table{border-collapse:collapse;background:#fff;border:1px solid #d8dde3;font-size:13px;width:100%}
th,td{padding:4px 10px;border-bottom:1px solid #eceff2;text-align:right;white-space:nowrap}
th:first-child,td:first-child,td.l{text-align:left}td.l{white-space:normal}th{background:#eef1f4;position:sticky;top:0}
tr.group td{background:#fafbfc;font-weight:600;text-align:left;color:#57606a}
.tag{display:inline-block;padding:0 6px;border-radius:9px;font-size:11px;background:#eef1f4;color:#57606a}
.tag.estimated{background:#fff3cd;color:#7a5b00}.tag.measured{background:#d9f2e0;color:#1a6b33}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(520px,100%),1fr));gap:12px}
.plots figure{margin:0;min-width:0;background:#fff;border:1px solid #d8dde3;border-radius:8px;padding:8px}
.plots img{width:100%;height:auto}figcaption{font-size:12px;color:#57606a}
details{background:#fff;border:1px solid #d8dde3;border-radius:8px;padding:8px 12px;margin:8px 0}
details td{white-space:normal;text-align:left}summary{cursor:pointer;font-weight:600}
.muted{color:#57606a;font-size:12px}
.warn{background:#fff8e1;border:1px solid #e8c96a;border-radius:8px;padding:8px 14px;margin:14px 0;font-size:13px}
.warn ul{margin:4px 0 0;padding-left:20px}
"""

CAPTIONS = {
    "pareto.png": "Latency p50 (batch 1) vs accuracy; marker area ∝ bytes on disk; dashed: Pareto front.",
    "latency.png": "Per-query latency of the reported (median) run; box = quartiles.",
    "robustness.png": "Accuracy under FGSM (solid) and PGD (dashed) as ε grows.",
    "corruptions.png": "Accuracy under Gaussian noise, blur and brightness at severities 1–5.",
}

GROUPS = {"latency": "Latency", "throughput": "Latency", "threads": "Latency", "p50 spread": "Latency",
          "parameters": "Size", "non-zero": "Size", "MACs": "Size", "FLOPs": "Size", "bytes": "Size",
          "peak activations": "Size", "energy": "Energy", "efficiency": "Energy", "effective": "Energy",
          "  %": "Energy", "robust": "Robustness"}


def _e(x: Any) -> str:
    return html.escape(str(x))


def _group(label: str) -> str:
    for prefix, g in GROUPS.items():
        if label.startswith(prefix):
            return g
    return "Accuracy"


def _card(report: Any, a: dict[str, Any], key: str | None) -> str:
    lat, size, en = a["latency"], a["size"], a.get("energy") or {}
    rob = a.get("robustness") or {}
    items = [("L", "latency p50", f"{lat['p50_ms']:.3g} ms", f"p99 {lat['p99_ms']:.3g} ms · "
              f"{lat['throughput_per_s']:.0f}/s")]
    if key:
        items.append(("A", key, f"{100 * a['accuracy'][key]:.2f} %", f"{a['accuracy'].get('samples', '')} samples"))
    items.append(("S", "size", f"{size['bytes'] / 1024:.0f} KiB",
                  f"{size.get('params', 0) / 1e3:.1f} k params · {size.get('macs', 0) / 1e6:.2f} M MACs"))
    if en:
        items.append(("E", "energy", f"{en['joules_per_inference'] * 1e3:.3g} mJ",
                      f"<span class='tag {_e(en['method'])}'>{_e(en['method'])}</span> "
                      f"{(en.get('gops_per_joule') or 0):.2g} GOP/J"))
    if rob.get("fgsm"):
        worst_eps = max(rob["fgsm"], key=float)
        items.append(("R", f"FGSM ε={worst_eps}", f"{100 * rob['fgsm'][worst_eps]:.1f} %",
                      f"clean {100 * rob['clean']:.1f} %"))
    elif rob.get("corruptions"):
        items.append(("R", "worst corruption", f"{100 * min(rob['corruptions'].values()):.1f} %",
                      f"clean {100 * rob['clean']:.1f} %"))
    kv = "".join(f"<span class='{c}'>{_e(n)}</span><span><b>{v}</b> <span class='muted'>{d}</span></span>"
                 for c, n, v, d in items)
    return (f"<div class='card'><h3>{_e(report.label(a))} <span class='fmt'>{_e(a.get('format', ''))} · "
            f"{_e(a.get('task', ''))}</span></h3><div class='kv'>{kv}</div></div>")


def _laser_table(report: Any) -> str:
    heads = "".join(f"<th>{_e(report.label(a))}</th>" for a in report.artifacts)
    out, last = [], None
    for label, unit, cells in rows(report):
        g = _group(label)
        if g != last:
            out.append(f"<tr class='group'><td colspan='{len(cells) + 2}'>{g}</td></tr>")
            last = g
        out.append(f"<tr><td>{_e(label)}</td><td class='l muted'>{_e(unit)}</td>"
                   + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return f"<table><tr><th>figure</th><th>unit</th>{heads}</tr>{''.join(out)}</table>"


def _hardware(report: Any) -> str:
    hw = report.hardware
    peak = hw.get("peak_fp32") or {}
    rows_ = []
    for a in report.artifacts:
        eff, en, off = a.get("efficiency") or {}, a.get("energy") or {}, a.get("offline") or {}
        rows_.append(
            f"<tr><td>{_e(report.label(a))}</td><td>{off.get('throughput_per_s', 0):,.0f} (b={off.get('batch_size')})</td>"
            f"<td>{(eff.get('peak_gops') or 0) / 1e3:.3f} ({_e(eff.get('peak', ''))})</td>"
            f"<td>{(eff.get('effective_gops') or 0) / 1e3:.5f}</td><td>{(eff.get('percent_of_peak') or 0):.2f} %</td>"
            f"<td>{en.get('watts', 0):.1f}</td><td>{(en.get('gops_per_joule') or 0):.3g}</td>"
            f"<td><span class='tag {_e(en.get('method', ''))}'>{_e(en.get('method', ''))}</span></td></tr>")
    cpu = hw.get("cpu", {})
    facts = [("CPU", f"{cpu.get('model', '?')} ({cpu.get('usable_cores')} usable of {cpu.get('logical_cores')} "
                     f"logical cores, {cpu.get('arch', '')})"),
             ("instruction sets", " ".join(cpu.get("isa", [])) or "—"),
             ("GPU", ", ".join(f"{g['name']} (driver {g['driver']})" for g in hw.get("gpus", [])) or "none")]
    on = f" ({hw.get('peak_device')})" if hw.get("peak_device", "cpu") != "cpu" else ""
    if peak:
        facts.append((f"peak FP32{on}", f"{peak['gflops']:.0f} GFLOP/s — {peak['method']}"))
    if hw.get("peak_int8"):
        facts.append((f"peak INT8{on}", f"{hw['peak_int8']['gops']:.0f} GOP/s — {hw['peak_int8']['method']}"))
    if hw.get("peak_bf16"):
        facts.append((f"peak BF16{on}", f"{hw['peak_bf16']['gflops']:.0f} GFLOP/s — {hw['peak_bf16']['method']}"))
    if hw.get("device"):  # an SSH device (runtime/ssh.py): its fingerprint, its runtimes
        facts.insert(0, ("device", hw["device"] + (f" — EMULATED ({hw['emulated']})" if hw.get("emulated") else "")))
        software = ", ".join(f"{k} {v}" for k, v in (hw.get("runtimes") or {}).items())
        facts.append(("software", f"Python {hw.get('python')}, {software}, {hw.get('os', '')}"))
    else:
        facts.append(("software", f"Python {hw.get('python')}, torch {hw.get('torch')}, onnxruntime "
                                  f"{hw.get('onnxruntime', '—')}, {hw.get('os', '')}"))
    ft = "".join(f"<tr><td>{_e(k)}</td><td class='l'>{_e(v)}</td></tr>" for k, v in facts)
    return (f"<table>{ft}</table><p class='muted'>Throughput and efficiency, the columns of the classic CPU / FPGA / "
            "GPU comparison table. Effective TFLOP/s = FLOPs per inference × inferences/s (Offline, best batch size); "
            "peak from the micro-benchmark above.</p><table><tr><th>artifact</th><th>inferences/s (Offline)</th>"
            "<th>TFLOP/s peak</th><th>TFLOP/s effective</th><th>% of peak</th><th>power (W)</th><th>GOP/J</th>"
            f"<th>energy</th></tr>{''.join(rows_)}</table>")


def _methods(report: Any) -> str:
    out = []
    for a in report.artifacts:
        body = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v.get('unit', ''))}</td><td><span class='tag {_e(v.get('kind', ''))}'>"
                       f"{_e(v.get('kind', ''))}</span></td><td>{_e(v.get('method', ''))}</td></tr>"
                       for k, v in sorted(a.get("figures", {}).items()))
        sweep = "".join(f"<tr><td>{r['batch_size']}</td><td>{r['p50_ms']:.3f}</td><td>{r['p99_ms']:.3f}</td>"
                        f"<td>{r['throughput_per_s']:,.0f}</td><td>{_e(r['scenario'])}</td></tr>"
                        for r in a.get("latency_sweep", []))
        runs = ", ".join(f"{p:.3f}" for p in a["latency"].get("p50_runs_ms", []))
        out.append(f"<details><summary>{_e(report.label(a))}: how each figure was obtained</summary>"
                   f"<p class='muted'>runner: {_e(json.dumps(a.get('runner', {})))}; lineage: "
                   f"{_e(' → '.join(a.get('steps', [])))}; p50 of repeated runs (ms): {runs}</p>"
                   "<table><tr><th>batch</th><th>p50 ms</th><th>p99 ms</th><th>samples/s</th><th>scenario</th></tr>"
                   f"{sweep}</table><br><table><tr><th>figure</th><th>unit</th><th>kind</th><th>method</th></tr>{body}"
                   "</table></details>")
    return "".join(out)


def _warnings(report: Any) -> str:
    items = "".join(f"<li><b>{_e(report.label(a))}</b>: {_e(w)}</li>" for a in report.artifacts
                    for w in a.get("warnings") or [])
    return f"<div class='warn'><b>Read with care</b><ul>{items}</ul></div>" if items else ""


def render(report: Any, plots: dict[str, Path]) -> str:
    key = accuracy_key(report)
    figs = "".join(f"<figure><img alt='{_e(name)}' src='data:image/png;base64,"
                   f"{base64.b64encode(path.read_bytes()).decode()}'><figcaption>{_e(CAPTIONS.get(name, ''))}"
                   "</figcaption></figure>" for name, path in plots.items())
    skipped = "".join(f"<li>{_e(s.get('name'))} ({_e(s.get('format'))}): {_e(s.get('reason'))}</li>"
                      for s in report.skipped)
    s = report.settings
    sub = (f"{len(report.artifacts)} artifact(s) · data {_e(s.get('data') or '—')} · created {_e(report.created)} · "
           f"{_e(hardware_line(report.hardware))}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>LASER report: {_e(', '.join(report.label(a) for a in report.artifacts))}</title><style>{CSS}</style></head>
<body><main>
<h1>LASER report</h1><div class="sub">{sub}</div>
<div class="cards">{''.join(_card(report, a, key) for a in report.artifacts)}</div>
{_warnings(report)}
<h2>LASER table</h2>{_laser_table(report)}
<p class="muted">Latency: median of {s.get('repeats')} runs at batch {(s.get('batch_sizes') or [1])[0]}; energy marked
<span class="tag estimated">estimated</span> comes from a stated power model, never from a counter.</p>
<h2>Plots</h2><div class="plots">{figs or '<p class="muted">no plots (no accuracy or robustness data)</p>'}</div>
<h2>Hardware</h2>{_hardware(report)}
<h2>Methods</h2>{_methods(report)}
{f'<h2>Skipped</h2><ul>{skipped}</ul>' if skipped else ''}
<p class="muted">settings: {_e(json.dumps(s))}</p>
</main></body></html>
"""


def write_html(report: Any, directory: Path) -> Path:
    """report.html + report.json + PNG plots in ``directory``; returns the path of report.html."""
    directory.mkdir(parents=True, exist_ok=True)
    plots = write_plots(report, directory)
    (directory / "report.json").write_text(report.to_json() + "\n")
    path = directory / "report.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render(report, plots), encoding="utf-8")
    tmp.replace(path)  # never leave a half-written page behind
    return path
