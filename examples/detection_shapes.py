"""Object detection on pictures of shapes, with a detector trained here (after Paddle Lite's detection demo).

Generates pictures with circles, squares and triangles and their boxes, trains laser's tiny grid
detector, detects the shapes in a new, larger picture through the detection pipeline (laser's own NMS;
boxes as JSON and drawn on the picture), then exports, quantizes, measures (mAP) and serves it.

    python examples/detection_shapes.py [--fast] [--out out/examples/shapes]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

import laser
from laser.architecture import build_architecture
from laser.artifact import Step
from laser.compress.train import TrainConfig, fit
from laser.data import Dataset
from laser.models.tiny import detector_loss, grid_targets
from laser.preprocess import image_to_array
from laser.spec import ModelSpec, TensorSpec

SIZE = 64  # model input, pixels (stride 8: an 8 x 8 grid of cells)
LABELS = ("background", "circle", "square", "triangle")
PRE = {"type": "image", "mode": "RGB", "size": [SIZE, SIZE], "mean": [0.5] * 3, "std": [0.25] * 3}
ARCH = {"factory": "laser.models.tiny:tiny_detector", "kwargs": {"classes": 3, "width": 16}}


def picture(rng: np.random.Generator, scale: int = 1) -> tuple[Image.Image, list[list[float]], list[int]]:
    """A noisy background with 1-3 shapes whose centres fall in different grid cells; boxes in pixels."""
    size = SIZE * scale
    noise = rng.normal(0.45, 0.08, (SIZE, SIZE, 3)).clip(0, 1)
    img = Image.fromarray((noise * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    boxes, labels, cells = [], [], set()
    count = int(rng.integers(1, 4))
    for _ in range(200):  # placement attempts (a few suffice: at most 3 small shapes in 64 x 64)
        if len(boxes) == count:
            break
        s = rng.uniform(12, 22)
        x1, y1 = rng.uniform(0, SIZE - s, 2)
        cell = (int((x1 + s / 2) // 8), int((y1 + s / 2) // 8))
        if cell in cells or any(not (x1 + s < b[0] or b[2] < x1 or y1 + s < b[1] or b[3] < y1) for b in boxes):
            continue  # one object per cell, and no overlaps
        cells.add(cell)
        label = int(rng.integers(1, 4))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        xy = [v * scale for v in (x1, y1, x1 + s, y1 + s)]
        if label == 1:
            draw.ellipse(xy, fill=colour)
        elif label == 2:
            draw.rectangle(xy, fill=colour)
        else:
            draw.polygon([(xy[0], xy[3]), (xy[2], xy[3]), ((xy[0] + xy[2]) / 2, xy[1])], fill=colour)
        boxes.append([x1, y1, x1 + s, y1 + s])
        labels.append(label)
    return img, boxes, labels


def datasets(n: int, seed: int) -> tuple[Dataset, Dataset]:
    """The same pictures twice: with grid targets (training) and with boxes per picture (mAP)."""
    rng = np.random.default_rng(seed)
    pics = [picture(rng, scale=2) for _ in range(n)]  # drawn at 128 px, resized to 64 like any input picture
    x = np.concatenate([image_to_array(p, PRE) for p, _, _ in pics])
    targets = grid_targets([b for _, b, _ in pics], [lab for _, _, lab in pics], (SIZE, SIZE))
    per_image = np.empty(n, dtype=object)
    per_image[:] = [{"boxes": np.array(b, np.float32), "labels": np.array(lab, np.int64)} for _, b, lab in pics]
    return Dataset("shapes", (x,), targets), Dataset("shapes", (x,), per_image)


def main() -> dict:
    from deploy import deploy, example_args

    args = example_args("shapes", __doc__.splitlines()[0])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, _ = datasets(192 if args.fast else 800, args.seed)
    _, val = datasets(24 if args.fast else 100, args.seed + 1)
    torch.manual_seed(args.seed)
    module = build_architecture(ARCH)
    config = TrainConfig(epochs=6 if args.fast else 16, batch_size=32, lr=5e-3, seed=args.seed, patience=None,
                         progress=not args.fast)
    result = fit(module, train, None, config, loss_fn=detector_loss)
    cells = (SIZE // 8) ** 2
    spec = ModelSpec(inputs=(TensorSpec("input", "float32", ("batch", 3, SIZE, SIZE)),),
                     outputs=(TensorSpec("boxes", "float32", ("batch", cells, 4)),
                              TensorSpec("scores", "float32", ("batch", cells)),
                              TensorSpec("labels", "int64", ("batch", cells))))
    art = laser.Artifact.from_module(
        module.eval(), name="shapes-detector", task="detection", spec=spec, architecture=ARCH, preprocessing=PRE,
        labels=LABELS, step=Step("train", params={"data": "synthetic shapes", "samples": len(train),
                                                  "epochs": config.epochs},
                                 results={"final_loss": result.history[-1]["loss"]}))
    big, _, truth_labels = picture(np.random.default_rng(args.seed + 7), scale=4)  # 256 x 256
    big.save(out / "shapes.png")
    answer = laser.pipeline("detection", model=art).run(out / "shapes.png", output=out, score_threshold=0.3)
    print(f"{len(answer['detections'])} shape(s) found in {out / 'shapes.png'} (truth: "
          f"{[LABELS[i] for i in truth_labels]}); drawn: {answer['files']['image']}")
    for d in answer["detections"]:
        print(f"  {d['label']:<9} {d['score']:.2f}  box {d['box']}")
    summary = deploy(art, sample=out / "shapes.png", calibration=train, data=val, out=out, fast=args.fast)
    accuracy = summary["report"].artifacts[0]["accuracy"]
    print(f"validation mAP@0.5 (torch, measured on {len(val)} pictures, candidates without NMS): "
          f"{accuracy['map_50']:.3f}")
    return {"map_50": accuracy["map_50"], "answer": answer, **summary}


if __name__ == "__main__":
    main()
