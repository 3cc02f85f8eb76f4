"""Face detection with MTCNN: a picture -> face boxes, scores and 5 landmarks (eyes, nose, mouth corners).

``laser.pipeline("face-detection").run("photo.jpg", output=DIR)`` (or ``laser hub run mtcnn``) runs the
cascade of the three catalog nets, with the pre/post-processing written here (numpy + PIL; laser's NMS):

1. image pyramid: scales 12 / min_face x factor^k while the shorter side stays >= 12 px; each level resized
   (area averaging), RGB, (x - 127.5) / 128, through P-Net; windows with p >= 0.6 become boxes (12 px cells
   at stride 2, mapped back by the scale); NMS 0.5 per level, 0.7 over all levels; boxes corrected by
   P-Net's regression and squared;
2. each box cropped (black outside the picture), resized to 24 x 24, through R-Net: p >= 0.7, NMS 0.7,
   corrected and squared;
3. the same at 48 x 48 through O-Net: p >= 0.7, landmarks placed in the box, box corrected, NMS 0.7 over
   the smaller box's area.

Thresholds, NMS overlaps and the pyramid's parameters are read from each card's ``preprocessing``.
The pipeline's artifact is P-Net (the stage that sees the picture: a server's batched runner stands in
for it); R-Net and O-Net are the catalog cards the P-Net card names (``preprocessing["stages"]``), or any
artifacts given as ``rnet=`` / ``onet=`` (e.g. their INT8 versions).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from laser.artifact import Artifact
from laser.errors import BackendError
from laser.hub.pipelines import Pipeline, output_stem
from laser.preprocess import load_image
from laser.runtime import run as make_runner

CROP_BATCH = 256  # R-Net / O-Net crops per runner call


def _stage_backend(artifact: Artifact, backend: str) -> str:
    # "auto" would time every runtime on example inputs; these nets are small and shapes change per call.
    if backend in ("auto", "echo"):
        return "torch" if artifact.format == "torch" else "onnxruntime"
    return backend


def scales(width: int, height: int, min_face: float = 20, factor: float = 0.709, cell: int = 12) -> list[float]:
    """The pyramid's scales: the smallest face (``min_face`` px) maps to one P-Net cell, then x ``factor``."""
    m = cell / min_face
    side, s, out = min(width, height) * m, m, []
    while side >= cell:
        out.append(s)
        s, side = s * factor, side * factor
    return out


def _normalise(pixels: np.ndarray, pre: Mapping[str, Any]) -> np.ndarray:
    """(N, H, W, 3) or (H, W, 3) uint8 RGB -> (N, 3, H, W) float32, (x - mean) / std."""
    x = np.asarray(pixels, np.float32).reshape(-1, *np.shape(pixels)[-3:])
    mean = np.asarray(pre.get("mean", [127.5] * 3), np.float32)
    std = np.asarray(pre.get("std", [128.0] * 3), np.float32)
    return np.ascontiguousarray(((x - mean) / std).transpose(0, 3, 1, 2), dtype=np.float32)


def level(image: Any, scale: float, pre: Mapping[str, Any]) -> np.ndarray:
    """One pyramid level: the picture resized by ``scale`` (area averaging), as (1, 3, h, w) P-Net input."""
    from PIL import Image

    w, h = image.size
    return _normalise(np.asarray(image.resize((int(w * scale + 1), int(h * scale + 1)), Image.Resampling.BOX)), pre)


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "iou") -> np.ndarray:
    import torch

    from laser.hub.nms import nms

    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    return nms(torch.from_numpy(boxes).float(), torch.from_numpy(scores).float(), threshold, mode).numpy()


