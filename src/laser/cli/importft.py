"""Bring your own model: ``laser import`` (ONNX -> laser, or -> PyTorch) and ``laser finetune``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from laser.cli.common import add_input_shape, add_json, add_model_args, load_model, parse_shape
from laser.cli.output import emit_json, percent
from laser.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="a model made elsewhere (ONNX, TF SavedModel, Keras, TFLite, Paddle) as a "
                                      "laser bundle; --to torch converts it to PyTorch (onnx2torch) so it can be "
                                      "pruned, distilled, fine-tuned")
    p.add_argument("source", help=".onnx, SavedModel directory, .keras/.h5, .tflite, Paddle .pdmodel/.json")
    p.add_argument("-o", "--output", required=True, help="bundle directory to write")
    p.add_argument("--to", choices=("onnx", "torch"), help="bundle format (default onnx; an OpenVINO IR when only "
                                                          "OpenVINO can convert the source)")
    p.add_argument("--converter", choices=("openvino", "tf2onnx", "paddle2onnx"),
                   help="converter of a TF/TFLite/Paddle model (default tf2onnx/paddle2onnx, falling back to "
                        "openvino when they are not installed or fail)")
    p.add_argument("--name", help="model name (default: the file's stem)")
    p.add_argument("--labels", help="class names, comma-separated, or a file with one per line")
    p.add_argument("--preprocessing", help="JSON or .toml file with the preprocessing dict (see laser info digits-cnn)")
    add_input_shape(p, "per-sample input shape fixing the source's dynamic dims, e.g. 3,48,192")
    p.add_argument("--signature", help="SavedModel signature to convert (asked for when there are several)")
    p.add_argument("--python", help="Python with tensorflow+tf2onnx / paddlepaddle+paddle2onnx that converts "
                                    "(default $LASER_FRAMEWORKS_PYTHON, else laser's; make frameworks-venv)")
    add_json(p)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("finetune", help="transfer learning: new head for the classes of an image folder or a "
                                        "label<TAB>text file, frozen backbone, held-out accuracy in the manifest")
    add_model_args(p)
    p.add_argument("--data", required=True, help="image folder (DIR/<class>/*.png), a text file of label<TAB>text "
                                                 "lines (for a text model), or a registered dataset name")
    p.add_argument("-o", "--output", required=True, help="bundle directory to write")
    p.add_argument("--epochs", type=int, default=30, help="at most this many epochs (default 30)")
    p.add_argument("--lr", type=float, default=3e-3, help="learning rate (default 3e-3)")
    p.add_argument("--patience", type=int, default=8, help="early stopping patience in epochs (default 8)")
    depth = p.add_mutually_exclusive_group()
    depth.add_argument("--unfreeze", type=int, default=0, help="also train the last N layers of the backbone")
    depth.add_argument("--full", action="store_true", help="train every layer")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no shifts/noise while training")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images (listed in the report)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logdir", help="TensorBoard log directory")
    p.add_argument("--checkpoint", help="checkpoint directory (resumes from it when it exists)")
    add_json(p)
    p.set_defaults(func=cmd_finetune)


def _labels(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    path = Path(text)
    if path.is_file():
        return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _preprocessing(text: str | None) -> dict[str, Any]:
    """The preprocessing dict of a JSON file, or of a TOML file (``.toml``: its top-level table)."""
    if not text:
        return {}
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"--preprocessing file {path} does not exist")
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            data: Any = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"--preprocessing {path} is not TOML ({exc})") from exc
    else:
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--preprocessing {path} is not JSON ({exc}); a .toml file is read as TOML") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"--preprocessing {path} must hold a JSON object like {{\"type\": \"image\", ...}}")
    return data


def cmd_import(args: argparse.Namespace) -> int:
    from laser.importer import import_model

    art = import_model(args.source, to=args.to, name=args.name, input_shape=parse_shape(args.input_shape),
                       preprocessing=_preprocessing(args.preprocessing), labels=_labels(args.labels),
                       signature=args.signature, python=args.python, converter=args.converter)
    saved = art.save(args.output)
    step = saved.lineage[-1]
    parity = step.results.get("parity")
    if args.json:
        emit_json({"output": str(saved.location), "format": saved.format, **dict(step.results)})
        return 0
    shapes = ", ".join(f"{t.name} {t.describe()}" for t in saved.spec.inputs)
    via = step.params.get("converter")
    print(f"imported {args.source}{f' with {via}' if via else ''}: {saved.format} bundle {saved.location} "
          f"(inputs {shapes})")
    reason = step.params.get("converter_reason", "")
    if reason.startswith("fallback"):
        print(f"converter: {reason}")
    source = step.results.get("parity_vs_source")
    if source:
        print(f"parity (measured, {source['method']}):")
        for key, what in (("vs_source", "source framework"), ("vs_openvino", "OpenVINO's reading of the source"),
                          ("openvino_vs_source", "OpenVINO vs the source framework")):
            r = source.get(key)
            if r is not None:
                print(f"  {what}: {r['note']}" if "note" in r else f"  {what}: max |diff| {r['max_abs_diff']:.3g}"
                      + (f", top-1 agreement {percent(r['top1_agreement'])}" if r["top1_agreement"] is not None else ""))
    if parity:
        agree = parity["top1_agreement"]
        print(f"parity vs onnxruntime (measured, {parity['method']}): max |diff| {parity['max_abs_diff']:.3g}"
              + (f", top-1 agreement {percent(agree)}" if agree is not None else ""))
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from laser.finetune import Finetune

    stage = Finetune(data=args.data, epochs=args.epochs, lr=args.lr, patience=args.patience, unfreeze=args.unfreeze,
                     full=args.full, augment=args.augment, skip_bad=args.skip_bad, seed=args.seed,
                     logdir=args.logdir, checkpoint=args.checkpoint, progress=not args.json)
    saved = stage(load_model(args)).save(args.output)
    r = dict(saved.lineage[-1].results)
    if args.json:
        emit_json({"output": str(saved.location), "labels": list(saved.labels), **r})
        return 0
    print(f"fine-tuned {saved.name} on {args.data}: {len(saved.labels)} classes {list(saved.labels)}, "
          f"{r['epochs_run']} epochs, {r['trainable_params']:,} trainable parameters")
    print(f"held-out top-1 (measured, torch eager, {r['holdout_samples']} samples): {percent(r['holdout_top1'])}; "
          f"bundle {saved.location}")
    for f in r["skipped"]:
        print(f"skipped unreadable: {f}")
    return 0
