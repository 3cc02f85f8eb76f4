"""What an optimize run leaves behind: report.json, pareto.png and the terminal summary.

report.json keeps the ``artifacts`` list in the shape ``laser.measure`` writes (one entry per measured
candidate, ``label`` = candidate name), so tools that read LASER reports read this one too, plus an
``optimize`` section: budget, reference accuracy, every candidate with its verdict, the front, the winner.
The HTML page is built in html.py.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from laser.artifact import json_safe  # one JSON-safe converter for every report
from laser.optimize.budget import fmt

if TYPE_CHECKING:
    from laser.optimize.result import OptimizeResult, Outcome

SCHEMA = 1
# (format, backend) -> short name used on the plot
RUNTIME = {("torch", "torch"): "eager", ("onnx", "onnxruntime"): "ORT", ("onnx", "openvino"): "OpenVINO",
           ("torchscript", "torchscript"): "TorchScript", ("ort", "onnxruntime"): "ORT (.ort)",
           ("aoti", "aoti"): "AOTInductor", ("torch", "compiled"): "torch.compile",
           ("executorch", "executorch"): "ExecuTorch (.pte)", ("onnx", "browser"): "browser (WASM)"}




def delta_pts(drop: float | None) -> str:
    """An accuracy drop (pts lost) as a signed change: '-0.28 pts', '+0.10 pts', '±0.00 pts'."""
    if drop is None:
        return "—"
    return "±0.00 pts" if abs(drop) < 0.005 else f"{-drop:+.2f} pts"


def speed(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"


def accuracy_what(result: OptimizeResult) -> str:
    """What the "accuracy" figure of this run means, for axis labels and cards."""
    ref = result.reference
    if ref.proxy or ref.data is None:
        return "fidelity to the FP32 parent (1 − relative L2)"
    return f"{ref.metric} on {ref.data.name}"


def describe_metrics(o: Outcome, result: OptimizeResult) -> str:
    m = o.metrics
    parts = [f"p50 {fmt(m['p50_ms'], 'time')}"]
    if o.speedup_vs_eager is not None and o.name != (result.eager.name if result.eager else None):
        eager = result.eager.metrics["p50_ms"] if result.eager else None
        parts[-1] += f" ({speed(o.speedup_vs_eager)} {result.baseline_label}" + (
            f" at {fmt(eager, 'time')}, same rounds)" if eager else ")")
    if result.reference.proxy and m.get("rel_l2") is not None:
        fid = f"fidelity: relative L2 {100 * m['rel_l2']:.3g} % vs the FP32 parent"
        if m.get("agreement") is not None:
            fid += f", top-1 agreement {fmt(m['agreement'], 'fraction')}"
        parts.append(fid)
    elif m.get("accuracy") is not None:
        what = result.reference.metric
        parts.append(f"{what} {fmt(m['accuracy'], 'fraction')} ({delta_pts(m['accuracy_drop_pts'])})")
    if m.get("bytes") is not None:
        parts.append(fmt(m["bytes"], "bytes"))
    return ", ".join(parts)


def verdict(result: OptimizeResult) -> str:
    from laser.optimize.targets import DEFAULT_TARGET

    on = "" if result.target == DEFAULT_TARGET else f" for target {result.target}"
    w = result.winner
    if w is None:
        return f"Nothing was measured{on}: " + ("interrupted before the first candidate finished." if result.interrupted
                                                else "every candidate failed or was skipped (see the table).")
    head = f"{w.name}: {describe_metrics(w, result)}." + device_said(result)
    if result.feasible:
        tail = (f" Meets the budget ({result.budget.text}); {result.budget.objective.describe()} among "
                f"{sum(o.feasible for o in result.measured)} feasible of {len(result.measured)} measured.")
        return f"Winner{on}: " + head + tail
    fails = "; ".join(v.message() for v in w.violations)
    return (f"No candidate{on} meets the budget ({result.budget.text}). Best effort: {head} It misses: {fails}.")


def device_said(result: OptimizeResult) -> str:
    """Under --on: where every figure was timed, what the speed-ups are against, and emulation."""
    d = result.device
    if not d:
        return ""
    said = f" Measured on {d['url']}: speed-ups vs {d['baseline']}."
    if d.get("emulated"):
        said += (f" Every timing is EMULATED ({d['emulated']}): it says the artifact runs there, not how fast "
                 "the real device is.")
    return said


def constraints_applied(result: OptimizeResult) -> str:
    """Which constraints decided, in words: the default accuracy one, removals, the no-label mapping."""
    b = result.budget
    parts = [f"constraints applied: {b.text}"]
    if result.requested_budget and result.requested_budget != b.text:
        parts.append(f"from the budget {result.requested_budget}")
    if b.mapping:
        parts.append(b.mapping)
    return "; ".join(parts)


def result_dict(result: OptimizeResult) -> dict[str, Any]:
    from laser.optimize.cache import artifact_digest

    artifacts = []
    for o in result.measured:
        if o.entry:
            artifacts.append({**o.entry, "label": o.name, "recipe": o.candidate.recipe})
    base = result.base
    return json_safe({
        "laser_optimize": SCHEMA,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "model": {"name": base.name, "source": result.source, "format": base.format, "task": base.task,
                  "sha256": artifact_digest(base)},
        "target": result.target,
        "device": result.device,
        "budget": result.budget.to_dict(),
        "reference": result.reference.to_dict(),
        "settings": result.settings.to_dict(),
        "verdict": verdict(result),
        "constraints_applied": constraints_applied(result),
        "finals": result.finals,
        "winner": result.winner.name if result.winner else None,
        "feasible": result.feasible,
        "front": [o.name for o in result.front],
        "candidates": [o.to_dict() for o in result.outcomes],
        "interrupted": result.interrupted, "timed_out": result.timed_out,
        "elapsed_s": result.elapsed_s, "notes": list(result.notes),
        "hardware": result.hardware,
        "artifacts": artifacts,
    })


def write_json(result: OptimizeResult, path: Path) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result_dict(result), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def write_pareto(result: OptimizeResult, path: Path) -> Path:
    from laser.optimize import pareto

    floor = None
    limit = result.budget_drop_limit()
    if limit is not None:
        floor = result.reference.base_accuracy - limit / 100
    p50 = next((c.limit for c in result.budget.constraints if c.metric in ("p50", "latency")), None)
    points = [{"label": f"{o.candidate.recipe} · {RUNTIME.get((o.candidate.format, o.candidate.backend), o.candidate.short)}"
               + (" (unverified)" if o.unverified else ""), "p50_ms": o.metrics.get("p50_ms"), "accuracy": o.metrics.get("accuracy"),
               "bytes": o.metrics.get("bytes"), "backend": o.candidate.backend, "on_front": o.on_front,
               "feasible": o.feasible, "winner": o is result.winner} for o in result.measured]
    what = accuracy_what(result)
    return pareto.plot(points, path, p50_limit_ms=p50, accuracy_floor=floor, accuracy_label=what,
                       title=f"{result.base.name}: {len(points)} candidates, latency vs {what} "
                             "(marker area ∝ size on disk)")


def rows(result: OptimizeResult) -> list[Outcome]:
    """Candidates in reading order: feasible by objective, then the rest measured, then failed/skipped."""
    obj = result.budget.objective
    measured = sorted(result.measured, key=lambda o: (not o.feasible, obj.score(o.metrics)))
    return measured + [o for o in result.outcomes if not o.measured]


def precision_line(o: Outcome) -> str:
    """One line on what a quantized candidate keeps in float (``Outcome.detail``), or ''."""
    d = o.detail or {}
    if "fraction" not in d or not o.measured:
        return ""
    text = f"{o.name}: INT8 on {100 * d['fraction']:.1f} % of the Conv/MatMul/Gemm MACs ({d['int8_layers']}/{d['layers']} layers)"
    if "search_drop_points" in d:
        kept = d.get("kept_fp32") or []
        what = ("only Conv/MatMul/Gemm quantized (adds, norms, activations FP32)" if d.get("quantized_only") else
                f"kept FP32: {', '.join(kept[:6])}" + (f" (+{len(kept) - 6} more)" if len(kept) > 6 else "")
                if kept else "nothing kept FP32")
        text += (f"; {what}; the search on {d['search_data']} ({d['search_samples']} samples) measured a "
                 f"{d['metric']} drop of {d['search_drop_points']:g} points (all layers INT8: "
                 f"{d['all_layers_drop_points']:g})")
    return text


def terminal_summary(result: OptimizeResult, limit: int = 14) -> str:
    from laser.text import table

    shown = rows(result)
    body = []
    for o in shown[:limit]:
        m = o.metrics
        if o.measured:
            acc = "—" if m.get("accuracy") is None else f"{100 * m['accuracy']:.2f}%"
            budget = ("unverified" if o.unverified else "reference (off target)" if o.off_target else
                      "ok" if o.feasible else
                      "; ".join(v.constraint.text for v in o.violations))
            body.append(("*" if o is result.winner else "", o.name, fmt(m["p50_ms"], "time"),
                         speed(o.speedup_vs_eager), acc, fmt(m["bytes"], "bytes") if m.get("bytes") else "—",
                         "front" if o.on_front else "dominated", budget))
        else:
            body.append(("", o.name, o.status, "", "", "", "", (o.error or "")[:60]))
    vs = "vs eager" if result.device is None else "vs ONNX FP32"
    out = [table(body, ("", "candidate", "p50", vs, "accuracy", "size", "pareto", "budget"))]
    if len(shown) > limit:
        out.append(f"... and {len(shown) - limit} more in report.html / report.json")
    out += [line for o in shown[:limit] if (line := precision_line(o))]
    out += ["", verdict(result), constraints_applied(result) + "."]
    if result.interrupted:
        out.append("Interrupted (Ctrl-C): the report holds what was measured before it.")
    if result.timed_out:
        out.append("Time budget spent: candidates not reached are listed as skipped.")
    return "\n".join(out)
