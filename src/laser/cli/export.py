"""Deployment subcommands: export, run, diff."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from laser.artifact import EXPORT_TARGETS
from laser.cli.common import (
    add_backend,
    add_batch_size,
    add_json,
    add_model_args,
    add_on,
    add_threads,
    load_model,
)
from laser.cli.output import RANDOM_NOTE, emit_json, table
from laser.errors import ConfigError, InputError, NotFoundError, ParityError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model to ONNX, TorchScript, ORT format or an AOTInductor .pt2, validated against it")
    add_model_args(p)
    p.add_argument("--to", default="onnx", choices=EXPORT_TARGETS, help="target format (default: onnx)")
    p.add_argument("-o", "--output", required=True,
                   help="bundle directory to write; an existing non-bundle directory or a path ending in / gets "
                        "the bundle inside it as NAME-FORMAT")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    p.add_argument("--dynamic-batch", action=argparse.BooleanOptionalAction, default=True,
                   help="keep the batch dim dynamic (default: yes)")
    p.add_argument("--exporter", default="auto", choices=("auto", "dynamo", "legacy", "fastest"),
                   help="ONNX exporter; auto tries dynamo, then legacy; fastest runs both and keeps the graph "
                        "that is faster in onnxruntime here (default: auto)")
    p.add_argument("--data", help="also validate on this dataset's test samples (e.g. digits)")
    p.add_argument("--no-verify", action="store_true", help="skip the parity check (the manifest records it)")
    add_json(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("run", help="run a model on an input file (.npy, .npz or an image) and print or save outputs")
    add_model_args(p)
    p.add_argument("--input", required=True, help=".npy (one input), .npz (arrays named as the inputs) or an image")
    add_backend(p)
    add_threads(p)
    add_on(p)
    p.add_argument("-o", "--output", help="write all outputs to this .npz file")
    p.add_argument("--top-k", type=int, default=5, help="classes to print for classifiers (default: 5)")
    add_json(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("diff", help="per-layer divergence of an ONNX child from its parent (exit 1 if one diverges)")
    p.add_argument("parent", help="the reference: catalog name, bundle, or .onnx file")
    p.add_argument("child", help="the ONNX model to check: bundle or .onnx file")
    p.add_argument("--weights", help="weights for the parent when it is a catalog name or factory")
    p.add_argument("--data", help="use this dataset's first test samples instead of spec examples")
    add_batch_size(p, 1, "samples to compare")
    p.add_argument("--all", action="store_true", help="list every layer, not only up to the first divergent one")
    add_json(p)
    p.set_defaults(func=cmd_diff)


def bundle_dir(output: str, name: str, to: str) -> Path:
    path = Path(output)
    inside = output.endswith(("/", "\\")) or (path.is_dir() and not (path / "laser.json").is_file() and any(path.iterdir()))
    return path / f"{name}-{to}" if inside else path


def cmd_export(args: argparse.Namespace) -> int:
    from laser.export import Export
    from laser.export.validate import summary

    art = load_model(args)
    stage = Export(to=args.to, opset=args.opset, dynamic_batch=args.dynamic_batch, verify=not args.no_verify,
                   exporter=args.exporter, data=args.data)
    target = bundle_dir(args.output, art.name, args.to)
    try:
        exported = stage(art)
    except ParityError as exc:
        child = getattr(exc, "child", None)
        if child is None or child.format != "onnx":
            raise
        failed = child.save(target.with_name(target.name + "-failed"))
        raise ParityError(f"{exc}. The unverified export is kept at {failed.location}: "
                          f"`laser diff {args.model} {failed.location}` shows the first diverging layer") from exc
    saved = exported.save(target)
    results = saved.lineage[-1].results
    if args.json:
        emit_json({"output": str(saved.location), "format": saved.format, **results})
        return 0
    used = results.get("exporter_used", "")
    extra = f", opset {results['opset']}" if "opset" in results else ""
    print(f"exported {art.name} to {saved.format} with {used}{extra}: {saved.location}")
    if "exporter_choice" in results:
        print(f"  exporter chosen by measurement: {results['exporter_choice']}")
    for attempt in results.get("attempts", []):
        if not attempt["ok"]:
            print(f"  {attempt['exporter']} exporter failed first: {attempt['error']}")
    info = results.get("export", {})
    for warning in [*info.get("warnings", []), *info.get("tracer_warnings", [])][:3]:
        print(f"  exporter warning: {warning}")
    note = info.get("note")
    if note:
        print(f"  note: {note}")
    if results.get("verified"):
        print(f"  validation against {art.format}: {summary(results['validation'])}")
    else:
        print("  NOT VERIFIED (--no-verify): the manifest records that nothing was checked")
    return 0


def read_inputs(path: str, art: Any) -> dict[str, np.ndarray]:
    """Runner feeds from a .npy/.npz file or an image, shaped and typed as the artifact's spec says."""
    from laser.preprocess import image_to_array, read_arrays

    file = Path(path)
    if not file.is_file():
        raise NotFoundError(f"input file {file} does not exist")
    spec = art.spec
    suffix = file.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        if len(spec.inputs) != 1:
            raise InputError(f"{art.name!r} takes {len(spec.inputs)} inputs {spec.input_names}; an image gives one. "
                             "Pass a .npz file with one array per input")
        arrays = {spec.inputs[0].name: image_to_array(file, art.preprocessing)}
    elif suffix == ".npy":
        if len(spec.inputs) != 1:
            raise InputError(f"{art.name!r} takes {len(spec.inputs)} inputs {spec.input_names}; a .npy file holds "
                             "one. Pass a .npz file with one array per input name")
        arrays = {spec.inputs[0].name: read_arrays(file)[""]}
    elif suffix == ".npz":
        found = read_arrays(file)
        if len(spec.inputs) == 1 and len(found) == 1:
            arrays = {spec.inputs[0].name: next(iter(found.values()))}
        else:
            missing = [n for n in spec.input_names if n not in found]
            if missing:
                raise InputError(f"{file} holds arrays {sorted(found)}; {art.name!r} needs {spec.input_names} "
                                 f"(missing {missing}); save them with np.savez(path, name=array, ...)")
            arrays = {n: found[n] for n in spec.input_names}
    else:
        raise ConfigError(f"cannot read inputs from {file.name}: use .npy, .npz or an image ({', '.join(IMAGE_SUFFIXES)})")
    feeds = {}
    for t in spec.inputs:
        a = np.asarray(arrays[t.name])
        if a.ndim == len(t.shape) - 1:  # one sample without the batch dim
            a = a[None]
        if a.dtype != t.np_dtype and a.dtype.kind == t.np_dtype.kind:  # float64 -> float32, int32 -> int64
            a = a.astype(t.np_dtype)
        feeds[t.name] = np.ascontiguousarray(a)
    return feeds


