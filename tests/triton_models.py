"""The models Triton's published client examples expect, built as real laser bundles (tiny ONNX graphs):
``simple`` (INT32 add/sub of INPUT0 and INPUT1, 16 values a sample) and ``simple_string`` (the same on
strings of decimal integers), ``simple_identity`` (BYTES in, the same BYTES out). Used by
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


def simple_string(root: Path):
    """Triton's ``simple_string``: the same sums and differences on BYTES tensors holding decimal integers
    (ONNX string tensors: Cast to INT32, Add / Sub, Cast back to strings)."""
    import onnx
    from onnx import TensorProto, helper

    import laser

    def value(name: str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.STRING, ["batch", 16])

    nodes = [helper.make_node("Cast", ["INPUT0"], ["a"], to=TensorProto.INT32),
             helper.make_node("Cast", ["INPUT1"], ["b"], to=TensorProto.INT32),
             helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Sub", ["a", "b"], ["diff"]),
             helper.make_node("Cast", ["sum"], ["OUTPUT0"], to=TensorProto.STRING),
             helper.make_node("Cast", ["diff"], ["OUTPUT1"], to=TensorProto.STRING)]
    graph = helper.make_graph(nodes, "simple_string", [value("INPUT0"), value("INPUT1")],
                              [value("OUTPUT0"), value("OUTPUT1")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(root / "simple_string.onnx"))
    return laser.load(root / "simple_string.onnx", name="simple_string")


def simple_identity(root: Path):
    """Triton's ``simple_identity``: OUTPUT0 = INPUT0, a BYTES tensor of any length a sample."""
    import onnx
    from onnx import TensorProto, helper

    import laser

    def value(name: str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.STRING, ["batch", "n"])

    graph = helper.make_graph([helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])], "simple_identity",
                              [value("INPUT0")], [value("OUTPUT0")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(root / "simple_identity.onnx"))
    return laser.load(root / "simple_identity.onnx", name="simple_identity")


def numbers_in(bundle: Path, value_range: tuple[int, int]) -> None:
    """Declare in the bundle's manifest that its string inputs hold decimal integers in ``value_range``
    (what the warm-up's example inputs then send; an ONNX file cannot say it)."""
    import json

    manifest = bundle / "laser.json"
    data = json.loads(manifest.read_text())
    for t in data["inputs"]:
        t["value_range"] = list(value_range)
    manifest.write_text(json.dumps(data, indent=2))


def repository(root: Path) -> Path:
    """``root/<model>/1/`` for every model here; the repository root."""
    sources = root.parent / f"{root.name}-sources"
    simple(sources).save(root / "simple" / "1")
    numbers_in(simple_string(sources).save(root / "simple_string" / "1").location, (-100, 100))
    simple_identity(sources).save(root / "simple_identity" / "1")
    return root


HEADLINES = ("United beat their rivals in the cup final", "The chipmaker unveils a new processor",
             "Oil prices fall after the rate decision", "The president visits border officials")


def text_classifier(root: Path):
    """A news-title classifier (a 1-layer BERT, random weights) whose manifest carries its WordPiece
    vocabulary and labels: served, it takes TEXT (BYTES) and answers LABEL, SCORE and logits."""
    import torch

    import laser
    from laser.architecture import build_architecture
    from laser.models.text import build_wordpiece_vocab, read_vocab, text_spec

    vocab = read_vocab(build_wordpiece_vocab(list(HEADLINES) * 4, root / "vocab", vocab_size=120))
    labels = ("sports", "technology", "business", "world")
    arch = {"factory": "laser.models.text:bert_classifier",
            "kwargs": {"classes": len(labels), "vocab_size": len(vocab), "hidden": 16, "layers": 1, "heads": 2,
                       "intermediate": 32, "max_length": 16}}
    torch.manual_seed(0)
    module = build_architecture(arch).eval()
    pre = {"type": "text", "tokenizer": "wordpiece", "lowercase": True, "max_length": 16, "vocab": vocab}
    return laser.Artifact.from_module(module, name="news_titles", task="text-classification",
                                      spec=text_spec(16, len(vocab), len(labels)), architecture=arch,
                                      preprocessing=pre, labels=labels)


def doubler(root: Path):
    """y = 2 x on tensors with no dims besides the batch ([batch] FP32): Triton configures them as dims [1]
    with reshape [] (``doubler``)."""
    import onnx
    from onnx import TensorProto, helper

    import laser

    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "doubler",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])], [two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(root / "doubler.onnx"))
    return laser.load(root / "doubler.onnx", name="doubler")
