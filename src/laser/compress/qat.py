"""Quantization-aware training: fine-tune with fake quantization, then produce the same INT8 ONNX artifact
as post-training ``Quantize("int8-static")``.

    >>> q = laser.QAT(epochs=3, data="digits")(laser.load("digits-cnn"))     # format 'onnx', INT8 QDQ

The fake quantization mirrors what onnxruntime will do with the exported graph, so what training
adapts to is what runs:

- weights: per output channel, symmetric int8 in [-127, 127] (7-bit where ``int8_defaults`` chooses
  reduce_range), scale = max |w| / 127, as ORT's per-channel QDQ; straight-through gradient;
- activations: at the input of every Conv / Linear, per-tensor uint8 over a *learned* range
  (LSQ: the step size is a parameter trained with the task loss; the zero point is fixed at init);
- BatchNorm statistics frozen (eval mode) while training, so training and inference see the same
  scale; ORT folds BN into the conv, and per-channel weight scales absorb that fold exactly.

Ranges start from an output-aware search: for each layer, the clipping range (max, max/√2, max/2 ...)
whose fake-quantized input gives the layer output closest to the float output. This is what rescues
activation outliers: a channel 1000× larger than the rest that the next layer scales back down is
clipped instead of spending the whole 8-bit grid on it — per-tensor MinMax, Entropy or Percentile
calibration cannot do this, which is where post-training quantization falls short.

After training, the learned ranges are baked into the float model as clamps on those layer inputs
(an architecture transform recorded in the manifest, so the bundle rebuilds), the model is exported
through the export stage and quantized with static QDQ: calibration then reads ranges inside the
trained clamps, and onnxruntime folds each clamp into its QuantizeLinear.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils import parametrize

from laser.artifact import Artifact, Step
from laser.data import Dataset
from laser.errors import ConfigError
from laser.stages import Stage

LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
INIT_SAMPLES = 64  # samples whose layer inputs choose the initial ranges
CLIP_STEPS = 17  # candidate ranges: max × 2^(-k/2), k = 0..16 (down to max / 256)
QMAX_ACT = 255  # uint8 activations


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    """round() with a straight-through gradient."""
    return x + (torch.round(x) - x).detach()


class WeightFakeQuant(nn.Module):
    """Per-output-channel symmetric int8 fake quantization (a parametrization of ``weight``)."""

    def __init__(self, qmax: int = 127):
        super().__init__()
        self.qmax = qmax

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, w.ndim))
        scale = (w.detach().abs().amax(dim=dims, keepdim=True) / self.qmax).clamp_min(1e-12)
        wq = torch.clamp(torch.round(w / scale), -self.qmax, self.qmax) * scale
        return w + (wq - w).detach()


def fake_quant(x: torch.Tensor, log_scale: torch.Tensor, zero_point: int) -> torch.Tensor:
    """uint8 fake quantization with a learnable step (LSQ): gradient to x inside the range, to the
    step through the rounding residual and the clipped ends."""
    s = log_scale.exp()
    q = torch.clamp(_round_ste(x / s) + zero_point, 0, QMAX_ACT)
    return (q - zero_point) * s


def _range(lo: float, hi: float) -> tuple[float, int]:
    """(log step, zero point) of a uint8 grid covering [lo, hi] with 0 exactly representable."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / QMAX_ACT, 1e-8)
    zp = int(min(max(round(-lo / scale), 0), QMAX_ACT))
    return math.log(scale), zp