def square(boxes: np.ndarray) -> np.ndarray:
    """Boxes (N, 4) made square around their centres, side = the longer side."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w / 2 - side / 2
    out[:, 1] = boxes[:, 1] + h / 2 - side / 2
    out[:, 2:4] = out[:, :2] + side[:, None]
    return out


def correct(boxes: np.ndarray, reg: np.ndarray, plus_one: bool = True) -> np.ndarray:
    """Boxes moved by a net's regression (fractions of the box's width/height)."""
    w = boxes[:, 2] - boxes[:, 0] + (1 if plus_one else 0)
    h = boxes[:, 3] - boxes[:, 1] + (1 if plus_one else 0)
    return boxes + reg * np.stack([w, h, w, h], axis=1)


def crops(image: Any, boxes: np.ndarray, size: int, pre: Mapping[str, Any]) -> np.ndarray:
    """(N, 3, size, size) normalised crops of the PIL picture (black outside it), area-resized."""
    from PIL import Image

    out = [np.asarray(image.crop((int(x1) - 1, int(y1) - 1, max(int(x2), int(x1)), max(int(y2), int(y1))))
                      .resize((size, size), Image.Resampling.BOX))
           for x1, y1, x2, y2 in np.trunc(boxes)]  # MTCNN's boxes are 1-based, inclusive
    return _normalise(np.stack(out), pre) if out else np.zeros((0, 3, size, size), np.float32)


def proposals(image: Any, pre: Mapping[str, Any], infer: Any) -> np.ndarray:
    """Stage 1: (N, 5) squared boxes + P-Net score from every pyramid level of the PIL picture."""
    width, height = image.size
    t, (nms_level, nms_all) = float(pre["threshold"]), pre["nms"][:2]
    cell, stride = int(pre.get("cell", 12)), int(pre.get("stride", 2))
    found = []
    for s in scales(width, height, float(pre["min_face"]), float(pre["factor"]), cell):
        out = infer({"input": level(image, s, pre)})
        prob, reg = out["prob"], out["reg"]
        if prob.ndim != 4 or reg.ndim != 4:
            raise BackendError(f"P-Net returned shapes {list(prob.shape)}, {list(reg.shape)}; expected (1, 2, h, w) "
                               "and (1, 4, h, w)")
        ys, xs = np.nonzero(prob[0, 1] >= t)
        if len(ys) == 0:
            continue
        cells = np.stack([xs, ys], axis=1).astype(np.float32)
        b = np.concatenate([np.floor((stride * cells + 1) / s), np.floor((stride * cells + cell) / s)], axis=1)
        score, r = prob[0, 1, ys, xs], reg[0][:, ys, xs].T
        keep = _nms(b, score, float(nms_level))
        found.append(np.concatenate([b[keep], score[keep, None], r[keep]], axis=1))
    if not found:
        return np.zeros((0, 5), np.float32)
    every = np.concatenate(found)
    every = every[_nms(every[:, :4], every[:, 4], float(nms_all))]
    boxes = square(correct(every[:, :4], every[:, 5:9], plus_one=False))
    return np.concatenate([boxes, every[:, 4:5]], axis=1).astype(np.float32)


def _run_crops(infer: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    parts = [infer({"input": x[i:i + CROP_BATCH]}) for i in range(0, len(x), CROP_BATCH)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def refine(image: Any, boxes: np.ndarray, pre: Mapping[str, Any], infer: Any) -> np.ndarray:
    """Stage 2 (R-Net): (N, 5) candidates -> the ones it keeps, corrected and squared."""
    if len(boxes) == 0:
        return boxes
    out = _run_crops(infer, crops(image, boxes[:, :4], int(pre["size"]), pre))
    score = out["prob"][:, 1]
    ok = score >= float(pre["threshold"])
    kept, score, reg = boxes[ok, :4], score[ok], out["reg"][ok]
    pick = _nms(kept, score, float(pre["nms"]))
    squared = square(correct(kept[pick], reg[pick]))
    return np.concatenate([squared, score[pick, None]], axis=1).astype(np.float32)


def landmarks(image: Any, boxes: np.ndarray, pre: Mapping[str, Any], infer: Any) -> tuple[np.ndarray, np.ndarray]:
    """Stage 3 (O-Net): ((N, 5) final boxes + score, (N, 5, 2) landmark x, y in pixels)."""
    if len(boxes) == 0:
        return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
    out = _run_crops(infer, crops(image, boxes[:, :4], int(pre["size"]), pre))
    return finish(boxes[:, :4], out["prob"][:, 1], out["reg"], out["landmarks"], pre)


def finish(boxes: np.ndarray, score: np.ndarray, reg: np.ndarray, marks: np.ndarray,
           pre: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """O-Net's outputs for its input boxes -> the kept faces and their landmarks (shared with the metric)."""
    ok = score >= float(pre["threshold"])
    b, score, reg, marks = boxes[ok], score[ok], reg[ok], marks[ok]
    w, h = b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1
    points = np.stack([w[:, None] * marks[:, :5] + b[:, :1] - 1, h[:, None] * marks[:, 5:] + b[:, 1:2] - 1], axis=2)
    b = correct(b, reg)
    pick = _nms(b, score, float(pre["nms"]), str(pre.get("nms_mode", "iou")))
    return np.concatenate([b[pick], score[pick, None]], axis=1).astype(np.float32), points[pick].astype(np.float32)


