"""ONNX -> ORT format (``.ort``), the flatbuffer format ONNX Runtime's mobile/edge (minimal) builds load.

Done as ``python -m onnxruntime.tools.convert_onnx_models_to_ort`` does with its default 'Fixed'
style: the graph is optimised at level ALL once, here, and saved; the NCHWc layout transformer is
disabled because its kernels are x86-specific and the file must run on ARM devices too.
"""

from __future__ import annotations

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
