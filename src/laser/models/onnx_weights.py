"""ONNX files whose weights are ``Constant`` nodes (Paddle2ONNX's output, e.g. PP-OCR) made ordinary: the
float constants become graph initializers, where ONNX Runtime's quantizer (and other tools) look for
weights. Without this, "INT8" quantizes only activations and the file does not shrink. Graphs older than
opset 13 are converted to 13 (onnx's version converter), which per-channel INT8 weights need."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from laser.errors import require

MIN_OPSET = 13


def constants_to_initializers(g: Any) -> int:
    """Move the float Constant nodes (at least 1-D) of graph ``g`` into its initializers; returns how many."""
    from onnx import numpy_helper

    keep, moved = [], 0
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            value = numpy_helper.to_array(n.attribute[0].t)
            if value.dtype.kind == "f" and value.ndim >= 1:
                g.initializer.append(numpy_helper.from_array(value, n.output[0]))
                moved += 1
                continue
        keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    return moved


def weights_as_initializers(path: Path, cache: Path) -> Path:
    """The published file at ``path`` with its weights as initializers (made once, kept in ``cache``)."""
    onnx = require("onnx", "onnx")
    dest = cache / f"{path.stem}.laser-v2.onnx"
    if dest.is_file() and dest.stat().st_mtime >= path.stat().st_mtime:
        return dest
    model = onnx.load(str(path))
    constants_to_initializers(model.graph)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < MIN_OPSET:  # per-channel INT8 weights need DequantizeLinear's axis (opset 13)
        from onnx import version_converter

        model = version_converter.convert_version(model, MIN_OPSET)
    onnx.checker.check_model(model)
    part = dest.with_name(dest.name + ".part")
    onnx.save(model, str(part))  # metadata (e.g. the recogniser's dictionary) travels with the model
    os.replace(part, dest)
    return dest
