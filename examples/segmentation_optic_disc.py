"""Optic-disc segmentation on synthetic fundus photographs (after PaddleSeg's medical example).

Generates a small dataset of fundus-like pictures (an orange retina disc, dark vessels, a bright
optic disc at a random place) with the disc's mask, trains a small U-Net with laser's training loop,
segments a new picture through the segmentation pipeline (mask PNG + overlay), then exports,
quantizes, measures and serves the model.

    python examples/segmentation_optic_disc.py [--fast] [--out out/examples/optic_disc]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

import laser
from laser.architecture import build_architecture
from laser.artifact import Step
from laser.compress.train import TrainConfig, fit
from laser.data import Dataset
from laser.spec import ModelSpec, TensorSpec

SIZE = 64  # pixels; the model is fully convolutional but the spec fixes 64 x 64 for export and batching
PRE = {"type": "image", "mode": "RGB", "size": [SIZE, SIZE], "mean": [0.5, 0.3, 0.15], "std": [0.25, 0.2, 0.15]}
ARCH = {"factory": "laser.models.tiny:tiny_segnet", "kwargs": {"classes": 2, "width": 8}}


def fundus(rng: np.random.Generator, size: int = SIZE) -> tuple[Image.Image, np.ndarray]:
    """One synthetic fundus picture and its optic-disc mask ((H, W) uint8, 1 = disc)."""
    yy, xx = np.mgrid[:size, :size] / (size - 1) - 0.5
    r = np.hypot(xx, yy)
    base = np.array([0.78, 0.36, 0.14]) * rng.uniform(0.8, 1.1)
    rgb = base * (1.0 - 0.8 * r[..., None] ** 2) + rng.normal(0, 0.02, (size, size, 3))  # vignetting + noise
    img = Image.fromarray((rgb.clip(0, 1) * 255).astype(np.uint8))
    cx, cy = rng.uniform(0.3, 0.7) * size, rng.uniform(0.3, 0.7) * size
    rx, ry = rng.uniform(0.07, 0.11) * size, rng.uniform(0.08, 0.12) * size
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(4, 7)):  # vessels leave the disc in all directions
        angle, points = rng.uniform(0, 2 * np.pi), [(cx, cy)]
        for _ in range(5):
            angle += rng.normal(0, 0.35)
            points.append((points[-1][0] + np.cos(angle) * size / 10, points[-1][1] + np.sin(angle) * size / 10))
        draw.line(points, fill=(110, 20, 15), width=int(rng.integers(1, 3)))
    disc = Image.new("L", img.size, 0)
    ImageDraw.Draw(disc).ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
    glow = Image.new("RGB", img.size, tuple(int(v) for v in rng.uniform([230, 190, 110], [255, 225, 150])))
    img = Image.composite(glow, img, disc.filter(ImageFilter.GaussianBlur(1.2)))  # soft-edged bright disc
    retina = Image.fromarray(((r <= 0.48) * 255).astype(np.uint8))
    img = Image.composite(img, Image.new("RGB", img.size), retina)  # the black surround of a fundus photograph
    return img, ((np.asarray(disc) > 127) & (r <= 0.48)).astype(np.int64)


def dataset(n: int, seed: int) -> tuple[Dataset, list[Image.Image]]:
    from laser.preprocess import image_to_array

    rng = np.random.default_rng(seed)
    pics, masks = zip(*(fundus(rng) for _ in range(n)))
    x = np.concatenate([image_to_array(p, PRE) for p in pics])  # (N, 3, 64, 64), normalised as PRE says
    return Dataset("fundus", (x,), np.stack(masks)), list(pics)


def pixel_loss(module: torch.nn.Module, inputs: list[torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
    # The disc covers ~3 % of the picture: weight it up so "all background" is not a good answer.
    weight = torch.tensor([1.0, 5.0])
    return torch.nn.functional.cross_entropy(module(*inputs), masks, weight=weight)


def main() -> dict:
    from deploy import deploy, example_args

    args = example_args("optic_disc", __doc__.splitlines()[0])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, _ = dataset(96 if args.fast else 320, args.seed)
    val, val_pics = dataset(16 if args.fast else 64, args.seed + 1)
    torch.manual_seed(args.seed)
    module = build_architecture(ARCH)
    config = TrainConfig(epochs=4 if args.fast else 12, batch_size=16, lr=1e-2, seed=args.seed, patience=None,
                         progress=not args.fast)
    result = fit(module, train, None, config, loss_fn=pixel_loss)
    spec = ModelSpec(inputs=(TensorSpec("input", "float32", ("batch", 3, SIZE, SIZE)),),
                     outputs=(TensorSpec("logits", "float32", ("batch", 2, SIZE, SIZE)),))
    art = laser.Artifact.from_module(
        module.eval(), name="optic-disc-segnet", task="segmentation", spec=spec, architecture=ARCH, preprocessing=PRE,
        labels=("background", "optic_disc"),
        step=Step("train", params={"data": "synthetic fundus", "samples": len(train), "epochs": config.epochs},
                  results={"final_loss": result.history[-1]["loss"]}))
    val_pics[0].save(out / "fundus.png")
    answer = laser.pipeline("segmentation", model=art).run(out / "fundus.png", output=out)
    disc = next((c for c in answer["classes"] if c["label"] == "optic_disc"), {"fraction": 0.0})
    print(f"segmented {out / 'fundus.png'}: optic disc covers {100 * disc['fraction']:.1f} % of the picture; "
          f"mask {answer['files']['mask']}, overlay {answer['files']['overlay']}")
    summary = deploy(art, sample=out / "fundus.png", calibration=train, data=val, out=out, fast=args.fast)
    miou = summary["report"].artifacts[0]["accuracy"]["miou"]
    print(f"validation mIoU (torch, measured on {len(val)} pictures): {miou:.3f}")
    return {"miou": miou, **summary}


if __name__ == "__main__":
    main()
