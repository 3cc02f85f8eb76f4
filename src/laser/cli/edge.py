"""Edge subcommands: ``laser edge-config`` (ONNX Runtime's reduced-operator build config for a set of models)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from laser.cli.common import add_json
from laser.cli.output import emit_json
from laser.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edge-config", help="ONNX Runtime reduced-operator build config for one or more models")
    p.add_argument("models", nargs="+", help="models: bundles (torch, onnx or ort), .onnx/.ort files or catalog "
                                             "names; each non-ORT one is converted to ORT format first")
    p.add_argument("-o", "--output", required=True, help="directory for required_operators.config and "
                                                         "required_operators_and_types.config")
    p.add_argument("--random-weights", action="store_true", help="load catalog models with random weights "
                                                                 "(operators do not depend on weights)")
    add_json(p)
    p.set_defaults(func=cmd_edge_config)


def cmd_edge_config(args: argparse.Namespace) -> int:
    from laser.export import export
    from laser.export.ort_format import reduced_build_config
    from laser.loader import load

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output {out} is a file; give a directory")
    ort_files = []
    with tempfile.TemporaryDirectory(prefix="laser-edge-config-") as tmp:
        for i, name in enumerate(args.models):
            art = load(name, random_weights=args.random_weights)
            if art.format != "ort":
                art = export(art, to="ort")
            path = Path(tmp) / f"{i}-{art.name}.ort"
            path.write_bytes(art.model_file.read_bytes())
            ort_files.append(path)
        config = reduced_build_config(ort_files, out)
    summary = {"output": str(out), "models": args.models, "files": [str(p) for p in config["files"].values()],
               "operators": config["operators"], "types": config["types"]}
    if args.json:
        emit_json(summary)
        return 0
    print(f"reduced-operator config for {len(args.models)} model(s) in {out}:")
    for key, ops in config["operators"].items():
        print(f"  {key}: {', '.join(ops)}")
    for name in config["files"]:
        print(f"  wrote {out / name}")
    print("build ONNX Runtime with: ./build.sh --minimal_build --include_ops_by_config "
          f"{out / 'required_operators_and_types.config'} --enable_reduced_operator_type_support")
    return 0
