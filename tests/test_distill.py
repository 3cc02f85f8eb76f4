import pytest
import torch
from torch import nn

import laser
from laser.compress.distill import Distill, _adapters, kd_loss
from laser.compress.prune import Prune
from laser.errors import ConfigError, NotFoundError


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Training and tracing with one intra-op thread: on a shared 2-core machine, OpenMP threads that
    spin-wait for each other make small models 10-40x slower, and these tests measure no speed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # per test: a TorchRunner (e.g. in an export's parity check) resets it
    yield
    torch.set_num_threads(before)


def test_kd_loss_is_hard_cross_entropy_at_alpha_zero():
    s, t, y = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    assert torch.allclose(kd_loss(s, t, y, alpha=0.0), nn.functional.cross_entropy(s, y))


def test_kd_loss_soft_part_is_t_squared_kl_of_tempered_softmaxes():
    s, t, y = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    p_t, log_p_s = torch.softmax(t / 3, 1), torch.log_softmax(s / 3, 1)
    by_hand = (p_t * (p_t.log() - log_p_s)).sum(1).mean() * 9
    assert torch.allclose(kd_loss(s, t, y, temperature=3.0, alpha=1.0), by_hand, atol=1e-6)
    assert kd_loss(t, t, y, alpha=1.0).abs() < 1e-6, "a student equal to its teacher has no soft loss"


def test_digits_pruned_to_half_macs_and_distilled_stays_within_one_point():
    teacher = laser.load("digits-cnn")
    pruned = Prune(ratio=0.5, finetune_epochs=1)(teacher)
    student = Distill(teacher=teacher, epochs=4, temperature=4.0, alpha=0.7)(pruned)
    prune_step, kd_step = student.lineage[-2], student.lineage[-1]
    assert prune_step.results["macs_after"] <= 0.5 * prune_step.results["macs_before"]
    assert kd_step.op == "distill" and kd_step.params["teacher"] == "digits-cnn"
    original = kd_step.results["teacher_top1"]
    assert original > 0.97
    assert kd_step.results["top1_after"] >= original - 0.01, kd_step.results
    assert student.manifest.architecture["transforms"], "the student keeps its pruned architecture"


def test_feature_matching_adds_a_1x1_adapter_where_the_pruned_width_differs():
    teacher = laser.load("digits-cnn")
    pruned = Prune(ratio=0.5, data=None)(teacher)
    x = [torch.zeros(1, 1, 8, 8)]
    adapters = _adapters(pruned.module, teacher.module, [("features.1", "features.1")], x)
    conv = adapters["features.1"]
    assert isinstance(conv, nn.Conv2d) and (conv.in_channels, conv.out_channels, conv.kernel_size) == (32, 64, (1, 1))
    out = Distill(teacher=teacher, epochs=1, feature_layers=("features.1", "features.3=features.3"))(pruned)
    assert out.lineage[-1].results["adapters"] == ["features.1", "features.3"]


def test_unknown_feature_layer_is_refused():
    teacher = laser.load("digits-cnn")
    with pytest.raises(NotFoundError, match="feature_layers names layer 'features.9'"):
        Distill(teacher=teacher, epochs=1, feature_layers=("features.9",))(teacher)


def test_bad_distill_options_are_refused_with_a_fix():
    with pytest.raises(ConfigError, match="needs a teacher"):
        Distill()
    with pytest.raises(ConfigError, match=r"alpha .* must be in \[0, 1\]"):
        Distill(teacher="digits-cnn", alpha=1.5)
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        Distill(teacher="digits-cnn", temperature=0)
    with pytest.raises(ConfigError, match="'layer' or 'student_layer=teacher_layer'"):
        Distill(teacher="digits-cnn", epochs=1, feature_layers=("a=",))(laser.load("digits-cnn"))


def test_a_teacher_with_other_classes_is_refused():
    from laser.artifact import Artifact
    from laser.models.digits import SPEC, digits_cnn
    from laser.spec import ModelSpec, TensorSpec

    spec = ModelSpec(inputs=SPEC.inputs, outputs=(TensorSpec("logits", "float32", ("batch", 5)),))
    five = Artifact.from_module(digits_cnn(classes=5).eval(), name="five", task="classification", spec=spec,
                                architecture={"factory": "laser.models.digits:digits_cnn", "kwargs": {"classes": 5}})
    with pytest.raises(ConfigError, match="same classes"):
        Distill(teacher=five, epochs=1)(laser.load("digits-cnn"))
