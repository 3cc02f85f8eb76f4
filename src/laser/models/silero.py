"""Silero VAD's ONNX graph, adapted once for laser: 16 kHz fixed, state and context batch-first.

The published graph takes ``input`` (B, 64 + 512) = the last 64 samples of the previous chunk + this chunk,
``state`` (2, B, 128) and a scalar ``sr``; the publisher's Python wrapper keeps state and context between
calls. Here both are explicit inputs/outputs with the batch first, which is what laser's runners, batchers
and the server's sequence state expect::

    chunk (B, 512), state_in (B, 2, 128), context (B, 64) -> probability (B, 1), state_out, context_out

The 8 kHz / 16 kHz switch (an ``If`` on ``sr``) is resolved to the 16 kHz branch and the weights become
initializers, so quantization reaches the convolutions and the LSTM.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from laser.errors import require
from laser.models.onnx_weights import constants_to_initializers

CHUNK, CONTEXT, RATE = 512, 64, 16_000
ADAPTED = "silero_vad_16k_stateful_v2.onnx"


def _inline_rate_branch(nodes: Any, numpy_helper: Any) -> list[Any]:
    """The graph's ``If sr == C`` replaced by the branch taken at 16 kHz (sr is a constant now), so the
    model's convolutions and LSTM sit in the main graph where quantizers and optimizers see them."""
    from onnx import helper

    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in nodes
              if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    equals = {n.output[0]: n for n in nodes if n.op_type == "Equal" and "sr" in n.input}
    out = []
    for n in nodes:
        test = equals.get(n.input[0]) if n.op_type == "If" else None
        if test is None:
            out.append(n)
            continue
        other = next(i for i in test.input if i != "sr")
        taken = "then_branch" if int(consts[other]) == RATE else "else_branch"
        branch = next(a.g for a in n.attribute if a.name == taken)
        out += list(branch.node)
        out += [helper.make_node("Identity", [b.name], [o], name=f"laser_inline_{o}")
                for b, o in zip(branch.output, n.output)]
    return out


def adapt(path: Path, cache: Path) -> Path:
    """The adapted copy of the published ``silero_vad.onnx`` at ``path`` (made once, kept in ``cache``)."""
    dest = cache / ADAPTED
    if dest.is_file() and dest.stat().st_mtime >= path.stat().st_mtime:
        return dest
    onnx = require("onnx", "onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    old = {i.name for i in g.input}
    if old != {"input", "state", "sr"}:
        raise ValueError(f"{path} has inputs {sorted(old)}; expected Silero VAD v5's input, state and sr")
    pre = [
        helper.make_node("Concat", ["context", "chunk"], ["input"], axis=1, name="laser_context_concat"),
        helper.make_node("Transpose", ["state_in"], ["state"], perm=[1, 0, 2], name="laser_state_in"),
    ]
    starts, ends, axes = (numpy_helper.from_array(np.array([v], np.int64), n) for v, n in
                          ((-CONTEXT, "laser_ctx_start"), (2**62, "laser_ctx_end"), (1, "laser_ctx_axis")))
    post = [
        helper.make_node("Identity", ["output"], ["probability"], name="laser_probability"),
        helper.make_node("Transpose", ["stateN"], ["state_out"], perm=[1, 0, 2], name="laser_state_out"),
        helper.make_node("Slice", ["input", starts.name, ends.name, axes.name], ["context_out"], name="laser_ctx"),
    ]
    g.initializer.extend([numpy_helper.from_array(np.array(RATE, np.int64), "sr"), starts, ends, axes])
    nodes = [*pre, *_inline_rate_branch(g.node, numpy_helper), *post]
    del g.node[:]
    g.node.extend(nodes)
    constants_to_initializers(g)
    del g.input[:]
    f32 = TensorProto.FLOAT
    g.input.extend([helper.make_tensor_value_info("chunk", f32, ["batch", CHUNK]),
                    helper.make_tensor_value_info("state_in", f32, ["batch", 2, 128]),
                    helper.make_tensor_value_info("context", f32, ["batch", CONTEXT])])
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info("probability", f32, ["batch", 1]),
                     helper.make_tensor_value_info("state_out", f32, ["batch", 2, 128]),
                     helper.make_tensor_value_info("context_out", f32, ["batch", CONTEXT])])
    onnx.checker.check_model(model)
    part = dest.with_name(dest.name + ".part")
    onnx.save(model, str(part))
    os.replace(part, dest)
    return dest
