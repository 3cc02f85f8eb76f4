import numpy as np
import pytest
import torch
from torch import nn

import laser
from laser.artifact import Artifact
from laser.compress.prune import Prune, UnstructuredSparsityWarning, prune_structured, reshape
from laser.errors import ConfigError, NotFoundError
from laser.spec import ModelSpec, TensorSpec
from laser.stages import stage_from_dict


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Training and tracing with one intra-op thread: on a shared 2-core machine, OpenMP threads that
    spin-wait for each other make small models 10-40x slower, and these tests measure no speed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # per test: a TorchRunner (e.g. in an export's parity check) resets it
    yield
    torch.set_num_threads(before)


def vision(name: str) -> Artifact:
    from laser.vision_compat import torchvision

    torchvision()  # plain `import torchvision` crashes with the CPU torch build; see vision_compat
    return laser.load(f"torchvision.models:{name}", random_weights=True, input_shape=(3, 32, 32))


def outputs(art: Artifact, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return art.module(x)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "squeezenet1_1"])
def test_structured_half_pruning_keeps_output_shape_and_cuts_params_and_macs(name):
    art = vision(name)  # residual adds / depthwise convs / Fire-module concatenations
    pruned = Prune(ratio=0.5, data=None)(art)
    r = pruned.lineage[-1].results
    x = torch.randn(2, 3, 32, 32)
    assert outputs(pruned, x).shape == outputs(art, x).shape == (2, 1000)
    assert r["params_after"] < 0.7 * r["params_before"]
    assert r["macs_after"] < 0.4 * r["macs_before"] and r["macs_ratio"] == r["macs_after"] / r["macs_before"]
    assert r["layers"], "layer widths before/after are recorded"