class FaceDetectionPipeline(Pipeline):
    """MTCNN's cascade; this artifact is P-Net (see the module doc)."""

    task = "face-detection"

    def __init__(self, artifact: Artifact, backend: str = "auto", runner: Any = None,
                 rnet: Artifact | None = None, onet: Artifact | None = None, **options: Any):
        # echo: the server puts its batched runner in place of P-Net's; R-Net and O-Net run here for real
        own = "echo" if backend == "echo" else _stage_backend(artifact, backend)
        super().__init__(artifact, own, runner=runner, **options)
        from laser import hub

        stages = list(artifact.preprocessing.get("stages", ("mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet")))
        self.rnet = rnet if rnet is not None else hub.load(stages[1], progress=False)
        self.onet = onet if onet is not None else hub.load(stages[2], progress=False)
        self.rnet_runner = make_runner(self.rnet, backend=_stage_backend(self.rnet, backend), **options)
        self.onet_runner = make_runner(self.onet, backend=_stage_backend(self.onet, backend), **options)

    def detect(self, image: Any) -> tuple[np.ndarray, np.ndarray]:
        """((N, 5) boxes x1, y1, x2, y2 + score, (N, 5, 2) landmarks) for a PIL picture."""
        image = image.convert("RGB")
        boxes = proposals(image, self.artifact.preprocessing, self.infer)
        boxes = refine(image, boxes, self.rnet.preprocessing, self.rnet_runner)
        return landmarks(image, boxes, self.onet.preprocessing, self.onet_runner)

    def run(self, source: Any, output: str | Path | None = None, **_: Any) -> dict[str, Any]:
        image = load_image(source).convert("RGB")
        boxes, points = self.detect(image)
        w, h = image.size
        faces = []
        for b, p in zip(boxes, points):
            box = [float(np.clip(b[0], 0, w)), float(np.clip(b[1], 0, h)), float(np.clip(b[2], 0, w)),
                   float(np.clip(b[3], 0, h))]
            faces.append({"box": [round(v, 1) for v in box], "score": round(float(b[4]), 4),
                          "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in p]})
        result = {**self.header(), "models": [a.name for a in (self.artifact, self.rnet, self.onet)],
                  "size": [w, h], "faces": faces}
        if output is not None:
            result = _draw(result, image, source, Path(output))
        return result

    __call__ = run

    def close(self) -> None:
        super().close()
        for r in (self.rnet_runner, self.onet_runner):
            r.close()


def mtcnn_pipeline(backend: str = "auto", **options: Any) -> FaceDetectionPipeline:
    """MTCNN from the catalog's three cards."""
    from laser import hub

    return FaceDetectionPipeline(hub.load("mtcnn-pnet", progress=False), backend=backend, **options)


LANDMARKS = ("left eye", "right eye", "nose", "left mouth corner", "right mouth corner")


def _draw(result: dict[str, Any], image: Any, source: Any, directory: Path) -> dict[str, Any]:
    from PIL import ImageDraw

    directory.mkdir(parents=True, exist_ok=True)
    drawn = image.copy()
    pen = ImageDraw.Draw(drawn)
    width = max(1, round(min(image.size) / 200))
    for face in result["faces"]:
        pen.rectangle(face["box"], outline=(40, 220, 40), width=width)
        pen.text((face["box"][0] + 2, face["box"][1] + 2), f"{face['score']:.2f}", fill=(40, 220, 40))
        for x, y in face["landmarks"]:
            pen.ellipse((x - 2 * width, y - 2 * width, x + 2 * width, y + 2 * width), fill=(230, 40, 40))
    stem = output_stem(source)
    files = {"image": str(directory / f"{stem}_faces.png"), "json": str(directory / f"{stem}.json")}
    drawn.save(files["image"])
    result = {**result, "files": files}
    Path(files["json"]).write_text(json.dumps(result, indent=2) + "\n")
    return result
