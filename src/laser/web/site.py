"""Write the static site for an ONNX artifact: page, laser.js, model, model.json and onnxruntime-web.

The folder is self-contained: the page fetches only files inside it (the runtime's ``.mjs`` and ``.wasm``
are copied from the npm package into ``ort/``), so it works offline or from an intranet server. It is
written beside its target and renamed into place, so a failed build leaves nothing half-written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from laser.artifact import Artifact, json_safe
from laser.errors import ConfigError
from laser.web import ops
from laser.web.runtime_files import FILES, PACKAGE, VERSION, WASM_FILES, runtime_dist

ASSETS = ("index.html", "laser.js", "page.js", "preprocess.js")
MARKER = "model.json"  # a folder holding this (and index.html) is a site laser wrote, and may be replaced
BACKENDS = ("auto", "wasm", "webgpu")


def precision(art: Artifact) -> str:
    """fp32 / int8 / fp16, from the artifact's lineage."""
    for step in reversed(art.lineage):
        text = f"{step.op} {step.params.get('method', '')} {step.params.get('precision', '')}".lower()
        for p in ("int8", "fp16", "bf16"):
            if p in text:
                return p
        if step.op == "quantize":
            return "int8"
    return "fp32"


def config(art: Artifact, file: str, backend: str, not_on_webgpu: list[str]) -> dict[str, Any]:
    """model.json: what the page and laser.js need to know about the model."""
    pre = dict(art.preprocessing)
    return json_safe({
        "file": file, "runtime": f"{PACKAGE} {VERSION}", "backend": backend,
        "about": {"name": art.name, "task": art.task, "format": art.format, "precision": precision(art),
                  "bytes": art.model_file.stat().st_size, "lineage": [s.op for s in art.lineage]},
        "inputs": [t.to_dict() for t in art.spec.inputs], "outputs": [t.to_dict() for t in art.spec.outputs],
        "tolerance": art.spec.to_dict()["tolerance"], "preprocessing": pre, "labels": list(art.labels),
        "not_on_webgpu": not_on_webgpu,
    })


def _model_bytes(art: Artifact) -> bytes:
    """The ONNX model as one file (external data, if any, folded in: the page fetches one file)."""
    import onnx

    data = art.model_file.read_bytes()
    if len(art.files) == 1:
        return data
    model = onnx.load(str(art.model_file))  # loads external data from beside the file
    return model.SerializeToString()


def write_site(art: Artifact, out_dir: str | Path, backend: str = "auto") -> Path:
    """Write the site for an ONNX artifact into ``out_dir`` (replacing a site laser wrote there before)."""
    if art.format != "onnx":
        raise ConfigError(f"a web page runs an ONNX model; {art.name!r} is {art.format}: export it first "
                          "(laser.web does that for torch artifacts)")
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise ConfigError(f"{out} exists and is not a site laser wrote; give an empty or new folder with -o")
    dist = runtime_dist()
    found = ops.check(art.model_file, dist, art.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (staging / "ort").mkdir()
        for f in FILES if backend != "wasm" else WASM_FILES:
            shutil.copyfile(dist / f, staging / "ort" / f)
        for name in ASSETS:
            (staging / name).write_bytes(resources.files("laser.web").joinpath("assets", name).read_bytes())
        (staging / "model.onnx").write_bytes(_model_bytes(art))
        cfg = config(art, "model.onnx", backend, found["not_on_webgpu"])
        (staging / MARKER).write_text(json.dumps(cfg, indent=1), encoding="utf-8")
        if out.exists():
            old = out.with_name(f".{out.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            staging.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
