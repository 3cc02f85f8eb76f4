"""Face-detection evaluation data made here from pictures that ship in scikit-image (no downloads).

Scenes: ``astronaut`` (one frontal face), ``camera`` (the cameraman, in profile), ``coffee`` and ``chelsea``
(no face: a false box there costs precision), and mosaics of scikit-image's ``lfw_subset`` face crops
(25 x 25, upscaled to 60-90 px, placed at seeded places beside non-face crops on a grey background). Boxes:
hand-recorded in ``laser/assets/faces.json`` for the photos; the crops' squares for the mosaics. Test scenes
also come in 5 augmented copies each (flipped, scaled down, darker, brighter, Gaussian noise; boxes moved to
match); train / val scenes in one each.

``scenes(split)`` gives (picture, boxes) pairs for whole-pipeline evaluation (``pipeline_accuracy``). The
registered datasets are what each net sees, made once per split by the FP32 cascade and cached:

- ``faces``: O-Net inputs (48 x 48 crops of R-Net's boxes) with, per row, the scene index, the crop's box
  and the scene's true boxes, so the metric (precision / recall / F1 at IoU 0.5 of the final faces) needs
  only O-Net's outputs — it measures the O-Net stage on fixed FP32 proposals;
- ``faces-rnet``: R-Net inputs (24 x 24 crops of P-Net's boxes), and ``faces-pnet``: 48 x 48 tiles of
  normalised pyramid levels — calibration sets (unlabelled).

test = the photos and the first 50 LFW faces; train / val = mosaics of the other 50 (calibration never
sees a test face). ``pip install scikit-image`` (laser's ``faces`` extra).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import numpy as np

from laser.errors import ConfigError, NotFoundError

MAX_FACES = 8  # true boxes per scene stored in a label row (NaN padded)
MOSAICS = {"train": 6, "val": 3, "test": 6}
SEEDS = {"train": 31, "val": 32, "test": 33}
TILE = 48  # faces-pnet tiles


def _skimage() -> Any:
    try:
        import skimage.data
    except ImportError:
        raise NotFoundError("the faces data needs scikit-image's bundled pictures: pip install scikit-image "
                            "(laser[faces])") from None
    return skimage.data


def face_annotations() -> dict[str, Any]:
    return json.loads((resources.files("laser") / "assets" / "faces.json").read_text())["images"]  # type: ignore[no-any-return]


def photos() -> list[tuple[str, Any, np.ndarray]]:
    """(name, RGB picture, (K, 4) boxes) for the annotated scikit-image photos."""
    from PIL import Image

    sk = _skimage()
    out = []
    for name, entry in face_annotations().items():
        pic = Image.fromarray(getattr(sk, name)()).convert("RGB")
        out.append((name, pic, np.asarray(entry["faces"], np.float32).reshape(-1, 4)))
    return out


def mosaic(faces: np.ndarray, others: np.ndarray, rng: np.random.Generator) -> tuple[Any, np.ndarray]:
    """LFW face crops and non-face crops pasted without overlap on a 400 x 300 grey picture."""
    from PIL import Image

    canvas = Image.new("L", (400, 300), int(rng.integers(90, 170)))
    taken: list[tuple[int, int, int, int]] = []
    boxes = []
    for k, crop in enumerate([*faces, *others]):
        side = int(rng.integers(60, 91))
        tile = Image.fromarray((crop * 255).astype(np.uint8)).resize((side, side), Image.Resampling.BICUBIC)
        for _ in range(200):
            x, y = int(rng.integers(5, 400 - side - 5)), int(rng.integers(5, 300 - side - 5))
            if all(x + side + 8 < a or a + c + 8 < x or y + side + 8 < b or b + c + 8 < y for a, b, c, _ in taken):
                break
        else:
            continue
        taken.append((x, y, side, k))
        canvas.paste(tile, (x, y))
        if k < len(faces):
            boxes.append([x, y, x + side, y + side])
    return canvas.convert("RGB"), np.asarray(boxes, np.float32).reshape(-1, 4)


def augment(pic: Any, boxes: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[Any, np.ndarray]:
    """One augmented copy: ``flip``, ``scale`` (x 0.35-0.8: faces down to ~20 px), ``dark`` / ``bright``
    (pixels x 0.35-0.6 / x 1.4-1.8, clipped), ``noise`` (Gaussian, sigma 8-30)."""
    from PIL import Image

    w, h = pic.size
    if kind == "flip":
        return pic.transpose(Image.Transpose.FLIP_LEFT_RIGHT), np.stack(
            [w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1).reshape(-1, 4)
    if kind == "scale":
        s = float(rng.uniform(0.35, 0.8))
        size = (round(w * s), round(h * s))
        ratio = np.asarray([size[0] / w, size[1] / h] * 2, np.float32)  # as resized, after rounding
        return pic.resize(size, Image.Resampling.BILINEAR), boxes * ratio
    a = np.asarray(pic, np.float32)
    if kind in ("dark", "bright"):
        a = a * float(rng.uniform(0.35, 0.6) if kind == "dark" else rng.uniform(1.4, 1.8))
    elif kind == "noise":
        a = (a + rng.normal(0, float(rng.uniform(8, 30)), a.shape)).astype(np.float32)
    else:
        raise ConfigError(f"unknown augmentation {kind!r}")
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)), boxes


AUGMENTS = ("flip", "scale", "dark", "bright", "noise")


def scenes(split: str) -> list[tuple[Any, np.ndarray]]:
    """(RGB picture, (K, 4) true boxes) of a split, originals then augmented copies (seeded)."""
    from laser.data import SPLITS

    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {SPLITS}")
    rng = np.random.default_rng(SEEDS[split])
    lfw = _skimage().lfw_subset()
    faces, others = (lfw[:50], lfw[100:150]) if split == "test" else (lfw[50:100], lfw[150:])
    base = [(p, b) for _, p, b in photos()] if split == "test" else []
    for _ in range(MOSAICS[split]):
        pick = rng.choice(len(faces), size=int(rng.integers(2, 5)), replace=False)
        base.append(mosaic(faces[pick], others[rng.choice(len(others), size=2, replace=False)], rng))
    out = list(base)
    for k, (pic, boxes) in enumerate(base):
        kinds = AUGMENTS if split == "test" else (AUGMENTS[k % len(AUGMENTS)],)
        out += [augment(pic, boxes, kind, rng) for kind in kinds]
    return out


def _stage_inputs(pic: Any, nets: Any, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                          np.ndarray]:
    """One scene through the FP32 P-Net and R-Net runners: (P-Net tiles, R-Net crops, O-Net crops, O-Net crop boxes)."""
    from laser.hub.pipelines import faces as mt

    pnet, rnet = nets
    pre = pnet.artifact.preprocessing
    tiles = []
    for s in mt.scales(pic.width, pic.height, float(pre["min_face"]), float(pre["factor"]))[:4]:
        level = mt.level(pic, s, pre)[0]
        if min(level.shape[1:]) >= TILE:
            y, x = int(rng.integers(0, level.shape[1] - TILE + 1)), int(rng.integers(0, level.shape[2] - TILE + 1))
            tiles.append(level[:, y:y + TILE, x:x + TILE])
    proposed = mt.proposals(pic, pre, pnet)
    refined = mt.refine(pic, proposed, rnet.artifact.preprocessing, rnet)
    return (np.asarray(tiles, np.float32).reshape(-1, 3, TILE, TILE),
            mt.crops(pic, proposed[:, :4], 24, pre), mt.crops(pic, refined[:, :4], 48, pre), refined[:, :4])


def stage_arrays(split: str) -> dict[str, np.ndarray]:
    """Every net's inputs over a split's scenes (see the module doc), made once by the FP32 cascade and cached."""
    from laser import hub
    from laser.hub.download import cache_dir
    from laser.runtime import run

    path = cache_dir().parent / "datasets" / f"faces-v3-{split}.npz"
    if not path.is_file():
        pics = scenes(split)
        nets = [run(hub.load(n, progress=False), backend="torch") for n in ("mtcnn-pnet", "mtcnn-rnet")]
        rng = np.random.default_rng(SEEDS[split] + 100)
        parts: dict[str, list[np.ndarray]] = {"pnet": [], "rnet": [], "onet": [], "labels": []}
        for i, (pic, truth) in enumerate(pics):
            tiles, r_in, o_in, o_boxes = _stage_inputs(pic, nets, rng)
            gt = np.full((MAX_FACES, 4), np.nan, np.float32)
            gt[:len(truth)] = truth[:MAX_FACES]
            if len(o_in) == 0:  # no candidate: one empty row keeps the scene's true faces counted
                o_in, o_boxes = np.zeros((1, 3, 48, 48), np.float32), np.full((1, 4), np.nan, np.float32)
            rows = np.concatenate([np.full((len(o_in), 1), i, np.float32), o_boxes,
                                   np.repeat(gt.reshape(1, -1), len(o_in), axis=0)], axis=1)
            parts["pnet"].append(tiles)
            parts["rnet"].append(r_in)
            parts["onet"].append(o_in)
            parts["labels"].append(rows)
        for net in nets:
            net.close()
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.stem + ".part.npz")
        joined = {k: np.concatenate(v) for k, v in parts.items()}
        np.savez(part, pnet=joined["pnet"], rnet=joined["rnet"], onet=joined["onet"], labels=joined["labels"])
        part.replace(path)
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def faces(split: str) -> Any:
    from laser.data import Dataset

    a = stage_arrays(split)
    return Dataset("faces", (a["onet"],), a["labels"])


def faces_rnet(split: str) -> Any:
    from laser.data import Dataset

    return Dataset("faces-rnet", (stage_arrays(split)["rnet"],))


def faces_pnet(split: str) -> Any:
    from laser.data import Dataset

    return Dataset("faces-pnet", (stage_arrays(split)["pnet"],))


def pipeline_accuracy(pipe: Any, split: str = "test") -> dict[str, float]:
    """The whole cascade on every scene of ``split``: precision / recall / F1 of its faces at IoU 0.5."""
    from laser.measure.accuracy import detection_counts, precision_recall

    tp = fp = fn = 0
    pics = scenes(split)
    for pic, truth in pics:
        boxes, _ = pipe.detect(pic)
        a, b, c = detection_counts(boxes[:, :4], truth, 0.5)
        tp, fp, fn = tp + a, fp + b, fn + c
    return {**precision_recall(tp, fp, fn), "faces": tp + fn, "samples": len(pics)}
