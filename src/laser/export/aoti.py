"""PyTorch -> AOTInductor package (``.pt2``): ``torch.export`` then ``aoti_compile_and_package``.

The graph is captured with the Spec's named dims dynamic (the batch dim shared by every input, as for
ONNX); Inductor compiles it to a shared library inside the package, which ``aoti_load_package`` (Python)
and ``AOTIModelPackageLoader`` (C++, libtorch) run without Python model code. Inductor's compile cache
goes to ``compile_cache_dir()``: outside the project tree and the home directory.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from laser.errors import ExportError
from laser.export.adapter import SpecAdapter, torch_args
from laser.spec import ModelSpec

HINT = ("torch.export cannot capture this model; export it to ONNX (--to onnx, which falls back to the "
        "TorchScript-based exporter) or to TorchScript (--to torchscript) instead")
CACHE_ENV = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")


def compile_cache_dir() -> Path:
    """Where Inductor keeps compiled kernels: ``$LASER_CACHE_DIR/inductor``, else a per-user folder in the
    system temp dir (never the project tree, never ``~``). Sets the compiler's cache variables."""
    root = os.environ.get("LASER_CACHE_DIR") or os.path.join(tempfile.gettempdir(), f"laser-cache-{os.getuid()}")
    path = Path(root) / "inductor"
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    os.environ["TRITON_CACHE_DIR"] = str(path / "triton")
    return path


def trimmed(exc: BaseException, lines: int = 6) -> str:
    """torch.export's own message, first lines only (it names the op / graph break and the user's line)."""
    text = [ln.rstrip() for ln in str(exc).splitlines() if ln.strip()]
    keep = [ln for ln in text if not ln.lstrip().startswith(("For more information", "Set TORCH", "from user code"))]
    out = " | ".join(ln.strip() for ln in keep[:lines])
    return (out[:900] + " ...") if len(out) > 900 else out or type(exc).__name__


def dynamic_shapes(spec: ModelSpec) -> tuple[dict[int, Any], ...]:
    """One ``torch.export.Dim`` per named dim of the Spec (shared across inputs), per input (the adapter
    takes ``*args``, so the caller wraps this tuple once more)."""
    import torch

    dims: dict[str, Any] = {}
    out = []
    for t in spec.inputs:
        entry = {}
        for i, d in enumerate(t.shape):
            if isinstance(d, str):
                dims.setdefault(d, torch.export.Dim(d.replace("-", "_"), min=1))
                entry[i] = dims[d]
        out.append(entry)
    return tuple(out)


def export_aoti(module: Any, spec: ModelSpec, path: Path, *, dynamic_batch: bool = True) -> dict[str, Any]:
    """Capture + compile ``module`` into the package ``path``; returns what happened (seconds per phase)."""
    import torch

    cache = compile_cache_dir()
    adapter = SpecAdapter(module, spec).eval()
    args = torch_args(spec.example_inputs(batch=2 if dynamic_batch else 1), spec)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch-internal pytree deprecations
        try:
            program = torch.export.export(adapter, args, dynamic_shapes=(dynamic_shapes(spec),) if dynamic_batch else None)
        except Exception as exc:  # torch._dynamo.exc.Unsupported / UserError / constraint violations ...
            raise ExportError(f"torch.export failed on {type(module).__name__}: {trimmed(exc)}; {HINT}") from exc
        captured = time.perf_counter()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch._inductor.aoti_compile_and_package(program, package_path=str(path))
        except Exception as exc:  # a C++ compiler missing or failing, an op Inductor cannot lower
            raise ExportError(f"AOTInductor could not compile {type(module).__name__}: {trimmed(exc)} "
                              "(it needs a C++ compiler: apt-get install -y g++)") from exc
    done = time.perf_counter()
    fallbacks = sorted({str(n.target) for n in program.graph.nodes if n.op == "call_function"
                        and not str(n.target).startswith(("aten.", "<built-in"))})
    return {"export_seconds": round(captured - start, 3), "compile_seconds": round(done - captured, 3),
            "seconds": round(done - start, 3), "dynamic_dims": sorted({d for t in spec.inputs for d in t.shape
                                                                       if isinstance(d, str)}) if dynamic_batch else [],
            "graph_nodes": sum(1 for n in program.graph.nodes if n.op == "call_function"),
            "non_aten_ops": fallbacks, "cache_dir": str(cache), "torch": torch.__version__}
