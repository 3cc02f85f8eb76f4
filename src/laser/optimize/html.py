"""report.html of an optimize run: one self-contained page (the Pareto plot is embedded).

Top to bottom: the verdict (winner or best effort, in one sentence, coloured by whether the budget
holds), base vs winner on the LASER figures, the Pareto plot, every candidate in one table (dominated
ones greyed, failed constraints named), the doctor's "why not faster", how to reproduce or serve the
winner, and how everything was measured.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from laser.optimize.budget import fmt
from laser.optimize.report import accuracy_what, constraints_applied, delta_pts, rows, speed, verdict

if TYPE_CHECKING:
    from laser.optimize.result import OptimizeResult, Outcome

CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1320px;
color:#1d1d1f;padding:0 16px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin-bottom:16px}.verdict{padding:14px 18px;border-radius:8px;font-size:16px;line-height:1.45}
.ok{background:#e8f5e9;border:1px solid #66bb6a}.warn{background:#fff8e1;border:1px solid #ffb300}
.bad{background:#ffebee;border:1px solid #e57373}.cards{display:flex;gap:12px;flex-wrap:wrap;margin-top:14px}
.card{flex:1;min-width:180px;border:1px solid #ddd;border-radius:8px;padding:10px 14px}
.card .k{color:#666;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:20px;font-weight:600;margin:4px 0}.card .d{font-size:13px;color:#444}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{padding:5px 8px;border-bottom:1px solid #eee;
text-align:right;white-space:nowrap}th{background:#fafafa;position:sticky;top:0}td.l,th.l{text-align:left}
tr.dom td{color:#9e9e9e}tr.win td{background:#fffde7;font-weight:600}tr.na td{color:#b0b0b0;font-style:italic}
.tag{display:inline-block;border-radius:4px;padding:0 6px;font-size:11px;font-weight:600}
.front{background:#e3f2fd;color:#1565c0}.domi{background:#f0f0f0;color:#9e9e9e}.pass{color:#2e7d32}
.fail{color:#c62828;text-align:left}td.wrap{white-space:normal}img{max-width:100%;border:1px solid #eee;border-radius:6px}
.finding{margin:6px 0 10px 0;padding:8px 12px;border-left:4px solid #ffb300;background:#fffdf5}
.finding b{display:block}.muted{color:#777;font-size:13px}code,pre{background:#f6f8fa;border-radius:4px}
pre{padding:10px;overflow:auto;font-size:12px}details{margin:6px 0}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _img(path: Path) -> str:
    if not path.is_file():
        return "<p class='muted'>no plot: nothing was measured</p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return f"<img alt='Pareto front: latency vs accuracy' src='data:image/png;base64,{data}'>"


def _acc(result: OptimizeResult, o: Outcome) -> str:
    a, err = o.metrics.get("accuracy"), o.metrics.get("max_abs_error")
    if a is None:
        return "—"
    tip = f" title='max |output difference| from the FP32 parent: {err:.3g}'" if err is not None else ""
    return f"<span{tip}>{100 * a:.2f} %</span>"


def _cards(result: OptimizeResult) -> str:
    w, base = result.winner, result.eager
    if w is None or not w.measured:
        return ""
    ref = base if base is not None else w
    what = accuracy_what(result)
    em = w.metrics.get("energy_method") or "estimated"

    def card(k: str, v: str, d: str) -> str:
        return f"<div class='card'><div class='k'>{_e(k)}</div><div class='v'>{_e(v)}</div><div class='d'>{_e(d)}</div></div>"

    m, r = w.metrics, ref.metrics
    cards = [card("Latency (p50, batch 1)", fmt(m["p50_ms"], "time"),
                  f"{speed(w.speedup_vs_eager)} {result.baseline_label} ({fmt(r['p50_ms'], 'time')}); "
                  + ("emulated" if (result.device or {}).get("emulated") else "measured"))]
    if m.get("accuracy") is not None:
        cards.append(card(f"Accuracy ({what})", f"{100 * m['accuracy']:.2f} %",
                          f"{delta_pts(m['accuracy_drop_pts'])} vs the base ({100 * result.reference.base_accuracy:.2f} %); measured"))
    if m.get("bytes"):
        cards.append(card("Size on disk", fmt(m["bytes"], "bytes"),
                          f"{m['bytes'] / r['bytes']:.2f}× the base ({fmt(r['bytes'], 'bytes')}); measured"
                          if r.get("bytes") else "measured"))
    if m.get("energy_j") is not None:
        cards.append(card("Energy per inference", fmt(m["energy_j"], "energy"),
                          f"{em}" + (f"; base {fmt(r['energy_j'], 'energy')}" if r.get("energy_j") else "")))
    if m.get("robust_accuracy") is not None:
        cards.append(card("Robustness (FGSM)", f"{100 * m['robust_accuracy']:.2f} %", "measured on transferred examples"))
    return "<div class='cards'>" + "".join(cards) + "</div>"


def _table(result: OptimizeResult) -> str:
    robust = any(o.metrics.get("robust_accuracy") is not None for o in result.measured)
    head = ("<tr><th class='l'>candidate (recipe · format · backend)</th><th>p50</th><th>p99</th><th>vs "
            + ("eager" if result.device is None else "ONNX FP32") + "</th>"
            "<th>vs parent</th><th>accuracy</th><th>Δ accuracy</th>" + ("<th>FGSM acc.</th>" if robust else "") +
            "<th>size</th><th>MACs</th><th>energy</th><th class='l'>Pareto</th><th class='l'>budget</th></tr>")
    body = []
    for o in rows(result):
        m = o.metrics
        if not o.measured:
            body.append(f"<tr class='na'><td class='l'>{_e(o.name)}</td><td class='l wrap' colspan='{11 + robust}'>"
                        f"{_e(o.status)}: {_e(o.error or '')}</td></tr>")
            continue
        cls = "win" if o is result.winner else ("" if o.on_front else "dom")
        pareto = ("<span class='tag front'>front</span>" if o.on_front else
                  f"<span class='tag domi' title='dominated by {_e(', '.join(o.dominated_by))}'>dominated</span>")
        budget = ("<span class='fail'>unverified: changes the function, no data to recover or check it</span>"
                  if o.unverified else f"reference: not a candidate for target {_e(result.target)}" if o.off_target
                  else "<span class='pass'>✓ meets</span>" if o.feasible else "<span class='fail'>" + "<br>".join(
            f"<span title='{_e(v.message())}'>✗ {_e(v.constraint.text)}: {_e(_value(v))}</span>"
            for v in o.violations) + "</span>")
        energy = "—" if m.get("energy_j") is None else fmt(m["energy_j"], "energy") + (
            " (est.)" if m.get("energy_method") == "estimated" else "")
        macs = "—" if not m.get("macs") else f"{m['macs'] / 1e6:.2f} M"
        star = "★ " if o is result.winner else ""
        body.append(
            f"<tr class='{cls}'><td class='l' title='{_e(_recipe_text(o))}'>{star}{_e(o.name)}"
            f"{' <span class=muted>(cached)</span>' if o.status == 'cached' else ''}</td>"
            f"<td>{fmt(m['p50_ms'], 'time')}{_screening(result, o)}</td>"
            f"<td>{fmt(m['p99_ms'], 'time') if m.get('p99_ms') else '—'}</td><td>{speed(o.speedup_vs_eager)}</td>"
            f"<td>{speed(o.speedup_vs_parent)}</td><td>{_acc(result, o)}</td><td>{_delta(result, o)}</td>"
            + (f"<td>{_pct(m.get('robust_accuracy'))}</td>" if robust else "") +
            f"<td>{fmt(m['bytes'], 'bytes') if m.get('bytes') else '—'}</td><td>{macs}</td><td>{energy}</td>"
            f"<td class='l'>{pareto}</td><td class='l'>{budget}</td></tr>")
    recipes = sorted({o.candidate.recipe for o in result.outcomes})
    legend = " · ".join(f"<b>{_e(r)}</b>: {_e(_describe(r, not result.reference.proxy))}" for r in recipes)
    return f"<p class='muted'>Recipes: {legend}.</p><table>{head}{''.join(body)}</table>"


def _screening(result: OptimizeResult, o: Outcome) -> str:
    if result.finals is None or o.final:
        return ""
    return " <span class='muted' title='not a finalist: timed alone at its own moment'>(screening)</span>"


def _delta(result: OptimizeResult, o: Outcome) -> str:
    """The accuracy change; without labels, the relative L2 of the outputs vs the FP32 parent."""
    if result.reference.proxy:
        rel = o.metrics.get("rel_l2")
        return "—" if rel is None else f"rel. L2 {100 * rel:.3g} %"
    return delta_pts(o.metrics.get("accuracy_drop_pts"))


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f} %"


def _value(v: Any) -> str:
    return "not measured" if v.value is None else fmt(v.value, v.constraint.kind)


def _describe(recipe: str, data: bool = True) -> str:
    from laser.optimize.candidates import describe

    try:
        return describe(recipe, data)
    except Exception:  # a custom recipe name from a recipe file or a Recipe object
        return "custom recipe"


def _recipe_text(o: Outcome) -> str:
    return _describe(o.candidate.recipe)


def _doctor(result: OptimizeResult) -> str:
    """One entry per kind of finding, naming every candidate it was found on (not one block per candidate)."""
    diagnosed = sorted((o for o in result.outcomes if o.diagnosis), key=lambda o: o.speedup_vs_parent or 0.0)
    if not diagnosed:
        return "<p class='muted'>Every measured candidate is faster than its parent and within the accuracy budget.</p>"
    groups: dict[str, list[tuple[Outcome, dict[str, Any]]]] = {}
    for o in diagnosed:
        d = o.diagnosis or {}
        if d.get("error"):
            groups.setdefault("error", []).append((o, {"cause": "the doctor could not examine it",
                                                       "evidence": d["error"], "fix": ""}))
        for f in d.get("findings", []):
            groups.setdefault(str(f.get("check") or f["cause"]), []).append((o, f))
    out = []
    for check, items in sorted(groups.items(), key=lambda kv: len(kv[1]), reverse=True):
        causes, fixes = {f["cause"] for _, f in items}, {f["fix"] for _, f in items}
        n = len(items)
        what = next(iter(causes)) if len(causes) == 1 else check.replace("-", " ")  # causes differ in figures
        head = f"{n} candidate{'s' if n > 1 else ''}: {what}"
        rows = "".join(
            f"<li>{_e(o.name)} <span class='muted'>({_vs_parent(o)})"
            f"{'' if len(causes) == 1 else ': ' + _e(f['cause'])}; evidence: {_e(f['evidence'])}"
            f"{'' if len(fixes) == 1 else '; fix: ' + _e(f['fix'])}</span></li>" for o, f in items)
        fix = f"fix: {_e(next(iter(fixes)))}" if len(fixes) == 1 and next(iter(fixes)) else ""
        out.append(f"<div class='finding'><b>{_e(head)}</b><ul style='margin:4px 0'>{rows}</ul>{fix}</div>")
    return "".join(out)


def _vs_parent(o: Outcome) -> str:
    if o.speedup_vs_parent is None:  # not a finalist: no ratio from the side-by-side round
        return f"parent {_e(o.parent)}"
    return f"{speed(o.speedup_vs_parent)} the speed of {_e(o.parent)}"


def _warnings(result: OptimizeResult) -> str:
    seen: dict[str, list[str]] = {}
    for o in result.outcomes:
        for w in o.warnings:
            seen.setdefault(w, []).append(o.candidate.recipe)
    if not seen:
        return ""
    items = "".join(f"<li>{_e(w)} <span class='muted'>({_e(', '.join(dict.fromkeys(r)))})</span></li>"
                    for w, r in seen.items())
    return f"<h3 style='font-size:15px;margin:14px 0 4px'>What the stages warned about</h3><ul>{items}</ul>"


def _reproduce(result: OptimizeResult, out: Path) -> str:
    if result.winner is None:
        return "<p class='muted'>No winner to reproduce.</p>"
    recipe = out / "winner.toml"
    text = recipe.read_text() if recipe.is_file() else "(not written)"
    return (f"<p>The winner is saved as a bundle in <code>{_e(out / 'winner')}</code>. Rebuild it from the base model "
            f"with <code>laser optimize --recipe {_e(recipe)} -o OUT</code>, serve it with "
            f"<code>laser serve {_e(out / 'winner')}</code>, or check it with <code>laser bench {_e(out / 'winner')}</code>.</p>"
            f"<details><summary>winner.toml</summary><pre>{_e(text)}</pre></details>")


def _method(result: OptimizeResult) -> str:
    s, hw = result.settings, result.hardware or {}
    cpu = hw.get("cpu") or {}
    energy = next((o.entry.get("energy", {}).get("source") for o in result.measured if o.entry), None)
    items = [
        ("Hardware: " + (f"the device {_e(hw.get('device'))} (its own fingerprint), " if hw.get("device") else "")
         + f"{_e(cpu.get('model', '?'))}, {_e(cpu.get('usable_cores', '?'))} usable cores; ISA "
         f"{_e(', '.join(cpu.get('isa', [])) or '?')}."
         + (f" Every timing is EMULATED ({_e(hw['emulated'])})." if hw.get("emulated") else "")),
        f"Latency (screening): laser.measure on the candidate's backend, batch 1, {s.warmup} warm-up calls, ≥ "
        f"{s.min_iters} timed calls and ≥ {s.max_seconds:g} s per run, median of {s.repeats} run(s); p50/p99 in ms per "
        "call (measured), each candidate at its own moment.",
        "Latency (final): " + (_e(result.finals["method"]) + f"; finalists: {_e(', '.join(result.finals['finalists']))}. "
                               "Every ratio (× eager, × parent) is computed between figures of this one set; "
                               "candidates that were not finalists show screening figures and no ratio."
                               if result.finals else "no final side-by-side round ran (interrupted, or fewer than "
                               "two candidates measured): no ratios are quoted."),
        f"Accuracy: {_e(result.reference.label)}; base {100 * result.reference.base_accuracy:.2f} % (measured in "
        "PyTorch eager). Drop = base − candidate in percentage points.",
        "Size: bytes of the artifact's files on disk (measured); MACs per sample at batch 1 (counted; FLOPs = 2 × MACs).",
        f"Energy: {_e(energy or 'not measured')}.",
        f"Budget: {_e(constraints_applied(result))}; objective: {_e(result.budget.objective.describe())}. Pareto axes: accuracy "
        "(higher), p50, size and energy (lower); a candidate is dominated when another is at least as good on every "
        "axis and better on one.",
        f"Run: {len(result.outcomes)} candidates planned, {len(result.measured)} measured "
        f"({sum(o.status == 'cached' for o in result.outcomes)} from the cache), "
        f"{sum(o.status == 'failed' for o in result.outcomes)} failed, "
        f"{sum(o.status == 'skipped' for o in result.outcomes)} skipped; {result.elapsed_s:.0f} s.",
    ]
    items += [_e(n) for n in result.notes]
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def write_html(result: OptimizeResult, path: Path) -> Path:
    out = path.parent
    w = result.winner
    cls = "bad" if w is None else ("ok" if result.feasible else "warn")
    flags = []
    if result.interrupted:
        flags.append("Interrupted (Ctrl-C): this report holds what was measured before the interruption.")
    if result.timed_out:
        flags.append("The time budget was spent: candidates not reached are listed as skipped.")
    flags += [n[0].upper() + n[1:] + "." for n in result.notes if n.startswith("the machine was busy")]
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>laser optimize: {_e(result.base.name)}</title><style>{CSS}</style></head><body>
<h1>laser optimize: {_e(result.base.name)}</h1>
<div class="sub">target <b>{_e(result.target)}</b> · budget <b>{_e(result.budget.text)}</b> · objective <b>{_e(result.budget.objective.describe())}</b> ·
accuracy = {_e(result.reference.label)} · {len(result.measured)} of {len(result.outcomes)} candidates measured</div>
<div class="verdict {cls}">{_e(verdict(result))}{''.join(f'<br><b>{_e(f)}</b>' for f in flags)}</div>
{_cards(result)}
<h2>Pareto front</h2>
<p class="muted">Each dot is a candidate (recipe / format / backend); coloured ones are on the Pareto front over
accuracy, latency, size and energy, grey ones are dominated; the star is the winner; dashed lines are the budget.</p>
{_img(out / 'pareto.png')}
<h2>All candidates</h2>
{_table(result)}
<h2>Doctor: candidates not faster than their parent, or less accurate than the budget allows</h2>
<p class="muted">Grouped by cause. A candidate's parent is the same format and backend without the recipe (for the base
model on another runtime, PyTorch eager); "× the speed" compares their measured p50.</p>
{_doctor(result)}
{_warnings(result)}
<h2>Reproduce, serve</h2>
{_reproduce(result, out)}
<h2>How this was measured</h2>
{_method(result)}
</body></html>
"""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page)
    tmp.replace(path)
    return path