class FakeQuantModel(nn.Module):
    """``module`` with fake-quantized weights and layer inputs; BatchNorm stays in eval mode."""

    def __init__(self, module: nn.Module, ranges: Mapping[str, tuple[float, float]], weight_qmax: int = 127):
        super().__init__()
        self.module = module
        self.names = list(ranges)
        self.log_scale = nn.ParameterList()
        self.zero_points: list[int] = []
        self._hooks = []
        layers = dict(module.named_modules())
        for i, name in enumerate(self.names):
            log_s, zp = _range(*ranges[name])
            self.log_scale.append(nn.Parameter(torch.tensor(log_s)))
            self.zero_points.append(zp)
            layer = layers[name]
            parametrize.register_parametrization(layer, "weight", WeightFakeQuant(weight_qmax))
            self._hooks.append(layer.register_forward_pre_hook(self._act_hook(i)))

    def _act_hook(self, i: int):
        def hook(_layer: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            return (fake_quant(args[0], self.log_scale[i], self.zero_points[i]), *args[1:])
        return hook

    def forward(self, *args: Any) -> Any:
        return self.module(*args)

    def train(self, mode: bool = True) -> FakeQuantModel:
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()  # frozen statistics: ORT folds BN with its running stats
        return self

    def ranges(self) -> dict[str, list[float]]:
        out = {}
        for name, log_s, zp in zip(self.names, self.log_scale, self.zero_points):
            s = float(log_s.detach().exp())
            out[name] = [round(-zp * s, 6), round((QMAX_ACT - zp) * s, 6)]
        return out

    def release(self) -> nn.Module:
        """The float module with trained weights, fake quantization removed."""
        for h in self._hooks:
            h.remove()
        layers = dict(self.module.named_modules())
        for name in self.names:
            parametrize.remove_parametrizations(layers[name], "weight", leave_parametrized=False)
        return self.module


def clip_inputs(module: nn.Module, ranges: Mapping[str, Any]) -> nn.Module:
    """Architecture transform: clamp the input of each named layer to its [lo, hi] (the QAT-learned
    quantization ranges). Hooks only: the state dict is unchanged."""
    layers = dict(module.named_modules())
    for name, (lo, hi) in ranges.items():
        if name not in layers:
            raise ConfigError(f"clip_inputs: the model has no layer {name!r}; it was built from another architecture")

        def hook(_layer: nn.Module, args: tuple[Any, ...], lo: float = float(lo), hi: float = float(hi)):
            return (torch.clamp(args[0], lo, hi), *args[1:])

        layers[name].register_forward_pre_hook(hook)
    return module


@torch.no_grad()
def initial_ranges(module: nn.Module, inputs: tuple[torch.Tensor, ...], weight_qmax: int = 127,
                   ) -> dict[str, tuple[float, float]]:
    """Per layer, the clipping range whose fake-quantized input best reproduces the layer's float output
    (mean squared error), among max × 2^(-k/2). Layers are searched independently on float inputs."""
    layers = {n: m for n, m in module.named_modules() if isinstance(m, LAYERS)}
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda m, a, n=n: seen.setdefault(n, a[0].detach()))
             for n, m in layers.items()]
    try:
        module.eval()(*inputs)
    finally:
        for h in hooks:
            h.remove()
    wq = WeightFakeQuant(weight_qmax)
    out = {}
    for name, x in seen.items():
        layer = layers[name]
        reference = layer(x)
        qlayer = copy.deepcopy(layer)
        qlayer.weight.copy_(wq(layer.weight))
        lo0, hi0 = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        best = (math.inf, lo0, hi0)
        for k in range(CLIP_STEPS):
            f = 2 ** (-k / 2)
            log_s, zp = _range(lo0 * f, hi0 * f)
            err = float(torch.mean((qlayer(fake_quant(x, torch.tensor(log_s), zp)) - reference) ** 2))
            if err < best[0]:
                best = (err, lo0 * f, hi0 * f)
        out[name] = (best[1], best[2])
    return out