def cmd_run(args: argparse.Namespace) -> int:
    from laser.preprocess import top_k
    from laser.runtime import run

    if args.output and not args.output.endswith(".npz"):
        raise ConfigError(f"-o {args.output}: outputs are written as one .npz file; name it "
                          f"{Path(args.output).with_suffix('.npz')}")
    art = load_model(args)
    feeds = read_inputs(args.input, art)
    options: dict[str, Any] = {"threads": args.threads} if args.threads else {}
    backend = args.backend
    if args.on:
        art = for_device(art)
        options.update(on=args.on, identity=args.identity, runtime=args.backend)
        backend = "ssh"
    with run(art, backend=backend, **options) as runner:
        outputs = runner(feeds)
        described = runner.describe()
        choice = getattr(runner, "choice", None)
    result: dict[str, Any] = {"model": art.name, "random_weights": art.random_weights, "backend": described, "outputs": {
        n: {"shape": list(v.shape), "dtype": str(v.dtype)} for n, v in outputs.items()}}
    if args.on:
        result["local_parity"] = local_parity(art, feeds, outputs)
    if choice:
        result["auto_choice"] = choice["reason"]
    first = art.spec.outputs[0].name
    if art.task.endswith("classification") and outputs[first].ndim == 2:
        result["top_k"] = top_k(outputs[first], art.labels, args.top_k)
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, **outputs)  # type: ignore[arg-type]
        result["written"] = str(out)
    if args.json:
        emit_json(result)
        return 0
    print(f"{art.name} on {described['backend']}" + (f" (auto: {choice['reason']})" if choice else ""))
    if args.on:
        print(device_lines(described, result["local_parity"]))
    if art.random_weights:
        print(RANDOM_NOTE)
    if "top_k" in result:
        for i, row in enumerate(result["top_k"]):
            ranked = ", ".join(f"{r['label']} {100 * r['score']:.1f} %" for r in row)
            print(f"  sample {i}: {ranked}")
    else:
        for n, v in outputs.items():
            print(f"  {n}: shape {list(v.shape)} {v.dtype}, first values {np.ravel(v)[:5].tolist()}")
    if args.output:
        print(f"outputs written to {args.output}")
    return 0


