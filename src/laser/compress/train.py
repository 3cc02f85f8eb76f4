"""The training loop shared by training, fine-tuning, distillation and QAT.

Seeded (same seed -> same weights), progress bar, TensorBoard scalars, early stopping on validation
accuracy (the best epoch's weights are restored), resumable from a checkpoint directory written
atomically after every epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from laser.data import Dataset
from laser.errors import ConfigError

LossFn = Callable[[nn.Module, Sequence[torch.Tensor], torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    patience: int | None = 10  # stop after this many epochs without a better validation accuracy
    logdir: str | None = None  # TensorBoard log directory
    checkpoint: str | None = None  # resume from / save to this directory
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch_size must be >= 1, got epochs={self.epochs}, batch_size={self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be >= 1 or None, got {self.patience}")


@dataclass
class TrainResult:
    best_val_top1: float | None
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def cross_entropy(module: nn.Module, inputs: Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(module(*inputs), labels)


def evaluate_top1(module: nn.Module, data: Dataset, batch_size: int = 256) -> float:
    if data.labels is None:
        raise ConfigError(f"dataset {data.name!r} has no labels; top-1 needs labelled samples")
    module.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(data), batch_size):
            xs = [torch.from_numpy(a[i:i + batch_size]) for a in data.inputs]
            correct += int((module(*xs).argmax(1).numpy() == data.labels[i:i + batch_size]).sum())
    return correct / max(1, len(data))


def fit(module: nn.Module, train: Dataset, val: Dataset | None, config: TrainConfig = TrainConfig(),
        loss_fn: LossFn = cross_entropy) -> TrainResult:
    """Train ``module`` in place on ``train``; early-stop on ``val`` top-1; return the history."""
    from tqdm.auto import tqdm

    if train.labels is None or len(train) == 0:
        raise ConfigError(f"training data {train.name!r} must be non-empty and labelled")
    torch.manual_seed(config.seed)
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    result = TrainResult(best_val_top1=None, best_epoch=-1, epochs_run=0)
    best_state = None
    start = 0
    ckpt = Path(config.checkpoint) if config.checkpoint else None
    if ckpt and (ckpt / "state.json").is_file():
        start, result, best_state = _resume(ckpt, module, opt, sched)
    writer = _writer(config.logdir)
    labels = torch.from_numpy(train.labels)
    bar = tqdm(range(start, config.epochs), desc="train", unit="epoch", disable=not config.progress,
               initial=start, total=config.epochs)
    for epoch in bar:
        module.train()
        order = np.random.default_rng(config.seed + epoch).permutation(len(train))  # per-epoch: resumable
        total, seen = 0.0, 0
        for i in range(0, len(order), config.batch_size):
            idx = order[i:i + config.batch_size]
            xs = [torch.from_numpy(a[idx]) for a in train.inputs]
            loss = loss_fn(module, xs, labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        sched.step()
        row = {"epoch": epoch, "loss": total / seen, "lr": opt.param_groups[0]["lr"]}
        if val is not None:
            row["val_top1"] = evaluate_top1(module, val)
            if result.best_val_top1 is None or row["val_top1"] > result.best_val_top1:
                result.best_val_top1, result.best_epoch = row["val_top1"], epoch
                best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        result.history.append(row)
        result.epochs_run = epoch + 1
        bar.set_postfix({k: round(v, 4) for k, v in row.items() if k != "epoch"})
        if writer:
            for k, v in row.items():
                if k != "epoch":
                    writer.add_scalar(f"train/{k}", v, epoch)
        if ckpt:
            _save_checkpoint(ckpt, module, opt, sched, result, best_state)
        if config.patience and val is not None and epoch - result.best_epoch >= config.patience:
            result.stopped_early = True
            break
    if writer:
        writer.close()
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return result


def _writer(logdir: str | None):
    if not logdir:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(logdir)


def _save_checkpoint(ckpt: Path, module, opt, sched, result: TrainResult, best_state) -> None:
    """Write model + optimizer + best weights to a new directory, then swap it in (atomic)."""
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{ckpt.name}.", dir=ckpt.parent))
    torch.save({"model": module.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "best": best_state or {}}, tmp / "train_state.pt")
    (tmp / "state.json").write_text(json.dumps(result.to_dict()))
    old = ckpt.with_name(ckpt.name + ".old")
    if ckpt.exists():
        os.rename(ckpt, old)
    os.rename(tmp, ckpt)
    shutil.rmtree(old, ignore_errors=True)


def _resume(ckpt: Path, module, opt, sched):
    state = torch.load(ckpt / "train_state.pt", map_location="cpu", weights_only=True)
    module.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    saved = json.loads((ckpt / "state.json").read_text())
    result = TrainResult(**saved)
    return result.epochs_run, result, state["best"] or None
