"""Compression subcommands: prune (and sensitivity analysis), distill, search (latency-aware widths)."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

from laser.cli.common import add_backend, add_batch_size, add_json, add_model_args, add_threads, load_model
from laser.cli.output import emit_json, human_count, percent, table
from laser.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="remove channels (structured) or zero weights; --sensitivity analyses layers")
    add_model_args(p)
    p.add_argument("-o", "--output", help="bundle directory to write (optional with --sensitivity: analysis only)")
    p.add_argument("--ratio", type=float, default=0.5, help="fraction of channels/weights removed per layer (default 0.5)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--structured", dest="structured", action="store_true", default=True,
                      help="remove whole channels through the dependency graph (default)")
    kind.add_argument("--unstructured", dest="structured", action="store_false",
                      help="zero single weights by magnitude (smaller when compressed, not faster)")
    p.add_argument("--criterion", default="l1", choices=("l1", "l2", "bn", "taylor"), help="channel importance")
    p.add_argument("--round-to", type=int, default=8, help="keep channel counts a multiple of this (default 8; 1: off)")
    p.add_argument("--per-layer", help="per-layer ratios, e.g. features.0.0=0.25,features.1.0=0.6")
    p.add_argument("--exclude", help="comma-separated layers to keep whole (the classifier head always is)")
    p.add_argument("--global", dest="global_pruning", action="store_true", help="rank channels across layers")
    p.add_argument("--steps", type=int, default=1, help="reach the ratio in this many steps (default 1)")
    p.add_argument("--finetune-epochs", type=int, default=0, help="fine-tuning epochs after each step (default 0)")
    p.add_argument("--data", default="digits", help="dataset for fine-tuning, accuracy and sensitivity (default digits)")
    p.add_argument("--sensitivity", action="store_true",
                   help="measure each layer's accuracy drop at several ratios (table + PNG); with -o, pick "
                        "per-layer ratios giving the MACs of uniform --ratio where accuracy suffers least")
    p.add_argument("--plot", help="sensitivity PNG path (default: OUTPUT-sensitivity.png or sensitivity.png)")
    p.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate (default 1e-3)")
    add_json(p)
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("distill", help="train a student to match a teacher (Hinton KD, optional feature matching)")
    add_model_args(p, "student")
    p.add_argument("--teacher", required=True, help="teacher: catalog name or bundle directory")
    p.add_argument("-o", "--output", required=True, help="bundle directory to write")
    p.add_argument("--data", default="digits", help="labelled dataset to train on (default digits)")
    p.add_argument("--temperature", type=float, default=4.0, help="softmax temperature T (default 4)")
    p.add_argument("--alpha", type=float, default=0.7, help="weight of the soft-target loss (default 0.7)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--feature-layers", help="layers to match: name or student=teacher, comma-separated")
    p.add_argument("--lr", type=float, default=1e-3)
    add_json(p)
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("search", help="per-layer widths meeting a latency budget on a backend, then prune + fine-tune")
    add_model_args(p)
    p.add_argument("--latency-budget", required=True, help="p50 budget, e.g. 2ms or 500us")
    add_backend(p, "onnxruntime", "backend the budget holds on")
    p.add_argument("-o", "--output", required=True, help="bundle directory to write")
    add_batch_size(p, 1, "batch size of the latency budget")
    p.add_argument("--data", default="digits", help="labelled dataset (default digits)")
    p.add_argument("--ratios", default="0.2,0.4,0.6,0.8", help="channel ratios tried per layer group")
    p.add_argument("--finetune-epochs", type=int, default=5, help="fine-tuning epochs after pruning (default 5)")
    p.add_argument("--no-distill", action="store_true", help="fine-tune with plain cross-entropy, no teacher")
    p.add_argument("--exporter", default="legacy", choices=("auto", "dynamo", "legacy"), help="ONNX exporter")
    p.add_argument("--margin", type=float, default=0.05, help="aim this fraction under the budget (default 0.05)")
    add_threads(p)
    add_json(p)
    p.set_defaults(func=cmd_search)


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def _ratios(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    out = {}
    for item in _names(text):
        name, _, value = item.rpartition("=")
        try:
            out[name] = float(value)
        except ValueError:
            raise ConfigError(f"--per-layer wants name=ratio pairs like features.0.0=0.25, got {item!r}") from None
        if not name:
            raise ConfigError(f"--per-layer wants name=ratio pairs like features.0.0=0.25, got {item!r}")
    return out


def _plot_path(args: argparse.Namespace) -> Path:
    if args.plot:
        return Path(args.plot)
    return Path(args.output.rstrip("/") + "-sensitivity.png") if args.output else Path("sensitivity.png")


def cmd_prune(args: argparse.Namespace) -> int:
    from laser.compress.prune import Prune, UnstructuredSparsityWarning
    from laser.compress.sensitivity import Sensitivity

    stage = Prune(ratio=args.ratio, structured=args.structured, criterion=args.criterion,
                  round_to=args.round_to if args.round_to > 1 else None, per_layer=_ratios(args.per_layer),
                  exclude=_names(args.exclude), global_pruning=args.global_pruning, steps=args.steps,
                  finetune_epochs=args.finetune_epochs, data=args.data, sensitivity=args.sensitivity and bool(args.output),
                  lr=args.lr, progress=not args.json)
    art = load_model(args)
    if args.sensitivity and not args.output:
        return _sensitivity_only(args, art, stage)
    if not args.output:
        raise ConfigError("laser prune needs -o DIR (where to write the pruned bundle), or --sensitivity alone")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnstructuredSparsityWarning)
        saved = stage(art).save(args.output)
    r = dict(saved.lineage[-1].results)
    out: dict[str, Any] = {"output": str(saved.location), **r}
    if "sensitivity" in r:
        out["sensitivity_plot"] = str(Sensitivity.from_dict(r["sensitivity"]).plot(_plot_path(args)))
    if args.json:
        emit_json(out)
        return 0
    if "sensitivity" in r:
        print(Sensitivity.from_dict(r["sensitivity"]).table())
        print(f"per-layer ratios chosen: {saved.lineage[-1].params['per_layer']}; plot {out['sensitivity_plot']}\n")
    _print_prune(art.name, r, saved.location)
    for w in caught:
        print(f"note: {w.message}")
    return 0


def _sensitivity_only(args: argparse.Namespace, art: Any, stage: Any) -> int:
    from laser.compress.common import load_data, torch_module
    from laser.compress.sensitivity import RATIOS, analyze

    module, _ = torch_module(art, "prune")
    data = load_data(args.data, "val", art.spec, "sensitivity analysis", required=True)
    sens = analyze(module, art.spec, data, ratios=sorted({*RATIOS, args.ratio} - {0.0}), criterion=stage.criterion,
                   round_to=stage.round_to, exclude=stage.exclude, progress=not args.json)
    plot = sens.plot(_plot_path(args))
    if args.json:
        emit_json({**sens.to_dict(), "plot": str(plot)})
    else:
        print(sens.table())
        print(f"plot: {plot}")
    return 0


def _print_prune(name: str, r: dict[str, Any], location: Any) -> None:
    def change(a: Any, b: Any, fmt=human_count) -> str:
        return f"{fmt(a)} -> {fmt(b)} ({b / a:.2f}x)" if a else "n/a"

    rows = [("MACs / sample (counted, batch 1)", change(r["macs_before"], r["macs_after"])),
            ("parameters", change(r["params_before"], r["params_after"])),
            ("non-zero parameters", f"{r['nonzero_params_after']:,}")]
    if r.get("top1_before") is not None:
        rows.append((f"top-1 on {r['accuracy_data']} test (measured)",
                     f"{percent(r['top1_before'])} -> {percent(r['top1_after'])}"))
    if "sparsity" in r:
        rows.append(("sparsity of pruned layers (measured)", percent(r["sparsity"]["pruned_layers_sparsity"])))
    print(f"pruned {name}: bundle {location}")
    print(table(rows))
    layers = r.get("layers") or {}
    if layers:
        print()
        print(table([(n, a, b) for n, (a, b) in layers.items()], ("layer", "channels before", "after")))


def cmd_distill(args: argparse.Namespace) -> int:
    from laser.compress.distill import Distill

    stage = Distill(teacher=args.teacher, temperature=args.temperature, alpha=args.alpha, epochs=args.epochs,
                    feature_layers=_names(args.feature_layers), data=args.data, lr=args.lr, progress=not args.json)
    saved = stage(load_model(args, "student")).save(args.output)
    r = dict(saved.lineage[-1].results)
    if args.json:
        emit_json({"output": str(saved.location), **r})
        return 0
    acc = (f"top-1 on {r['accuracy_data']} test (measured): {percent(r['top1_before'])} -> {percent(r['top1_after'])} "
           f"(teacher {percent(r['teacher_top1'])})" if r.get("top1_before") is not None else "")
    print(f"distilled {saved.name} from {args.teacher} ({r['epochs_run']} epochs, T={args.temperature}, "
          f"alpha={args.alpha}): {acc}; bundle {saved.location}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from laser.compress.nas import WidthSearch, lookup_rows

    try:
        ratios = tuple(float(r) for r in _names(args.ratios))
    except ValueError:
        raise ConfigError(f"--ratios wants comma-separated fractions like 0.2,0.4,0.6, got {args.ratios!r}") from None
    stage = WidthSearch(latency_budget_ms=args.latency_budget, backend=args.backend, data=args.data,
                        batch_size=args.batch_size, ratios=ratios, finetune_epochs=args.finetune_epochs,
                        distill=not args.no_distill, exporter=args.exporter, margin=args.margin,
                        threads=args.threads, progress=not args.json)
    saved = stage(load_model(args)).save(args.output)
    r = dict(saved.lineage[-1].results)
    if args.json:
        emit_json({"output": str(saved.location), **{k: v for k, v in r.items() if k != "sensitivity"}})
        return 0
    if r.get("lookup_table_ms"):
        print(table(lookup_rows(r), ("layer group", "ratio: width", f"p50 ms (measured, batch {args.batch_size})")))
        print()
    rows = [("budget", f"{r['budget_ms']:.3f} ms p50 on {args.backend}, batch {args.batch_size}"),
            ("unpruned (measured)", f"{r['base_latency_ms']:.3f} ms"),
            ("searched, exported (measured)", f"{r['final_latency_ms']:.3f} ms"),
            ("per-layer ratios", str(r["per_layer"]))]
    if r.get("macs_before"):
        rows.append(("MACs / sample (counted)", f"{human_count(r['macs_before'])} -> {human_count(r['macs_after'])}"))
    if r.get("top1_before") is not None:
        rows.append((f"top-1 on {r['accuracy_data']} test (measured)",
                     f"{percent(r['top1_before'])} -> {percent(r['top1_after'])}"))
    print(table(rows))
    print(f"bundle {saved.location}")
    return 0
