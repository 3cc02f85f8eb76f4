"""OCR pipelines on PP-OCRv4: text detection, line direction, line recognition, and the whole reader.

``laser.pipeline("ocr-recognition", model="pp-ocrv4-rec").run("line.png")`` -> {"text", "score"};
``ocr_pipeline().run("receipt.png", output=DIR)`` -> text lines with boxes and scores (det -> crop/rotate
-> cls -> rec -> CTC decode), and with ``output`` a drawn picture. Pre/post-processing follow PaddleOCR
(see the cards' preprocessing); only the models' own computation runs in the runtime.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from laser.artifact import Artifact
from laser.errors import BackendError
from laser.hub.pipelines import Pipeline, output_stem
from laser.hub.pipelines.ocr_boxes import crop_quad, db_boxes
from laser.preprocess import load_image

OCR_MODELS = ("pp-ocrv4-det", "pp-ocrv4-cls", "pp-ocrv4-rec")
TEXT_SCORE = 0.5  # lines recognised with a lower mean character probability are dropped (RapidOCR's default)


def normalise(image: Any, pre: Mapping[str, Any]) -> np.ndarray:
    """PIL RGB picture -> (3, H, W) float32: channel order, x * scale, then (x - mean) / std."""
    x = np.asarray(image.convert("RGB"), dtype=np.float32)
    if pre.get("channel_order", "RGB") == "BGR":
        x = x[..., ::-1]
    scale = np.float32(pre.get("scale", 1 / 255))
    y = (x * scale - np.asarray(pre.get("mean", 0.0), np.float32)) / np.asarray(pre.get("std", 1.0), np.float32)
    return np.ascontiguousarray(y.transpose(2, 0, 1), dtype=np.float32)


def line_input(image: Any, pre: Mapping[str, Any], width: int | None = None) -> np.ndarray:
    """A text-line picture as the (3, height, W) model input: resized to the model's height keeping its
    aspect ratio, padded right with zeros to W (``width``; default max(card width, the line's own))."""
    from PIL import Image

    height, card_width = int(pre["height"]), int(pre["width"])
    w, h = image.size
    own = math.ceil(height * w / max(h, 1))
    if width is None:
        width = card_width if pre.get("fixed_width") else max(card_width, own)
    resized_w = max(1, min(width, own))
    x = normalise(image.resize((resized_w, height), Image.Resampling.BILINEAR), pre)
    out = np.zeros((3, height, width), np.float32)
    out[:, :, :resized_w] = x
    return out


def det_input(image: Any, pre: Mapping[str, Any]) -> tuple[np.ndarray, tuple[float, float]]:
    """A page as the detector's (3, H, W) input and (picture px per input px along x, along y): the shorter
    side resized to at least ``limit_side_len`` (the longer at most 2000 px), both sides multiples of 32."""
    from PIL import Image

    image = image.convert("RGB")
    w, h = image.size
    side, multiple = int(pre.get("limit_side_len", 736)), int(pre.get("multiple", 32))
    ratio = side / min(w, h) if min(w, h) < side else 1.0
    ratio = min(ratio, 2000 / max(w * ratio, h * ratio) * ratio)  # at most 2000 px on the long side
    rw, rh = (max(multiple, round(v * ratio / multiple) * multiple) for v in (w, h))
    return normalise(image.resize((rw, rh), Image.Resampling.BILINEAR), pre), (w / rw, h / rh)


def ctc_decode(probs: np.ndarray, labels: Sequence[str]) -> tuple[str, float]:
    """(text, mean probability of its characters) from (T, C) per-step class probabilities; class 0 = blank."""
    best, conf = probs.argmax(-1), probs.max(-1)
    keep = best != 0
    keep[1:] &= best[1:] != best[:-1]  # merge repeats
    chars = [labels[i] if i < len(labels) else "" for i in best[keep]]
    return "".join(chars).strip(" "), float(conf[keep].mean()) if keep.any() else 0.0


def ctc_indices(probs: np.ndarray) -> list[np.ndarray]:
    """Decoded class indices per sample from (B, T, C) probabilities (blank 0 dropped, repeats merged)."""
    best = probs.argmax(-1)
    out = []
    for row in best:
        keep = row != 0
        keep[1:] &= row[1:] != row[:-1]
        out.append(row[keep])
    return out


def _check(outputs: Mapping[str, np.ndarray], ndim: int, what: str, name: str) -> np.ndarray:
    y = next(iter(outputs.values()))
    if y.ndim != ndim:
        raise BackendError(f"{name!r} returned shape {list(y.shape)}; {what}")
    return y


class RecognitionPipeline(Pipeline):
    task = "ocr-recognition"

    def preprocess(self, source: Any) -> tuple[Any, dict[str, np.ndarray]]:
        return source, {self.artifact.spec.input_names[0]: line_input(load_image(source), self.artifact.preprocessing)[None]}

    def postprocess(self, context: Any, outputs: Mapping[str, np.ndarray], **_: Any) -> dict[str, Any]:
        probs = _check(outputs, 3, "a CTC recogniser returns (batch, steps, classes)", self.artifact.name)
        text, score = ctc_decode(probs[0], self.artifact.labels)
        return {**self.header(), "text": text, "score": score}


class DirectionPipeline(Pipeline):
    task = "ocr-direction"

    def preprocess(self, source: Any) -> tuple[Any, dict[str, np.ndarray]]:
        return source, {self.artifact.spec.input_names[0]: line_input(load_image(source), self.artifact.preprocessing)[None]}

    def postprocess(self, context: Any, outputs: Mapping[str, np.ndarray], **_: Any) -> dict[str, Any]:
        p = _check(outputs, 2, "a direction classifier returns (batch, 2) probabilities", self.artifact.name)[0]
        i = int(p.argmax())
        labels = self.artifact.labels or ("0", "180")
        return {**self.header(), "angle": int(labels[i]), "score": float(p[i])}


class TextDetectionPipeline(Pipeline):
    task = "ocr-detection"

    def preprocess(self, source: Any) -> tuple[Any, dict[str, np.ndarray]]:
        image = load_image(source).convert("RGB")
        x, scale = det_input(image, self.artifact.preprocessing)
        return (source, image, scale), {self.artifact.spec.input_names[0]: x[None]}

    def postprocess(self, context: Any, outputs: Mapping[str, np.ndarray], **_: Any) -> dict[str, Any]:
        _, image, scale = context
        prob = _check(outputs, 4, "a DB text detector returns (batch, 1, H, W)", self.artifact.name)[0, 0]
        boxes = db_boxes(prob, dict(self.artifact.preprocessing), scale, image.size)
        return {**self.header(), "size": list(image.size),
                "boxes": [{"box": b.round(1).tolist(), "score": round(s, 4)} for b, s in boxes]}


class OCRPipeline:
    """The reader: detector -> crop and straighten each line -> direction -> recogniser -> CTC decode."""

    task = "ocr"

    def __init__(self, det: Artifact, cls: Artifact | None, rec: Artifact, backend: str = "auto", **options: Any):
        # The detector's sides must be multiples of 32: the spec's small example inputs cannot time it, so
        # "auto" means onnxruntime (the runtime these ONNX files were converted for) for this stage.
        self.det = TextDetectionPipeline(det, "onnxruntime" if backend == "auto" else backend, **options)
        self.cls = DirectionPipeline(cls, backend, **options) if cls is not None else None
        self.rec = RecognitionPipeline(rec, backend, **options)
        self.artifact = det

    def run(self, source: Any, output: str | Path | None = None, text_score: float = TEXT_SCORE,
            **_: Any) -> dict[str, Any]:
        found = self.det.run(source)
        image = load_image(source).convert("RGB")
        lines = []
        for entry in found["boxes"]:
            box = np.asarray(entry["box"], np.float64)
            crop = crop_quad(image, box)
            angle = 0
            if self.cls is not None:
                turn = self.cls.run(crop)
                if turn["angle"] == 180 and turn["score"] >= float(self.cls.artifact.preprocessing.get("threshold", 0.9)):
                    crop, angle = crop.rotate(180), 180
            read = self.rec.run(crop)
            if read["score"] >= text_score and read["text"].strip():
                lines.append({"text": read["text"], "score": round(read["score"], 4), "box": entry["box"],
                              "box_score": entry["score"], "angle": angle})
        result = {"task": "ocr", "models": [p.artifact.name for p in self.stages], "backend": self.det.backend,
                  "size": found["size"], "lines": lines}
        if output is not None:
            result = _draw(result, image, source, Path(output))
        return result

    __call__ = run

    @property
    def stages(self) -> list[Pipeline]:
        return [p for p in (self.det, self.cls, self.rec) if p is not None]

    def close(self) -> None:
        for p in self.stages:
            p.close()


def ocr_pipeline(backend: str = "auto", use_cls: bool = True, **options: Any) -> OCRPipeline:
    """The PP-OCRv4 reader from the catalog's three cards."""
    from laser import hub

    det, cls, rec = (hub.load(n) for n in OCR_MODELS)
    return OCRPipeline(det, cls if use_cls else None, rec, backend=backend, **options)


def _draw(result: dict[str, Any], image: Any, source: Any, directory: Path) -> dict[str, Any]:
    import json

    from PIL import ImageDraw

    directory.mkdir(parents=True, exist_ok=True)
    drawn = image.copy()
    pen = ImageDraw.Draw(drawn)
    for line in result["lines"]:
        pen.polygon([tuple(p) for p in line["box"]], outline=(230, 40, 40), width=2)
    stem = output_stem(source)
    files = {"image": str(directory / f"{stem}_ocr.png"), "json": str(directory / f"{stem}.json")}
    drawn.save(files["image"])
    result = {**result, "files": files}
    Path(files["json"]).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return result
