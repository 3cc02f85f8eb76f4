"""The LASER table: one row per figure (with its unit), one column per artifact@backend."""

from __future__ import annotations

from typing import Any

from laser.text import human_bytes, human_count


def _get(d: dict[str, Any], path: str | tuple[str, ...]) -> Any:
    """Value at a dotted path, or a tuple of keys (for keys holding dots, such as ε '0.007')."""
    for key in path.split(".") if isinstance(path, str) else path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "pct":
        return f"{100 * value:.2f} %"
    if kind == "count":
        return f"{human_count(value)}"
    if kind == "bytes":
        return human_bytes(value)
    if kind == "ms":
        return f"{value:.3f}"
    if kind == "sci":
        return f"{value:.3g}"
    return f"{value:,.1f}" if isinstance(value, float) else str(value)


# (label, unit, path in an artifact entry, format)
FIXED: list[tuple[str, str, str, str]] = [
    ("latency p50", "ms", "latency.p50_ms", "ms"),
    ("latency p90", "ms", "latency.p90_ms", "ms"),
    ("latency p99", "ms", "latency.p99_ms", "ms"),
    ("latency mean ± 95 % CI", "ms", "", "ci"),
    ("p50 spread over repeats", "%", "latency.spread_pct", "float"),
    ("throughput (SingleStream)", "samples/s", "latency.throughput_per_s", "float"),
    ("throughput (Offline, best batch)", "samples/s", "offline.throughput_per_s", "float"),
    ("threads", "", "latency.threads", "raw"),
]
SIZE: list[tuple[str, str, str, str]] = [
    ("parameters", "count", "size.params", "count"),
    ("non-zero parameters", "count", "size.nonzero_params", "count"),
    ("MACs / sample", "MAC", "size.macs", "count"),
    ("FLOPs / sample (= 2 × MACs)", "FLOP", "size.flops", "count"),
    ("bytes on disk", "B", "size.bytes", "bytes"),
    ("bytes compressed (zlib)", "B", "size.bytes_compressed", "bytes"),
    ("peak activations", "B", "size.peak_activation_bytes", "bytes"),
]


def rows(report: Any) -> list[tuple[str, str, list[str]]]:
    arts = report.artifacts
    out: list[tuple[str, str, list[str]]] = []

    def add(label: str, unit: str, path: str | tuple[str, ...], kind: str) -> None:
        values = [_get(a, path) for a in arts]
        if all(v is None for v in values):
            return
        out.append((label, unit, [_fmt(v, kind) for v in values]))

    # Timings from an emulated device (runtime/ssh.py under qemu) say so on every timing row.
    emulated = any(_get(a, ("figures", "latency.p50_ms", "kind")) == "emulated" for a in arts)
    for label, unit, path, kind in FIXED:
        label += " [emulated]" * (emulated and label != "threads")
        if kind == "ci":
            cells = [f"{a['latency']['mean_ms']:.3f} ± {a['latency']['ci95_ms'] or 0:.3f}" for a in arts]
            out.append((label, unit, cells))
        else:
            add(label, unit, path, kind)
    first = ("top1", "top5", "accuracy", "f1_macro", "miou", "dice", "map_50", "map_50_95", "top1_agreement")
    metrics = sorted({m for a in arts for m in a.get("accuracy", {}) if m != "samples"},
                     key=lambda m: (first.index(m) if m in first else len(first), m))
    for m in metrics:
        frac = all(isinstance(_get(a, f"accuracy.{m}"), (float, type(None))) for a in arts) and m != "max_abs_error"
        add(m, "%" if frac else "", f"accuracy.{m}", "pct" if frac else "sci")
    for row in SIZE:
        add(*row)
    kinds = {a.get("energy", {}).get("method") for a in arts} - {None}
    tag = "/".join(sorted(kinds)) or "—"
    add(f"energy / inference [{tag}]", "J", "energy.joules_per_inference", "sci")
    add(f"efficiency [{tag}]", "GOP/J", "energy.gops_per_joule", "sci")
    add("effective throughput", "GOP/s", "efficiency.effective_gops", "sci")
    add("  % of measured peak", "%", "efficiency.percent_of_peak", "sci")
    add("robust: clean", "%", "robustness.clean", "pct")
    for group in ("fgsm", "pgd"):
        keys: list[str] = []
        for a in arts:
            for k in _get(a, f"robustness.{group}") or {}:
                if k not in keys:
                    keys.append(k)
        for k in keys:
            add(f"robust: {group.upper()} ε={k}", "%", ("robustness", group, k), "pct")
    # Corruptions: the mean over severities per kind keeps the table short (each severity is in the JSON).
    corruption_kinds = sorted({k.partition("@")[0] for a in arts for k in _get(a, "robustness.corruptions") or {}})
    for kind in corruption_kinds:
        cells = []
        for a in arts:
            vals = [v for k, v in (_get(a, "robustness.corruptions") or {}).items() if k.partition("@")[0] == kind]
            cells.append(_fmt(sum(vals) / len(vals), "pct") if vals else "—")
        out.append((f"robust: {kind} (mean of severities)", "%", cells))
    return out


def markdown(report: Any) -> str:
    heads = [report.label(a) for a in report.artifacts]
    lines = ["| figure | unit | " + " | ".join(heads) + " |", "|---|---|" + "---:|" * len(heads)]
    lines += [f"| {label} | {unit} | " + " | ".join(cells) + " |" for label, unit, cells in rows(report)]
    notes = [f"warning ({report.label(a)}): {w}" for a in report.artifacts for w in a.get("warnings") or []]
    return "\n".join(lines) + "\n\n" + hardware_line(report.hardware) + "".join("\n" + n for n in notes)


def hardware_line(hw: dict[str, Any]) -> str:
    cpu = hw.get("cpu", {})
    parts = [f"hardware: {cpu.get('model', '?')}, {cpu.get('usable_cores', '?')} usable cores"]
    if hw.get("device"):  # an SSH device (runtime/ssh.py): its own fingerprint
        parts[0] = (f"hardware: device {hw['device']} ({cpu.get('arch', '?')}"
                    + (", EMULATED" if hw.get("emulated") else "") + f"): {parts[0].partition(': ')[2]}")
        parts += [f"{k} {v}" for k, v in (hw.get("runtimes") or {}).items()]
    if cpu.get("isa"):
        parts.append("ISA " + " ".join(cpu["isa"]))
    for g in hw.get("gpus", []):
        parts.append(f"GPU {g['name']} (driver {g['driver']})")
    on = f" on {hw['peak_device']}" if hw.get("peak_device", "cpu") != "cpu" else ""
    if hw.get("peak_fp32"):
        parts.append(f"peak FP32{on} {hw['peak_fp32']['gflops']:.0f} GFLOP/s")
    if hw.get("peak_int8"):
        parts.append(f"peak INT8{on} {hw['peak_int8']['gops']:.0f} GOP/s")
    if hw.get("peak_bf16"):
        parts.append(f"peak BF16{on} {hw['peak_bf16']['gflops']:.0f} GFLOP/s")
    return "; ".join(parts) + " (peaks measured by matmul micro-benchmarks)" * bool(hw.get("peak_fp32"))