def test_depthwise_convs_stay_depthwise_after_pruning():
    pruned = Prune(ratio=0.5, data=None)(vision("mobilenet_v2")).module
    dw = [m for m in pruned.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert dw and all(m.groups == m.in_channels == m.out_channels for m in dw)
    assert any(m.out_channels < 96 for m in dw if m.kernel_size == (3, 3))


class TinyTransformer(nn.Module):
    """(B, 8, 16) -> (B, 10): two encoder layers of 4-head self-attention."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(16, 64)
        layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x)).mean(1))


def test_attention_embedding_is_pruned_in_whole_heads_and_stays_consistent():
    spec = ModelSpec(inputs=(TensorSpec("input", "float32", ("batch", 8, 16)),),
                     outputs=(TensorSpec("logits", "float32", ("batch", 10)),))
    art = Artifact.from_module(TinyTransformer().eval(), name="tiny", task="classification", spec=spec,
                               architecture=None)
    pruned = Prune(ratio=0.5, data=None)(art).module
    for m in pruned.modules():
        if isinstance(m, nn.MultiheadAttention):
            assert m.num_heads == 4 and m.embed_dim == 32 and m.embed_dim % m.num_heads == 0
    assert pruned(torch.randn(3, 8, 16)).shape == (3, 10)


def test_pruned_model_round_trips_through_save_and_load_without_its_class(tmp_path):
    art = vision("resnet18")
    pruned = Prune(ratio=0.5, data=None)(art)
    transform = pruned.manifest.architecture["transforms"][-1]
    assert transform["target"] == "laser.compress.prune:reshape"
    assert transform["kwargs"]["out_channels"]["conv1"] == 32  # 64 channels, half removed
    reopened = laser.load(pruned.save(tmp_path / "r18-p50").location)
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(outputs(reopened, x), outputs(pruned, x), atol=1e-5)
    assert reopened.lineage[-1].op == "prune" and reopened.lineage[-1].params["criterion"] == "l1"


def test_pruned_model_exports_to_onnx_and_matches_its_parent():
    from laser.export import Export

    pruned = Prune(ratio=0.5, data=None)(laser.load("digits-cnn"))
    exported = Export(to="onnx", exporter="legacy")(pruned)
    assert exported.format == "onnx" and exported.lineage[-1].results["verified"] is True
    x = laser.data.digits("test")[0][:8]
    with laser.run(exported, backend="onnxruntime") as runner:
        got = runner({"input": x})["logits"]
    np.testing.assert_allclose(got, outputs(pruned, torch.from_numpy(x)).numpy(), atol=1e-4)


def test_recorded_pruning_history_replays_exactly():
    import torch_pruning as tp

    def build():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 8, 1))

    model, x = build().eval(), torch.zeros(1, 3, 8, 8)
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=x)
    dg.get_pruning_group(model[0], tp.prune_conv_out_channels, idxs=[1, 5, 7]).prune()
    history = [[n, o, list(i)] for n, o, i in dg.pruning_history()]
    rebuilt = reshape(build().eval(), inputs=[{"shape": [1, 3, 8, 8], "dtype": "float32"}], history=history)
    assert rebuilt[0].out_channels == 13 and rebuilt[1].num_features == 13 and rebuilt[3].in_channels == 13


def test_digits_iterative_schedule_records_ratios_criterion_steps_macs_and_accuracy():
    pruned = Prune(ratio=0.5, steps=2, finetune_epochs=2, criterion="l2")(laser.load("digits-cnn"))
    step = pruned.lineage[-1]
    assert step.params["ratio"] == 0.5 and step.params["steps"] == 2 and step.params["criterion"] == "l2"
    assert step.results["layers"]["features.1.0"] == [64, 32]
    assert step.results["macs_after"] <= 0.5 * step.results["macs_before"]
    assert step.results["top1_before"] > 0.97 and step.results["top1_after"] > 0.9  # fine-tuned between steps


@pytest.mark.parametrize("criterion", ["bn", "taylor"])
def test_bn_and_taylor_criteria_prune_to_the_rounded_width(criterion):
    pruned = Prune(ratio=0.3, criterion=criterion, round_to=8)(laser.load("digits-cnn"))
    widths = pruned.lineage[-1].results["layers"]
    assert widths["features.3.0"] == [128, 88]  # int(128 * 0.7) = 89, rounded down to a multiple of 8


def test_per_layer_ratio_and_exclude_touch_only_the_named_layers():
    art = laser.load("digits-cnn")
    one = Prune(ratio=0.0, per_layer={"features.1.0": 0.5}, data=None)(art).lineage[-1].results["layers"]
    assert set(one) == {"features.1.0"} and one["features.1.0"] == [64, 32]
    kept = Prune(ratio=0.5, exclude=("features.0.0",), data=None)(art).lineage[-1].results["layers"]
    assert "features.0.0" not in kept and kept["features.3.0"] == [128, 64]


def test_global_structured_pruning_ranks_channels_across_layers():
    layers = Prune(ratio=0.5, global_pruning=True, data=None)(laser.load("digits-cnn")).lineage[-1].results["layers"]
    kept = {name: after for name, (_, after) in layers.items()}
    assert sum(kept.values()) <= 0.5 * (32 + 64 + 128)
    assert kept != {"features.0.0": 16, "features.1.0": 32, "features.3.0": 64}, "not the uniform widths"


def test_unstructured_pruning_reports_sparsity_and_warns_dense_runtimes_gain_nothing():
    art = laser.load("digits-cnn")
    with pytest.warns(UnstructuredSparsityWarning, match="gain no speed from zeros"):
        pruned = Prune(ratio=0.6, structured=False, steps=2, data=None)(art)
    r = pruned.lineage[-1].results
    assert r["sparsity"]["pruned_layers_sparsity"] == pytest.approx(0.6, abs=0.01)
    assert r["macs_after"] == r["macs_before"] and r["params_after"] == r["params_before"]
    assert r["nonzero_params_after"] < 0.5 * r["params_before"]
    head = pruned.module.classifier.weight
    assert int((head == 0).sum()) == 0, "the classifier head is kept whole"


def test_global_unstructured_pruning_ranks_weights_across_layers():
    with pytest.warns(UnstructuredSparsityWarning):
        r = Prune(ratio=0.5, structured=False, global_pruning=True, data=None)(laser.load("digits-cnn"))
    sparsity = r.lineage[-1].results["sparsity"]["pruned_layers_sparsity"]
    module = r.module
    per_layer = [float((m.weight == 0).float().mean()) for m in (module.features[0][0], module.features[3][0])]
    assert sparsity == pytest.approx(0.5, abs=0.01) and per_layer[0] != pytest.approx(per_layer[1], abs=0.02)


@pytest.mark.parametrize("ratio", [1.0, 1.5, -0.1])
def test_ratio_outside_zero_one_is_refused_with_a_fix(ratio):
    with pytest.raises(ConfigError, match=r"ratio must be in \[0, 1\).*Prune\(ratio=0.5\)"):
        Prune(ratio=ratio)


def test_unknown_layer_names_are_refused_with_suggestions():
    art = laser.load("digits-cnn")
    with pytest.raises(NotFoundError, match=r"'features.1.9'.*did you mean"):
        Prune(per_layer={"features.1.9": 0.5}, data=None)(art)
    with pytest.raises(NotFoundError, match="exclude names layer 'classifer'"):
        Prune(exclude=("classifer",), data=None)(art)


class NoGrad(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        with torch.no_grad():  # the trace cannot see through this
            y = self.conv(x).mean((2, 3))
        return self.fc(y)


def test_a_model_that_cannot_be_traced_gets_a_clear_error():
    spec = ModelSpec(inputs=(TensorSpec("input", "float32", ("batch", 1, 8, 8)),),
                     outputs=(TensorSpec("logits", "float32", ("batch", 10)),))
    art = Artifact.from_module(NoGrad().eval(), name="odd", task="classification", spec=spec, architecture=None)
    with pytest.raises(ConfigError, match=r"cannot trace NoGrad.*did not see: \['conv'\].*structured=False"):
        Prune(ratio=0.5, data=None)(art)


def test_prune_structured_refuses_the_taylor_criterion_without_data():
    module, x = laser.load("digits-cnn").module, [torch.zeros(1, 1, 8, 8)]
    with pytest.raises(ConfigError, match="taylor criterion needs labelled data"):
        prune_structured(module, x, ratio=0.5, per_layer={}, criterion="taylor")


def test_other_bad_options_are_refused():
    with pytest.raises(ConfigError, match="unknown criterion"):
        Prune(criterion="l3")
    with pytest.raises(ConfigError, match="nothing would be pruned"):
        Prune(ratio=0.0)
    with pytest.raises(ConfigError, match="need labelled data"):
        Prune(finetune_epochs=2, data=None)
    with pytest.raises(ConfigError, match="unstructured pruning ranks single weights"):
        Prune(structured=False, criterion="bn")


def test_an_exported_artifact_is_refused_with_the_order_to_follow():
    from laser.export import Export

    onnx_art = Export(to="onnx", exporter="legacy", verify=False)(laser.load("digits-cnn"))
    with pytest.raises(ConfigError, match="prune the torch model first, then export"):
        Prune(ratio=0.5)(onnx_art)


def test_prune_stage_round_trips_through_a_recipe():
    stage = Prune(ratio=0.3, per_layer={"features.0.0": 0.25}, exclude=["features.1.0"], steps=2)
    again = stage_from_dict(stage.to_dict())
    assert again == stage and again.exclude == ("features.1.0",)
    assert laser.Prune is Prune
