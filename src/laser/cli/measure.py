"""``laser bench``: the LASER report of one or more artifacts, side by side."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from laser.cli.common import add_json, add_on, add_threads
from laser.cli.output import emit_json
from laser.errors import ConfigError


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise ConfigError(f"{what} must be comma-separated integers like 1,8,32, got {text!r}") from exc
    if not values or min(values) < 1:
        raise ConfigError(f"{what} must be positive integers like 1,8,32, got {text!r}")
    return values


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise ConfigError(f"{what} must be comma-separated numbers like 0,0.007,0.03, got {text!r}") from exc
    if not values or min(values) < 0:
        raise ConfigError(f"{what} must be numbers >= 0 like 0,0.007,0.03, got {text!r}")
    return values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="LASER report (latency, accuracy, size, energy, robustness) of artifacts, "
                                     "side by side",
                       description="Measure each ARTIFACT on each backend and print the LASER table. "
                                   "Several artifacts are compared side by side.")
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT",
                   help="catalog name, bundle directory, .onnx file or TorchScript .pt")
    p.add_argument("--backends", help="comma-separated backends, e.g. torch,onnxruntime (default: the first that "
                                      "runs each artifact; a torch artifact is exported for onnxruntime/openvino)")
    p.add_argument("--data", help="dataset for accuracy and robustness, e.g. digits (default: none)")
    p.add_argument("--batch-sizes", default="1", help="batch sizes to sweep, e.g. 1,8,32 (first is reported)")
    p.add_argument("--repeats", type=int, default=3, help="independent latency runs; the median is reported")
    p.add_argument("--seconds", type=float, default=1.0, help="time budget per latency run (default: 1.0 s)")
    add_threads(p)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (energy from NVML on CUDA devices)")
    add_on(p)
    p.add_argument("--reference", help="artifact for agreement figures and attacks (default: the first one)")
    p.add_argument("--robustness", action="store_true", help="also FGSM/PGD and corruptions (needs --data)")
    p.add_argument("--epsilons", default="0,0.007,0.03,0.1", help="ε values for FGSM/PGD, pixel units on [0, 1]")
    p.add_argument("--no-peak", action="store_true", help="skip the FP32/INT8 peak micro-benchmarks (~2 s)")
    add_json(p, "the report as one JSON object on stdout")
    p.add_argument("--report", metavar="DIR", help="write report.html, report.json and PNG plots to DIR")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from laser.loader import load
    from laser.measure import measure

    if args.robustness and not args.data:
        raise ConfigError("--robustness needs labelled data; add --data digits (or another dataset)")
    if args.repeats < 1 or args.seconds <= 0:
        raise ConfigError(f"--repeats must be >= 1 and --seconds > 0, got {args.repeats} and {args.seconds}")
    arts = [load(a) for a in args.artifacts]
    report = measure(arts, backends=args.backends, data=args.data, batch_sizes=_ints(args.batch_sizes, "--batch-sizes"),
                     repeats=args.repeats, max_seconds=args.seconds, threads=args.threads,
                     reference=load(args.reference) if args.reference else None, robustness=args.robustness,
                     epsilons=_floats(args.epsilons, "--epsilons"), peak=not args.no_peak, device=args.device,
                     on=args.on, identity=args.identity)
    if args.report:
        page = report.write_html(Path(args.report))
    if args.json:
        emit_json(report.to_dict())
    else:
        print(report.to_markdown())
        for s in report.skipped:
            print(f"skipped {s['name']}: {s['reason']}", file=sys.stderr)
        if args.report:
            print(f"\nreport: {page} (+ report.json and PNG plots in {page.parent})")
    return 0
