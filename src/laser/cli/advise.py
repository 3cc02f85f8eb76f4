"""``laser advise``: which hardware should run this model (predicted from its graph, calibrated here)."""

from __future__ import annotations

import argparse

from laser.cli.common import add_model_args, load_model
from laser.cli.output import emit_json


def register(sub: argparse._SubParsersAction) -> None:
    from laser.advise.rank import PRECISION_CHOICES

    p = sub.add_parser("advise", help="rank hardware (cloud/edge GPUs, CPUs, NPUs, FPGA, MCU) for a model: predicted "
                                      "latency, energy, price vs a budget, calibrated on this machine",
                       description="Predict the model's latency and energy on every device of the catalog from its "
                                   "ONNX graph (per-op roofline + per-op overhead, fitted on models measured here), "
                                   "check a budget and rank the devices. Every figure has its spec-sheet source.")
    add_model_args(p)
    p.add_argument("--budget", help="constraints, e.g. 'p50<=10ms,power<=15W,price<=500' (figures: p50, latency, "
                                    "throughput, energy, power, price)")
    p.add_argument("--batch", type=int, default=1, help="batch size of one call (default 1)")
    p.add_argument("--precision", default="model", choices=PRECISION_CHOICES,
                   help="model: the graph's own (int8-only devices predicted for the quantized model, said so); "
                        "best: each device's fastest; or a fixed one")
    p.add_argument("--catalog", help="a devices TOML file instead of the one shipped with laser")
    p.add_argument("--table", action="store_true", help="the hardware table of the measured machine (throughput, "
                                                        "peak/effective TFLOP/s, power, GOP/J): ResNet-18 and the model")
    p.add_argument("--html", metavar="PATH", help="write the page with latency-vs-power/price plots (file or directory)")
    p.add_argument("--json", action="store_true", help="the advice as one JSON object on stdout")
    p.set_defaults(func=cmd_advise)


def cmd_advise(args: argparse.Namespace) -> int:
    from laser.advise import advise
    from laser.advise.budget import parse

    parse(args.budget)  # a bad budget fails before anything is measured
    advice = advise(load_model(args), budget=args.budget, batch=args.batch, catalog=args.catalog,
                    precision=args.precision)
    page = advice.write_html(args.html) if args.html else None
    if args.json:
        emit_json(advice.to_dict() | ({"html": str(page)} if page else {}))
        return 0
    if args.table:
        from laser.advise.report import hardware_table

        print(hardware_table(advice))
    else:
        print(advice.to_text())
    if page:
        print(f"\npage: {page}")
    return 0


def winner_view(artifact: object, where: str = "WINNER", budget: str | None = None, top: int = 5) -> tuple[str, dict[str, object]]:
    """The advisor's view of ``laser optimize``'s winner: (a few lines for the terminal, the advice as a dict).
    A winner the advisor cannot read (not torch / ONNX) gets one line saying so."""
    from laser.advise import advise
    from laser.errors import LaserError

    try:
        advice = advise(artifact, budget=budget)  # type: ignore[arg-type]
    except LaserError as exc:
        return f"advise: {exc}", {"error": str(exc)}
    lines = ["advise: the winner on other hardware (estimated: roofline, vendor peak × fitted efficiency):"]
    for i, r in enumerate(advice.rows[:top], 1):
        p50 = r.figures["p50_ms"]
        lines.append(f"  {i}. {r.device.name}: p50 {'—' if p50 is None else f'{p50:.3g} ms'} at {r.precision}"
                     + ("" if r.meets else f" (does not meet: {'; '.join([*r.problems, *r.violations])[:120]})"))
    if advice.target:
        t = advice.target
        lines.append(f"  this machine: measured {t['measured_ms']:.3g} ms, predicted {t['predicted_ms']:.3g} ms "
                     f"({t['error_pct']:+.0f} %); full table: laser advise {where}")
    return "\n".join(lines), advice.to_dict()
