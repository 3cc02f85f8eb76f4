"""The models Triton's published client examples expect, built as real laser bundles (tiny ONNX graphs):
``simple`` (INT32 add/sub of INPUT0 and INPUT1, 16 values a sample) and ``simple_string`` (the same on
strings of decimal integers), ``simple_identity`` (BYTES in, the same BYTES out), ``simple_sequence``
(a stateful model: OUTPUT = INPUT, plus 1 on a sequence's first request) and ``repeat_int32`` (decoupled:
one response per element of IN). Used by tests/test_serve_triton_examples.py."""

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


def simple_sequence(root: Path):
    """Triton's ``simple_sequence`` as the examples see it: OUTPUT = INPUT, plus 1 on the first request of a
    sequence ([batch, 1] INT32). Its state (STATE_IN -> STATE_OUT, kept by the server per sequence) is 0
    at the start and 1 after: OUTPUT = INPUT + 1 - STATE_IN, STATE_OUT = 1."""
    import onnx
    from onnx import TensorProto, helper

    import laser

    def value(name: str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.INT32, ["batch", 1])

    one = helper.make_tensor("one", TensorProto.INT32, [], [1])
    zero = helper.make_tensor("zero", TensorProto.INT32, [], [0])
    nodes = [helper.make_node("Sub", ["one", "STATE_IN"], ["first"]), helper.make_node("Add", ["INPUT", "first"], ["OUTPUT"]),
             helper.make_node("Mul", ["STATE_IN", "zero"], ["zeros"]), helper.make_node("Add", ["zeros", "one"], ["STATE_OUT"])]
    graph = helper.make_graph(nodes, "simple_sequence", [value("INPUT"), value("STATE_IN")],
                              [value("OUTPUT"), value("STATE_OUT")], [one, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(root / "simple_sequence.onnx"))
    return laser.load(root / "simple_sequence.onnx", name="simple_sequence")


def repeat_module():
    """The module of ``repeat_int32`` (Triton's repeat backend): ``stream`` yields OUT = [IN[i]] after
    waiting DELAY[i] ms, for each i, then waits WAIT ms; ``forward`` gives the first response."""
    import time

    import torch

    class Repeat(torch.nn.Module):
        def forward(self, values: torch.Tensor, delays: torch.Tensor, wait: torch.Tensor) -> torch.Tensor:
            return values[:1]

        def stream(self, values: torch.Tensor, delays: torch.Tensor, wait: torch.Tensor):
            for i, delay in enumerate(delays.tolist()):
                time.sleep(delay / 1000)
                yield values[i:i + 1]
            time.sleep(int(wait.tolist()[0]) / 1000)

    return Repeat()


def repeat_int32():
    """A decoupled model: IN [n] INT32, DELAY [n] UINT32 (ms), WAIT [1] UINT32 (ms) -> one OUT [1] a value."""
    import laser
    from laser.architecture import build_architecture
    from laser.spec import ModelSpec, TensorSpec

    arch = {"factory": "triton_models:repeat_module"}
    spec = ModelSpec(inputs=(TensorSpec("IN", "int32", ("n",)), TensorSpec("DELAY", "uint32", ("n",)),
                             TensorSpec("WAIT", "uint32", (1,))), outputs=(TensorSpec("OUT", "int32", (1,)),))
    return laser.Artifact.from_module(build_architecture(arch), name="repeat_int32", task="generic", spec=spec,
                                      architecture=arch)


def repository(root: Path) -> Path:
    """``root/<model>/1/`` for every model here; the repository root."""
    import json

    sources = root.parent / f"{root.name}-sources"
    simple(sources).save(root / "simple" / "1")
    numbers_in(simple_string(sources).save(root / "simple_string" / "1").location, (-100, 100))
    simple_identity(sources).save(root / "simple_identity" / "1")
    simple_sequence(sources).save(root / "simple_sequence" / "1")
    (root / "simple_sequence" / "config.json").write_text(json.dumps({"sequence_state": {"STATE_IN": "STATE_OUT"}}))
    repeat_int32().save(root / "repeat_int32" / "1")
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
