"""ONNX -> ORT format (``.ort``), the flatbuffer format ONNX Runtime's mobile/edge (minimal) builds load.

Done as ``python -m onnxruntime.tools.convert_onnx_models_to_ort`` does with its default 'Fixed'
style: the graph is optimised at level ALL once, here, and saved; the NCHWc layout transformer is
disabled because its kernels are x86-specific and the file must run on ARM devices too.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from laser.errors import ExportError, require
from laser.export.onnx import reason


def convert_to_ort(onnx_path: Path, path: Path) -> dict[str, Any]:
    ort = require("onnxruntime", "onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(path)
    so.add_session_config_entry("session.save_model_format", "ORT")
    so.log_severity_level = 3
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"],
                             disabled_optimizers=["NchwcTransformer"])
    except Exception as exc:  # onnxruntime's Fail / InvalidGraph / NotImplemented
        raise ExportError(f"onnxruntime cannot convert {onnx_path.name} to ORT format: {reason(exc)}") from exc
    if not path.is_file():
        raise ExportError(f"onnxruntime {ort.__version__} did not write {path.name}; this build may lack "
                          "ORT-format saving (use the full onnxruntime package)")
    return {"converter": f"onnxruntime {ort.__version__} (optimization level ALL, NchwcTransformer disabled)",
            "seconds": round(time.perf_counter() - start, 3)}


CONFIG_FILES = {"required_operators.config": False, "required_operators_and_types.config": True}


def reduced_build_config(ort_files: list[Path], directory: Path) -> dict[str, Any]:
    """ONNX Runtime's reduced-operator build configuration for ``ort_files`` (one or several ``.ort``
    models), written by onnxruntime's own tooling (``create_config_from_models``, what
    ``convert_onnx_models_to_ort`` writes): ``required_operators.config`` (operators per domain and
    opset) and ``required_operators_and_types.config`` (with the types each operator needs). Pass either
    to ONNX Runtime's ``build.sh --minimal_build --include_ops_by_config``. Returns the files and the
    operators/types parsed back from them."""
    require("onnxruntime", "onnx")
    from onnxruntime.tools.ort_format_model import create_config_from_models

    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)  # its "Created config" INFO lines
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, typed in CONFIG_FILES.items():
        path = directory / name
        try:
            create_config_from_models([Path(f) for f in ort_files], path, typed)
        except Exception as exc:  # the ORT flatbuffer reader raises ValueError/RuntimeError on a bad file
            raise ExportError(f"onnxruntime cannot read the operators of {[Path(f).name for f in ort_files]}: "
                              f"{reason(exc)}") from exc
        # the tool names the models by their (temporary) paths; keep the file names, so the file is reproducible
        lines = [f"# - {Path(ln[4:]).name}" if ln.startswith("# - ") else ln for ln in path.read_text().splitlines()]
        path.write_text("\n".join(lines) + "\n")
        written[name] = path
    return {"files": written, **parse_config(written["required_operators_and_types.config"])}


def parse_config(path: Path) -> dict[str, Any]:
    """``{"operators": {"ai.onnx;17": ["Conv", ...]}, "types": {"ai.onnx;17;Conv": "{...}"}}`` from a config."""
    operators: dict[str, list[str]] = {}
    types: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        domain, opset, entries = line.split(";", 2)
        names = []
        for entry in _split_entries(entries):
            op, _, typed = entry.partition("{")
            names.append(op)
            if typed:
                types[f"{domain};{opset};{op}"] = "{" + typed
        operators[f"{domain or 'ai.onnx'};{opset}"] = names
    return {"operators": operators, "types": types}


def _split_entries(entries: str) -> list[str]:
    """Split ``Conv{...},Relu`` on the commas outside braces (type entries hold commas of their own)."""
    out, depth, cur = [], 0, ""
    for ch in entries:
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [e for e in [*out, cur] if e]
