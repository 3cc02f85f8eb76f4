"""``laser optimize`` (the best deployable artifact under a budget) and ``laser doctor`` (why not faster)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from laser.cli.common import (
    MODEL_HELP,
    add_backend,
    add_http_port,
    add_json,
    add_model_args,
    add_on,
    add_threads,
    load_model,
)
from laser.cli.output import emit_json
from laser.errors import ConfigError

# Exit code when no candidate meets the budget: the best-effort report and winner are still written.
NO_CANDIDATE_MEETS_BUDGET = 3


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("optimize", help="try recipes × formats × backends, measure each on LASER, keep the best "
                       "that meets the budget (report.html, pareto.png, winner/)")
    add_model_args(p, nargs="?", help=f"{MODEL_HELP} (default: digits-cnn)")
    p.add_argument("-o", "--output", required=True, help="output directory (report, winner, resumable cache)")
    p.add_argument("--data", default="default",
                   help="labelled dataset for accuracy (default: digits for the built-in model; 'none' = fidelity "
                        "to the FP32 model: relative L2 of the outputs, top-1 agreement when meaningful)")
    p.add_argument("--inputs", help="unlabelled samples for fidelity and calibration without --data: an image "
                   "folder or .npy/.npz files (default: spec example inputs)")
    p.add_argument("--budget", default="accuracy_drop<=1%",
                   help="constraints, e.g. 'accuracy_drop<=1%%,p50<=5ms,size<=2MB,energy<=0.5mJ'; "
                        "accuracy_drop<=1%% is kept unless the budget constrains accuracy or says accuracy_drop<=none; "
                        "exit code 3 when no candidate meets it (the best-effort report is still written)")
    p.add_argument("--max-accuracy-drop", type=float, metavar="POINTS",
                   help="allowed drop of the task's metric on --data, percentage points (the same as "
                        "accuracy_drop<=POINTS%% in --budget; int8-mixed keeps layers FP32 until it holds)")
    p.add_argument("--no-accuracy-budget", action="store_true",
                   help="drop the default accuracy_drop<=1%% constraint (same as adding accuracy_drop<=none)")
    p.add_argument("--objective", default="p50", help="what the winner minimises (p50, p99, size, energy) or "
                   "maximises (accuracy, throughput); default p50")
    from laser.optimize.candidates import DEFAULT_RECIPES

    p.add_argument("--recipes", help="comma-separated: none, int8-static, int8-dynamic, int8-nncf, int8-nncf-ac, int8-pt2e, fp16, "
                   "bf16, fp16-openvino, prune-N, prune-N+int8, search (default: " + ",".join(DEFAULT_RECIPES) + ")")
    p.add_argument("--formats", help="comma-separated: torch, onnx, torchscript, aoti, ort, executorch (default: torch, onnx, torchscript; "
                   "aoti compiles ahead of time: add it to answer static vs dynamic graph)")
    p.add_argument("--backends", help="comma-separated: torch, torchscript, onnxruntime, openvino, aoti, compiled "
                   "(default: every installed one except compiled, which torch.compiles each candidate; with --on: the "
                   "device's runtimes onnxruntime, openvino, executorch)")
    from laser.optimize.targets import TARGETS

    p.add_argument("--target", default=None, metavar="|".join(sorted(TARGETS)) + "|ssh://USER@HOST[:PORT]",
                   help="where the winner runs: " + "; ".join(f"{t.name} = {t.description}" for t in TARGETS.values())
                   + "; ssh://... = mobile, measured on that device (as --on) (default: server). Sets the default "
                   "formats, backends and recipes and refuses others")
    add_on(p)
    p.add_argument("--time-budget", help="stop starting new candidates after this long, e.g. 90s, 10m, 1h")
    p.add_argument("--recipe", help="a winner.toml from an earlier run: rebuild that artifact and measure it")
    p.add_argument("--fresh", action="store_true", help="ignore the cache of an earlier run in OUTPUT")
    p.add_argument("--robustness", action="store_true", help="also measure robustness (FGSM/PGD, corruptions)")
    p.add_argument("--quick", action="store_true", help="few latency iterations and short fine-tuning (smoke runs)")
    add_threads(p)
    p.add_argument("--serve", action="store_true", help="start laser serve on the winner when done")
    add_http_port(p, 8000, "HTTP port for --serve")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json(p, "report.json's summary on stdout")
    p.add_argument("--advise", action="store_true", help="also rank hardware for the winner (laser advise)")
    p.set_defaults(func=cmd_optimize)

    p = sub.add_parser("doctor", help="why CHILD is not faster than PARENT (or less accurate): measured causes + fixes")
    p.add_argument("parent", help="the model before (catalog name, bundle, .onnx ...)")
    p.add_argument("child", help="the model after (bundle, .onnx ...)")
    add_backend(p, None, "backend the child runs on (default: the first for its format)")
    p.add_argument("--parent-backend", help="backend for the parent (default: --backend when it runs it)")
    p.add_argument("--data", help="labelled dataset to compare top-1 (e.g. digits)")
    p.add_argument("--max-accuracy-drop", type=float, help="allowed top-1 drop in percentage points (default 1 with --data)")
    p.add_argument("--quick", action="store_true", help="fewer iterations")
    add_json(p)
    p.set_defaults(func=cmd_doctor)


def cmd_optimize(args: argparse.Namespace) -> int:
    from laser.optimize import Settings, optimize, targets

    settings = (Settings.fast(robustness=args.robustness, threads=args.threads) if args.quick else
                Settings(robustness=args.robustness, threads=args.threads))
    model: Any = args.model
    if (args.input_shape or args.weights) and model is not None:
        model = load_model(args)
    elif args.weights:
        raise ConfigError("--weights needs the model it belongs to: laser optimize MODEL --weights FILE -o OUT")
    data = None if str(args.data).lower() == "none" else args.data
    if args.inputs and data not in (None, "default"):
        raise ConfigError("--inputs are unlabelled samples for runs without labels; with --data the dataset's "
                          "own samples are used: drop one of the two")
    budget = args.budget + (",accuracy_drop<=none" if args.no_accuracy_budget else "")
    if args.max_accuracy_drop is not None:
        if args.max_accuracy_drop < 0 or args.no_accuracy_budget:
            raise ConfigError("--max-accuracy-drop takes a number of points >= 0 (e.g. 1) and cannot be combined "
                              "with --no-accuracy-budget")
        terms = [t for t in budget.split(",") if t.strip() and not t.strip().startswith("accuracy_drop")]
        budget = ",".join([f"accuracy_drop<={args.max_accuracy_drop:g}%", *terms])
    if args.serve and targets.split(args.target, args.on)[1]:  # a device, by --on or --target ssh://
        raise ConfigError("--serve serves the winner on this machine; with --on it was measured on the device: "
                          "drop --serve and copy winner/ there (laser serve runs wherever laser is installed)")
    result = optimize(model, data=None if args.inputs else data, budget=budget, objective=args.objective,
                      recipes=args.recipes, inputs=args.inputs,
                      formats=args.formats, backends=args.backends, output=args.output,
                      time_budget=args.time_budget, resume=not args.fresh, recipe=args.recipe, settings=settings,
                      progress=not args.no_progress,
                      random_weights=args.random_weights, target=args.target, on=args.on, identity=args.identity)
    out = Path(args.output)
    view = _advise(result, out) if args.advise else None
    if args.json:
        d = result.to_dict()
        emit_json({k: d[k] for k in ("target", "device", "verdict", "winner", "feasible", "front", "budget", "interrupted",
                                     "timed_out", "elapsed_s")} | {"output": str(out)}
                  | ({"advice": view[1]} if view else {}))
    else:
        print(result.summary())
        print(f"\nreport: {out / 'report.html'}   json: {out / 'report.json'}   plot: {out / 'pareto.png'}")
        if result.winner_artifact is not None:
            print(f"winner: {out / 'winner'}   recipe: {out / 'winner.toml'} "
                  f"(rebuild: laser optimize --recipe {out / 'winner.toml'} -o OUT)")
        if view:
            print("\n" + view[0])
    if result.interrupted:
        return 130
    if args.serve:
        return _serve(result, out, args.http_port)
    return 0 if result.feasible else NO_CANDIDATE_MEETS_BUDGET


def _advise(result: Any, out: Path) -> tuple[str, dict[str, Any]]:
    """``--advise``: the advisor's view of the winner (laser.cli.advise.winner_view)."""
    if result.winner_artifact is None:
        return "advise: there is no winner to advise on", {"error": "no winner"}
    from laser.cli.advise import winner_view

    return winner_view(result.winner_artifact, where=str(out / "winner"))


def _serve(result: Any, out: Path, port: int) -> int:
    if result.winner_artifact is None:
        raise ConfigError("--serve: there is no winner to serve (nothing was measured); see the report")
    try:
        from laser.serve import serve
    except ImportError as exc:
        raise ConfigError(f"--serve: laser.serve is not available in this install ({exc}); serve the winner "
                          f"later with `laser serve {out / 'winner'}`") from exc
    backend = result.winner.candidate.backend  # serve it on the runtime it was measured (and won) on
    print(f"serving {out / 'winner'} ({backend}) on http://127.0.0.1:{port} (HTTP, Open Inference Protocol v2); "
          "Ctrl-C stops")
    serve(str(out / "winner"), host="127.0.0.1", http_port=port, backend=backend)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from laser.doctor import doctor

    d = doctor(args.parent, args.child, backend=args.backend, parent_backend=args.parent_backend, data=args.data,
               allowed_drop_pts=args.max_accuracy_drop, quick=args.quick)
    if args.json:
        emit_json(d.to_dict())
    else:
        print(d.to_text())
    return 0
