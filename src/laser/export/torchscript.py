"""PyTorch -> TorchScript (legacy target: TorchScript is deprecated upstream since PyTorch 2.11).

The model is traced; when the tracer reports that it froze Python control flow or values (a
``TracerWarning``), scripting is tried instead and used when it compiles. The result is frozen
(``torch.jit.freeze``: weights become constants, eval-mode branches folded) and the Spec is embedded in
the archive (``laser.loader.TS_SPEC_FILE``) so ``laser.load("model.pt")`` round-trips.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from laser.errors import ExportError
from laser.export.adapter import SpecAdapter, torch_args
from laser.export.onnx import MAX_WARNINGS, reason
from laser.loader import TS_SPEC_FILE
from laser.spec import ModelSpec

DEPRECATION_NOTE = ("TorchScript is deprecated upstream since PyTorch 2.11; laser keeps it as a legacy target. "
                    "Prefer ONNX (laser export MODEL --to onnx) for new deployments.")


def export_torchscript(module: Any, spec: ModelSpec, path: Path, *, dynamic_batch: bool = True) -> dict[str, Any]:
    """Trace (or script) + freeze ``module`` into ``path``; returns what happened."""
    import torch

    adapter = SpecAdapter(module, spec).eval()
    args = torch_args(spec.example_inputs(batch=2 if dynamic_batch else 1), spec)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        try:
            graph = torch.jit.trace(adapter, args, strict=False, check_trace=False)
        except Exception as exc:  # the tracer raises RuntimeError/TypeError/... with long texts
            raise ExportError(f"TorchScript tracing failed on {type(module).__name__}: {reason(exc)}") from exc
        tracer = sorted({str(w.message).splitlines()[0][:200] for w in caught
                         if issubclass(w.category, torch.jit.TracerWarning)})
        method, script_error = "trace", None
        if tracer:  # the trace froze control flow or values: scripting keeps them, if it compiles
            try:  # the model itself (the adapter's *args cannot be scripted); outputs are mapped by the runner
                graph = torch.jit.script(module)
                method = "script"
            except Exception as exc:  # torch.jit.frontend errors, NotSupportedError, RuntimeError
                script_error = reason(exc)
        try:
            frozen = torch.jit.freeze(graph.eval())
        except Exception as exc:
            raise ExportError(f"torch.jit.freeze failed on the {method}d {type(module).__name__}: {reason(exc)}") from exc
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.jit.save(frozen, str(path), _extra_files={TS_SPEC_FILE: json.dumps(spec.to_dict())})
        strip_debug_records(path)
    info: dict[str, Any] = {"method": method, "frozen": True, "seconds": round(time.perf_counter() - start, 3),
                            "note": DEPRECATION_NOTE}
    if tracer:
        info["tracer_warnings"] = tracer[:MAX_WARNINGS]
    if script_error:
        info["script_failed"] = script_error
    return info


def strip_debug_records(path: Path) -> None:
    """Drop the archive's ``*.debug_pkl`` records: source ranges holding absolute paths of the install
    (the same export differed between two clones). torch.jit.load reads the archive without them."""
    import torch

    reader = torch._C.PyTorchFileReader(str(path))
    records = reader.get_all_records()
    if not any(r.endswith(".debug_pkl") for r in records):
        return
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".strip-") as tmp:
        clean = Path(tmp) / path.name  # same file name: the archive's record prefix comes from it
        writer = torch._C.PyTorchFileWriter(str(clean))
        for name in records:
            if not name.endswith(".debug_pkl"):
                data = reader.get_record(name)
                writer.write_record(name, data, len(data))
        writer.write_end_of_file()
        del writer, reader
        os.replace(clean, path)

