"""Knowledge distillation: a trained teacher teaches a (pruned, smaller) student.

Loss (Hinton et al. 2015): ``alpha * T² * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)``,
the T² keeping the soft-target gradients on the scale of the hard ones. Optional feature matching adds
``feature_weight * MSE(adapter(student feature), teacher feature)`` on named intermediate layers, with a
1x1 convolution (or a linear map) as adapter when the widths differ (a pruned student's are narrower).
Training runs in the shared loop ``laser.compress.train.fit`` through its ``loss_fn`` hook.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from laser.artifact import Artifact, Step
from laser.errors import ConfigError
from laser.stages import Stage


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float = 4.0,
            alpha: float = 0.7) -> torch.Tensor:
    """Hinton KD on (B, C) logits: soft targets at ``temperature`` scaled by T², mixed with hard CE."""
    t = temperature
    soft = nn.functional.kl_div(nn.functional.log_softmax(student / t, dim=1),
                                nn.functional.log_softmax(teacher / t, dim=1),
                                reduction="batchmean", log_target=True) * (t * t)
    hard = nn.functional.cross_entropy(student, labels)
    return alpha * soft + (1 - alpha) * hard


class _WithAdapters(nn.Module):
    """The student plus the feature adapters, so ``fit`` trains (and early-stops on) both;
    ``forward`` is the student's alone."""

    def __init__(self, student: nn.Module, adapters: dict[str, nn.Module]):
        super().__init__()
        self.student = student
        self.adapters = nn.ModuleDict({k.replace(".", "_"): v for k, v in adapters.items()})

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.student(*xs)


