"""The models Triton's published client examples expect, built as real laser bundles (tiny ONNX graphs):
``simple`` (INT32 add/sub of INPUT0 and INPUT1, 16 values a sample). Used by
tests/test_serve_triton_examples.py."""

from __future__ import annotations

from pathlib import Path


def simple(root: Path, dtype: int = 6):
    """Triton's ``simple``: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1, [batch, 16] INT32 (ONNX
    element type 6), as a two-node ONNX graph imported into a laser bundle."""
    import onnx
    from onnx import helper

    import laser

    def value(name: str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, dtype, ["batch", 16])

    graph = helper.make_graph([helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
                               helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"])], "simple",
                              [value("INPUT0"), value("INPUT1")], [value("OUTPUT0"), value("OUTPUT1")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(root / "simple.onnx"))
    return laser.load(root / "simple.onnx", name="simple")


def repository(root: Path) -> Path:
    """``root/<model>/1/`` for every model here; the repository root."""
    simple(root.parent / f"{root.name}-sources").save(root / "simple" / "1")
    return root