def for_device(art: Any) -> Any:
    """What runs on an SSH device: onnx/ort/executorch as they are; a torch model exported to ONNX (validated)."""
    if art.format != "torch":
        return art
    from laser.export import export

    return export(art, to="onnx")


def local_parity(art: Any, feeds: dict[str, np.ndarray], remote: dict[str, np.ndarray]) -> dict[str, Any]:
    """The device's outputs against this machine's on the same inputs, with the Spec's tolerance."""
    from laser.runtime import backends_for, run

    tol = art.spec.tolerance
    with run(art, backend=backends_for(art)[0]) as local:
        mine = local(feeds)
        backend = local.backend
    errs = {n: float(np.max(np.abs(remote[n].astype(np.float64) - mine[n]))) if mine[n].size else 0.0 for n in mine}
    ok = all(np.allclose(remote[n], mine[n], atol=tol.atol, rtol=tol.rtol) for n in mine)
    return {"local_backend": backend, "max_abs_error": max(errs.values(), default=0.0), "within_tolerance": ok,
            "atol": tol.atol, "rtol": tol.rtol,
            "method": "measured: |device - local| element-wise on the same inputs; within = allclose(atol, rtol)"}


def device_lines(described: dict[str, Any], parity: dict[str, Any]) -> str:
    emulated = f", EMULATED ({described['emulated']})" if described.get("emulated") else ""
    verdict = "within" if parity["within_tolerance"] else "OUTSIDE"
    return (f"  device {described['device']}: {described['arch']}, {described['cpu']}{emulated}; "
            f"{described['runtime']} {described['runtime_version']}\n"
            f"  vs {parity['local_backend']} here: max abs error {parity['max_abs_error']:.3g}, {verdict} the spec "
            f"tolerance (atol {parity['atol']:g}, rtol {parity['rtol']:g})")


def cmd_diff(args: argparse.Namespace) -> int:
    from laser.export.diff import diff
    from laser.loader import load

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    parent = load(args.parent, weights=args.weights)
    child = load(args.child)
    result = diff(parent, child, data=args.data, batch=args.batch_size)
    first = result["first_divergent"]
    if args.json:
        emit_json(result)
        return 1 if first else 0
    rows = []
    for row in result["layers"]:
        mark = "<-- first divergent" if row is first else ""
        rows.append((row["layer"], row["type"], "x".join(map(str, row["shape"])), f"{row['max_abs_error']:.3g}",
                     f"{row['max_rel_error']:.3g}", "ok" if row["within_tolerance"] else "OUT", mark))
        if row is first and not args.all:
            rows.append(("...", "", "", "", "", "", f"({len(result['layers']) - len(rows)} more layers; --all)"))
            break
    print(f"{result['child']} vs {result['parent']} ({result['parent_format']}) on {result['inputs']}, "
          f"tolerance atol={result['tolerance']['atol']:g} rtol={result['tolerance']['rtol']:g}")
    print(table(rows, ("layer", "type", "shape", "max abs err", "max rel err", "check", "note")))
    if result["unmatched"]:
        print(f"{len(result['unmatched'])} module(s) have no tensor of their own in the graph (fused by the "
              f"exporter): {', '.join(result['unmatched'][:8])}{' ...' if len(result['unmatched']) > 8 else ''}")
    if first:
        print(f"first divergent layer: {first['layer']} ({first['type']}), max abs error {first['max_abs_error']:.3g}")
        return 1
    print("no layer diverges beyond tolerance")
    return 0