@dataclass(frozen=True)
class Distill(Stage):
    """Train the artifact (the student) to match ``teacher`` (an Artifact, catalog name or bundle path)."""

    op: ClassVar[str] = "distill"
    teacher: Any = None
    temperature: float = 4.0
    alpha: float = 0.7
    epochs: int = 20
    feature_layers: tuple[str, ...] = ()  # "layer" (same name in both) or "student_layer=teacher_layer"
    feature_weight: float = 1.0
    data: str = "digits"
    lr: float = 1e-3
    seed: int = 0
    progress: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "feature_layers", tuple(self.feature_layers or ()))
        if self.teacher is None or self.teacher == "":
            raise ConfigError("Distill needs a teacher: Distill(teacher=laser.load('digits-cnn')) or a "
                              "catalog name / bundle path")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}; try 4.0")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"alpha (weight of the soft-target loss) must be in [0, 1], got {self.alpha}; try 0.7")
        if self.epochs < 1 or self.feature_weight < 0:
            raise ConfigError(f"epochs must be >= 1 and feature_weight >= 0, got epochs={self.epochs}, "
                              f"feature_weight={self.feature_weight}")
        if not self.data:
            raise ConfigError("distillation trains on labelled data; pass data='digits' (or another dataset)")

    def apply(self, artifact: Artifact) -> Artifact:
        from laser.compress.common import finetune, load_data, summary, top1, torch_module

        student, example = torch_module(artifact, "distill")
        teacher_art = self.teacher if isinstance(self.teacher, Artifact) else _load(self.teacher)
        teacher, _ = torch_module(teacher_art, "distill")
        spec = artifact.spec
        with torch.no_grad():
            s_out, t_out = student(*example), teacher(*example)
        if s_out.shape != t_out.shape:
            raise ConfigError(f"student outputs {tuple(s_out.shape)} but teacher {teacher_art.name!r} outputs "
                              f"{tuple(t_out.shape)}; distillation needs the same classes in both")
        train = load_data(self.data, "train", spec, "distillation", required=True)
        val = load_data(self.data, "val", spec, "distillation", required=False)
        test = load_data(self.data, "test", spec, "accuracy", required=False)
        pairs = [_pair(f) for f in self.feature_layers]
        adapters = _adapters(student, teacher, pairs, example)
        wrapped = _WithAdapters(student, adapters)
        before = top1(student, test)

        def loss_fn(module: nn.Module, xs: Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
            with _capture(teacher, [t for _, t in pairs]) as t_feats, torch.no_grad():
                t_logits = teacher(*xs)
            with _capture(student, [s for s, _ in pairs]) as s_feats:
                s_logits = module(*xs)
            loss = kd_loss(s_logits, t_logits, labels, self.temperature, self.alpha)
            for s_name, t_name in pairs:
                s_feat = adapters[s_name](s_feats[s_name]) if s_name in adapters else s_feats[s_name]
                loss = loss + self.feature_weight * nn.functional.mse_loss(s_feat, t_feats[t_name])
            return loss

        teacher.eval()
        result = finetune(wrapped, train, val, self.epochs, self.lr, self.seed, self.progress, loss_fn=loss_fn)
        student.eval()
        results = {
            "top1_before": before, "top1_after": top1(student, test), "teacher_top1": top1(teacher, test),
            "best_val_top1": result.best_val_top1, "epochs_run": result.epochs_run,
            "student_params": summary(student, spec)["params"], "teacher_params": summary(teacher, spec)["params"],
            "adapters": sorted(adapters), "accuracy_data": test.name if test else None,
            "method": "top-1 measured with torch eager on the test split; params counted",
        }
        return artifact.derive(Step("distill", params=self.params(), results=results), module=student)


def _load(source: str) -> Artifact:
    from laser.loader import load

    return load(source)


def _pair(text: str) -> tuple[str, str]:
    s, _, t = text.partition("=")
    if not s or (text.count("=") and not t):
        raise ConfigError(f"feature layer {text!r} must be 'layer' or 'student_layer=teacher_layer'")
    return s, t or s


class _capture:
    """Context manager recording the outputs of named submodules during one forward pass."""

    def __init__(self, module: nn.Module, names: Sequence[str]):
        from laser.compress.common import named

        self.layers = {n: named(module, n, "feature_layers") for n in names}
        self.out: dict[str, torch.Tensor] = {}
        self.hooks: list[Any] = []

    def __enter__(self) -> dict[str, torch.Tensor]:
        for n, m in self.layers.items():
            self.hooks.append(m.register_forward_hook(lambda _m, _i, o, n=n: self.out.__setitem__(n, o)))
        return self.out

    def __exit__(self, *exc: object) -> None:
        for h in self.hooks:
            h.remove()


def _adapters(student: nn.Module, teacher: nn.Module, pairs: list[tuple[str, str]],
              example: list[torch.Tensor]) -> dict[str, nn.Module]:
    """A 1x1 conv (channels in dim 1) or linear map (features in the last dim) per student layer whose
    width differs from its teacher layer's; spatial/sequence dims must already agree."""
    if not pairs:
        return {}
    with torch.no_grad(), _capture(student, [s for s, _ in pairs]) as s_feats, \
            _capture(teacher, [t for _, t in pairs]) as t_feats:
        student(*example)
        teacher(*example)
    out: dict[str, nn.Module] = {}
    for s, t in pairs:
        a, b = s_feats[s], t_feats[t]
        if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.ndim != b.ndim:
            raise ConfigError(f"feature layers {s!r} / {t!r} must output tensors of the same rank")
        if a.shape == b.shape:
            continue
        diff = [i for i in range(1, a.ndim) if a.shape[i] != b.shape[i]]
        if diff == [1] and a.ndim in (3, 4):  # (B, C, L) / (B, C, H, W)
            conv = nn.Conv1d if a.ndim == 3 else nn.Conv2d
            out[s] = conv(a.shape[1], b.shape[1], kernel_size=1, bias=False)
        elif diff == [a.ndim - 1]:  # (B, ..., C): features last, as in transformers
            out[s] = nn.Linear(a.shape[-1], b.shape[-1], bias=False)
        else:
            raise ConfigError(f"feature layer {s!r} has shape {tuple(a.shape)}, teacher layer {t!r} "
                              f"{tuple(b.shape)}: only the channel width may differ")
    return out