@dataclasses.dataclass(frozen=True)
class QAT(Stage):
    """Fine-tune a torch artifact with fake quantization for ``epochs`` on ``data`` (train split;
    the val split picks the best epoch), then export and quantize it to INT8 QDQ ONNX."""

    op: ClassVar[str] = "qat"
    epochs: int = 3
    data: Any = "digits"
    lr: float = 1e-4  # fine-tuning: larger steps destabilise layers whose weights are tiny (outliers)
    batch_size: int = 32
    calibration: Any = None  # default: the training data
    calibration_method: str = "minmax"
    samples: int = 256
    seed: int = 0
    eval_data: Any = None  # labelled test data for the accuracy delta; default: data's test split
    progress: bool = dataclasses.field(default=True, repr=False, compare=False)

    def __post_init__(self) -> None:
        from laser.compress.calibration import check_source

        check_source(self.calibration)
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"QAT(epochs={self.epochs!r}) must be an int >= 1, e.g. QAT(epochs=3)")
        if not self.lr > 0 or self.batch_size < 1 or self.samples < 1:
            raise ConfigError(f"QAT needs lr > 0, batch_size >= 1, samples >= 1; got lr={self.lr}, "
                              f"batch_size={self.batch_size}, samples={self.samples}")
        if not isinstance(self.data, (str, Dataset)):
            raise ConfigError(f"QAT(data=...) must be a dataset name like 'digits' (train/val splits are used), "
                              f"got {type(self.data).__name__}")

    def apply(self, artifact: Artifact) -> Artifact:
        from laser.compress.mixed_precision import top1
        from laser.compress.quantize import Quantize, int8_defaults
        from laser.compress.train import TrainConfig, evaluate_top1, fit

        if artifact.format != "torch":
            raise ConfigError(f"QAT fine-tunes a PyTorch model; {artifact.name!r} is a {artifact.format} artifact. "
                              "Load the torch model (laser.load('name' or 'pkg.mod:factory', weights=...))")
        train, val, test = self._splits()
        torch.manual_seed(self.seed)
        module = copy.deepcopy(artifact.module).float()
        test_fp32 = evaluate_top1(module, test)
        weight_qmax = 63 if int8_defaults()["reduce_range"] else 127
        init_x = tuple(torch.from_numpy(a[:INIT_SAMPLES]) for a in train.inputs)
        ranges = initial_ranges(module, init_x, weight_qmax)
        if not ranges:
            raise ConfigError(f"{artifact.name!r} has no Conv or Linear layers to quantize")
        model = FakeQuantModel(module, ranges, weight_qmax)
        start_top1 = evaluate_top1(model, val)
        config = TrainConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, seed=self.seed,
                             patience=None, progress=self.progress)
        history = fit(model, train, val, config)
        learned = model.ranges()
        module = clip_inputs(model.release(), learned)
        arch = dict(artifact.manifest.architecture or {})
        arch["transforms"] = [*(arch.get("transforms") or ()),
                              {"target": "laser.compress.qat:clip_inputs", "kwargs": {"ranges": learned}}]
        step = Step(self.op, params=self.params(), results={
            "fake_quant_val_top1": {"before": start_top1, "after": history.best_val_top1},
            "best_epoch": history.best_epoch, "history": history.history, "ranges": learned,
            "weight_bits": 7 if weight_qmax == 63 else 8,
            "method": "measured: top-1 of the fake-quantized torch model (eval mode) on the val split"})
        m = artifact.manifest
        trained = Artifact.from_module(module.eval(), name=m.name, task=m.task, spec=m.spec, architecture=arch,
                                       preprocessing=m.preprocessing, labels=m.labels, lineage=m.lineage, step=step)
        # default: the training data (by name when it has one, so the lineage says e.g. "digits/train")
        calibration = self.calibration if self.calibration is not None else (
            self.data if isinstance(self.data, str) else train)
        result = Quantize("int8-static", calibration=calibration, calibration_method=self.calibration_method,
                          samples=self.samples, progress=self.progress)(trained)
        int8 = top1(result, test)
        accuracy = {"data": test.name, "samples": len(test), "fp32_top1": test_fp32, "int8_top1": int8,
                    "drop_points": round((test_fp32 - int8) * 100, 4),
                    "method": "measured: FP32 = the original model in torch eager; INT8 = this artifact on "
                              "onnxruntime CPU; top-1 on every test sample"}
        last = result.lineage[-1]
        final = Step(last.op, params=last.params, results={**last.results, "qat_accuracy": accuracy},
                     versions=last.versions, time=last.time)
        return result.derive(final, lineage=(*result.lineage[:-1], final))

    def _splits(self) -> tuple[Dataset, Dataset, Dataset]:
        from laser import data as datasets

        if isinstance(self.data, Dataset):
            test = self.eval_data if isinstance(self.eval_data, Dataset) else self.data
            return self.data, self.data, test
        test = self.eval_data if isinstance(self.eval_data, Dataset) else datasets.load(self.eval_data or self.data, "test")
        return datasets.load(self.data, "train"), datasets.load(self.data, "val"), test
