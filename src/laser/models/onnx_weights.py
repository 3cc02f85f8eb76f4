"""ONNX files whose weights are ``Constant`` nodes (Paddle2ONNX's output, e.g. PP-OCR) made ordinary: the
float constants become graph initializers, where ONNX Runtime's quantizer (and other tools) look for
weights. Without this, "INT8" quantizes only activations and the file does not shrink."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from laser.errors import require


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
    dest = cache / f"{path.stem}.laser.onnx"
    if dest.is_file() and dest.stat().st_mtime >= path.stat().st_mtime:
        return dest
    model = onnx.load(str(path))
    constants_to_initializers(model.graph)
    onnx.checker.check_model(model)
    part = dest.with_name(dest.name + ".part")
    onnx.save(model, str(part))  # metadata (e.g. the recogniser's dictionary) travels with the model
    os.replace(part, dest)
    return dest
