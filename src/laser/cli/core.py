"""Core subcommands: info, eval, train."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from laser.cli.common import add_backend, add_batch_size, add_json, add_model_args, load_model
from laser.cli.output import emit_json, human_bytes, human_count, percent, table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="spec, parameters, MACs/FLOPs, file sizes and lineage of a model")
    add_model_args(p)
    add_json(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("eval", help="accuracy of a model on a dataset's test split")
    add_model_args(p)
    p.add_argument("--data", default="digits", help="dataset name (default: digits)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    add_backend(p)
    add_json(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train", help="train a catalog model from scratch (seeded)")
    p.add_argument("model", help="catalog name, e.g. digits-cnn")
    p.add_argument("-o", "--output", required=True, help="bundle directory to write")
    p.add_argument("--data", default="digits")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--lr", type=float, default=3e-3)
    add_batch_size(p, 32, "training batch size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logdir", help="TensorBoard log directory (default: OUTPUT/tensorboard, written there once the "
                                    "bundle is saved; give --logdir to watch a run live)")
    add_json(p)
    p.set_defaults(func=cmd_train)


def info_dict(art: Any) -> dict[str, Any]:
    from laser.measure.size import size_of

    size = size_of(art)
    return {
        "name": art.name, "task": art.task, "format": art.format, "location": str(art.location or ""),
        "inputs": [t.to_dict() for t in art.spec.inputs], "outputs": [t.to_dict() for t in art.spec.outputs],
        "params": size.get("params"), "nonzero_params": size.get("nonzero_params"),
        "macs": size.get("macs"), "flops": size.get("flops"), "bytes": size["bytes"], "files": size["files"],
        "method": size.get("method", {}), "labels": list(art.labels),
        "lineage": [s.to_dict() for s in art.lineage], "metrics": dict(art.metrics),
    }


def cmd_info(args: argparse.Namespace) -> int:
    d = info_dict(load_model(args))
    if args.json:
        emit_json(d)
        return 0
    print(f"{d['name']}  ({d['task']}, format {d['format']})")
    rows = [("input", t["name"], t["dtype"], t["shape"]) for t in d["inputs"]]
    rows += [("output", t["name"], t["dtype"], t["shape"]) for t in d["outputs"]]
    print(table(rows, ("", "name", "dtype", "shape")))
    print()
    figures = []
    if d["params"] is not None:
        figures.append(("parameters", f"{d['params']:,}", f"({human_count(d['params'])}; non-zero {d['nonzero_params']:,})"))
    if d["macs"] is not None:
        figures.append(("MACs / sample", f"{d['macs']:,}", f"({human_count(d['macs'])} multiply-accumulates)"))
        figures.append(("FLOPs / sample", f"{d['flops']:,}", f"({human_count(d['flops'])}; FLOPs = 2 x MACs)"))
    figures.append(("bytes on disk", f"{d['bytes']:,}", f"({human_bytes(d['bytes'])})"))
    print(table(figures))
    for name, size in d["files"].items():
        print(f"  {name}: {human_bytes(size)}")
    print("\nlineage:")
    for i, s in enumerate(d["lineage"], 1):
        params = ", ".join(f"{k}={v}" for k, v in s["params"].items())
        print(f"  {i}. {s['op']}({params})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from laser import data as datasets
    from laser.measure.accuracy import classification
    from laser.runtime import run

    art = load_model(args)
    ds = datasets.load(args.data, args.split)
    with run(art, backend=args.backend) as runner:
        result = classification(runner, ds)
        out = {"model": art.name, "data": args.data, "split": args.split, **result,
               "backend": runner.backend, "method": "measured: runner outputs on every sample of the split"}
    if args.json:
        emit_json(out)
    else:
        print(f"{art.name} on {args.data}/{args.split} ({result['samples']} samples, backend {out['backend']}): "
              f"top-1 {percent(result['top1'])}, top-5 {percent(result['top5'])}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from laser import data as datasets
    from laser import hub
    from laser.architecture import build_architecture
    from laser.compress.train import TrainConfig, evaluate_top1, fit

    card = hub.card(args.model)
    torch.manual_seed(args.seed)  # initial weights are part of what the seed fixes
    module = build_architecture(card.architecture)
    out = Path(args.output)
    # TensorBoard logs: one run per output directory, kept inside it (beside the bundle's files). The bundle
    # is swapped in whole, so the logs are written beside it first and moved in once it is saved.
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = None if args.logdir else Path(tempfile.mkdtemp(prefix=f".{out.name}.tensorboard-", dir=out.parent))
    try:
        config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                             logdir=args.logdir or str(staging))
        result = fit(module, datasets.load(args.data, "train"), datasets.load(args.data, "val"), config)
        test_top1 = evaluate_top1(module, datasets.load(args.data, "test"))
        art = _save_trained(module, card, args, result, test_top1, out)
        logdir = args.logdir or str(out / "tensorboard")
        if staging is not None:
            os.rename(staging, logdir)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    summary = {"output": str(art.location), "test_top1": test_top1, "best_val_top1": result.best_val_top1,
               "epochs_run": result.epochs_run, "logdir": logdir}
    if args.json:
        emit_json(summary)
    else:
        print(f"trained {card.name}: test top-1 {percent(test_top1)} (best val {percent(result.best_val_top1 or 0)} "
              f"at epoch {result.best_epoch}); bundle {art.location}; TensorBoard logs in {logdir} "
              f"(tensorboard --logdir {logdir})")
    return 0


def _save_trained(module: Any, card: Any, args: argparse.Namespace, result: Any, test_top1: float, out: Path) -> Any:
    from laser.artifact import Artifact, Step

    step = Step("train", params={"data": args.data, "epochs": args.epochs, "lr": args.lr,
                                 "batch_size": args.batch_size, "seed": args.seed},
                results={"best_val_top1": result.best_val_top1, "best_epoch": result.best_epoch,
                         "epochs_run": result.epochs_run, "test_top1": test_top1})
    return Artifact.from_module(module, name=card.name, task=card.task, spec=card.spec,
                               architecture=card.architecture, preprocessing=card.preprocessing,
                               labels=card.labels, step=step).save(out)
