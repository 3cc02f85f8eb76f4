"""``laser finetune``: transfer learning of a torch model onto the user's labelled images or texts.

The classifier head (the last Linear/Conv the forward pass runs) is replaced by a new one sized to the
classes found; the backbone is frozen (its BatchNorm statistics too) unless ``unfreeze`` names how
many of the last layers to train, or ``full`` trains everything. Images are read with the model's own
preprocessing, augmented while training (random shifts of up to an eighth of the side, Gaussian noise);
a text file of ``label<TAB>text`` lines is tokenized with a text model's vocabulary and length. Both are
and trained with laser's training loop (progress, TensorBoard, early stopping, resumable). A seeded,
stratified 15 % of the data is held out; its top-1 goes into the manifest's metrics.

The new head is recorded as an architecture transform (``laser.finetune:new_head``), so the result is
an ordinary torch artifact that rebuilds, prunes, quantizes and exports like any other.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from laser.artifact import Artifact, Step
from laser.data import Dataset
from laser.errors import ConfigError
from laser.spec import TensorSpec

HEAD = "laser.finetune:new_head"


def new_head(module: nn.Module, *, layer: str, classes: int) -> nn.Module:
    """Architecture transform: replace the Linear/Conv ``layer`` by a fresh one with ``classes`` outputs."""
    old = module.get_submodule(layer)
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, classes, bias=old.bias is not None)
    elif isinstance(old, nn.Conv2d):
        new = nn.Conv2d(old.in_channels, classes, old.kernel_size, old.stride, old.padding,  # type: ignore[arg-type]
                        old.dilation, old.groups if old.groups == 1 else 1, old.bias is not None)  # type: ignore[arg-type]
    else:
        raise ConfigError(f"the head {layer!r} is a {type(old).__name__}; fine-tuning replaces a Linear or Conv2d head")
    parent, _, name = layer.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, name, new)
    return module


@dataclass(frozen=True)
class Finetune:
    data: str
    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 32
    unfreeze: int = 0
    full: bool = False
    augment: bool = True
    skip_bad: bool = False
    seed: int = 0
    patience: int = 8
    logdir: str | None = None
    checkpoint: str | None = None
    progress: bool = True

    def __call__(self, artifact: Artifact) -> Artifact:
        from laser.compress.common import executed_layers, torch_module
        from laser.compress.train import TrainConfig, evaluate_top1, fit

        module, example = torch_module(artifact, "finetune")
        train, val, test, classes, skipped = self._data(artifact)
        order = executed_layers(module, example)
        if not order:
            raise ConfigError(f"{artifact.name!r} runs no Linear/Conv layer; fine-tuning needs a classifier head")
        names = {m: n for n, m in module.named_modules()}
        head = names[order[-1]]
        with torch.random.fork_rng(devices=[]):  # the new head's initial weights: seeded, same in any process
            torch.manual_seed(self.seed)
            module = new_head(module, layer=head, classes=len(classes))
        trainable = self._trainable(module, [names[m] for m in order[:-1]], head)
        config = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
                             patience=self.patience, logdir=self.logdir, checkpoint=self.checkpoint,
                             progress=self.progress)
        result = fit(module, train, val, config, loss_fn=self._loss(module, trainable))
        holdout = evaluate_top1(module, test)
        arch = dict(artifact.manifest.architecture or {})
        arch["transforms"] = [*(arch.get("transforms") or ()), {"target": HEAD, "kwargs": {"layer": head,
                                                                                              "classes": len(classes)}}]
        out = artifact.spec.outputs[0]
        spec = replace(artifact.spec, outputs=(TensorSpec(out.name, out.dtype, (out.shape[0], len(classes))),
                                               *artifact.spec.outputs[1:]))
        results = {"holdout_top1": holdout, "holdout_samples": len(test), "train_samples": len(train),
                   "val_samples": len(val), "best_val_top1": result.best_val_top1, "epochs_run": result.epochs_run,
                   "stopped_early": result.stopped_early, "skipped": list(skipped),
                   "trainable_params": sum(p.numel() for p in module.parameters() if p.requires_grad),
                   "method": "top-1 with torch eager on a seeded stratified 15 % split held out from training"}
        params = {"data": self.data, "epochs": self.epochs, "lr": self.lr, "unfreeze": self.unfreeze,
                  "full": self.full, "augment": self.augment, "seed": self.seed, "head": head}
        for p in module.parameters():
            p.requires_grad_(True)
        return artifact.derive(Step("finetune", params=params, results=results), module=module, spec=spec,
                               labels=tuple(classes), architecture=arch,
                               metrics={"holdout_top1": holdout, "holdout_samples": len(test),
                                        "best_val_top1": result.best_val_top1})

    def _data(self, artifact: Artifact) -> tuple[Dataset, Dataset, Dataset, tuple[str, ...], tuple[str, ...]]:
        from laser.data import folder

        path = Path(self.data)
        if path.exists():
            kind = "image" if path.is_dir() else "text"
            pre = artifact.preprocessing
            if pre.get("type") != kind:
                raise ConfigError(f"{artifact.name!r} has no {kind} preprocessing on its card ({pre.get('type')!r}); "
                                  + ("an image folder needs an image model" if kind == "image" else
                                     f"{path.name} is read as label<TAB>text lines, which need a text model "
                                     "(e.g. distilbert-sst2); images go in a folder DIR/<class>/*.png"))
            got = (folder.image_folder(path, pre, skip_bad=self.skip_bad) if kind == "image" else
                   folder.text_data(path, pre, artifact.spec.input_names))
            idx = folder.split(got.labels, self.seed)
            parts = [Dataset(f"{path.name}:{s}", tuple(a[idx[s]] for a in got.inputs), got.labels[idx[s]])
                     for s in ("train", "val", "test")]
            return parts[0], parts[1], parts[2], got.classes, got.skipped
        from laser import data as datasets

        sets = [datasets.load(self.data, s) for s in ("train", "val", "test")]
        if sets[0].labels is None:
            raise ConfigError(f"dataset {self.data!r} has no labels")
        n = int(max(int(s.labels.max()) for s in sets if s.labels is not None)) + 1
        return sets[0], sets[1], sets[2], tuple(str(i) for i in range(n)), ()

    def _trainable(self, module: nn.Module, backbone: list[str], head: str) -> list[nn.Module]:
        """Freeze the backbone except the last ``unfreeze`` layers (all with ``full``); the frozen modules."""
        if self.full:
            return []
        if self.unfreeze < 0:
            raise ConfigError(f"--unfreeze must be >= 0, got {self.unfreeze}")
        keep = {head, *backbone[len(backbone) - self.unfreeze:]} if self.unfreeze else {head}
        frozen = []
        for name, m in module.named_modules():
            inside = any(name == k or name.startswith(k + ".") for k in keep)
            if not inside and not list(m.children()):
                for p in m.parameters(recurse=False):
                    p.requires_grad_(False)
                frozen.append(m)
        return frozen

    def _loss(self, module: nn.Module, frozen: list[nn.Module]) -> Any:
        gen = torch.Generator().manual_seed(self.seed)
        augment = self.augment

        def loss(m: nn.Module, xs: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
            for f in frozen:  # frozen layers keep their statistics (BatchNorm) and dropout off
                f.eval()
            if augment:
                xs = [_augment(x, gen) if x.dtype.is_floating_point and x.ndim == 4 else x for x in xs]
            return nn.functional.cross_entropy(m(*xs), labels)
        return loss


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shifts (edge-padded) of up to 1/8 of each side, and N(0, 0.05) noise, per batch."""
    h, w = x.shape[-2:]
    dy, dx = (int(torch.randint(-max(1, h // 8), max(1, h // 8) + 1, (1,), generator=gen)),
              int(torch.randint(-max(1, w // 8), max(1, w // 8) + 1, (1,), generator=gen)))
    pad = (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0))
    shifted = nn.functional.pad(x, pad, mode="replicate")[..., max(-dy, 0):max(-dy, 0) + h, max(-dx, 0):max(-dx, 0) + w]
    return shifted + 0.05 * torch.randn(shifted.shape, generator=gen)


def finetune(artifact: Artifact, data: str, **kwargs: Any) -> Artifact:
    """``laser.finetune.finetune(art, "images/")``: the fine-tuned artifact (unsaved)."""
    return Finetune(data=data, **kwargs)(copy.copy(artifact))
