"""Image pipelines: classification (top-k labels), segmentation (mask + overlay), detection (boxes + NMS)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from laser.errors import BackendError, ConfigError
from laser.hub.pipelines import Pipeline, output_stem, write_json
from laser.hub.pipelines.draw import draw_detections, mask_image, overlay, png_base64
from laser.preprocess import image_to_array, load_image
from laser.preprocess import top_k as topk_labels


class ImagePipeline(Pipeline):
    def __init__(self, artifact: Any, backend: str = "auto", **options: Any):
        super().__init__(artifact, backend, **options)
        pre = artifact.preprocessing
        if pre.get("type") != "image":
            raise ConfigError(f"{artifact.name!r} records no image preprocessing (got {dict(pre) or None}); "
                              "an image pipeline needs {'type': 'image', ...} in its manifest")
        self.input_name = artifact.spec.input_names[0]

    def prepare(self, source: Any) -> tuple[Any, np.ndarray]:
        """(the RGB picture as given, the (1, C, H, W) model input)."""
        image = load_image(source)
        return image.convert("RGB"), image_to_array(image, self.artifact.preprocessing)

    def label(self, index: int) -> str:
        labels = self.artifact.labels
        return labels[index] if 0 <= index < len(labels) else str(index)

    def preprocess(self, source: Any) -> tuple[tuple[Any, Any], dict[str, np.ndarray]]:
        """((the source, the RGB picture), the model input)."""
        image, x = self.prepare(source)
        return (source, image), {self.input_name: x}


class ClassificationPipeline(ImagePipeline):
    task = "classification"

    def postprocess(self, context: tuple[Any, Any], outputs: Mapping[str, np.ndarray], top_k: int = 5,
                    output: str | Path | None = None) -> dict[str, Any]:
        source, _ = context
        logits = next(iter(outputs.values()))
        best = topk_labels(logits, self.artifact.labels, top_k)[0]
        result = {**self.header(), "label": best[0]["label"], "score": best[0]["score"], "top_k": best}
        return _maybe_write(result, output, source, {})


def _scale(pre: Mapping[str, Any], width: int, height: int) -> tuple[float, float]:
    """Model-input pixels -> original pixels, (sx, sy), for the resizes image_to_array does."""
    if "crop" in pre:
        raise ConfigError("segmentation and detection pipelines need preprocessing without 'crop' (results are "
                          "mapped back onto the whole picture); use 'size': [H, W] or 'resize': N")
    if "size" in pre:
        h, w = pre["size"]
        return width / int(w), height / int(h)
    if "resize" in pre:
        s = int(pre["resize"]) / min(width, height)
        return width / max(1, round(width * s)), height / max(1, round(height * s))
    return 1.0, 1.0


class SegmentationPipeline(ImagePipeline):
    task = "segmentation"

    def mask(self, source: Any) -> tuple[Any, np.ndarray]:
        """(the picture, (H, W) uint8 class index per pixel at the picture's own size)."""
        (_, image), feeds = self.preprocess(source)
        return image, self.mask_of(image, self.infer(feeds))

    def mask_of(self, image: Any, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The class-index mask at ``image``'s size from the model's outputs."""
        from PIL import Image

        logits = next(iter(outputs.values()))  # (1, classes, h, w)
        if logits.ndim != 4:
            raise BackendError(f"{self.artifact.name!r} returned shape {list(logits.shape)}; a segmentation "
                               "model must return (batch, classes, height, width) logits")
        small = logits[0].argmax(0).astype(np.uint8)
        _scale(self.artifact.preprocessing, *image.size)  # refuses crops before a wrong mapping
        return np.asarray(Image.fromarray(small).resize(image.size, Image.Resampling.NEAREST))

    def postprocess(self, context: tuple[Any, Any], outputs: Mapping[str, np.ndarray],
                    output: str | Path | None = None, alpha: float = 0.5) -> dict[str, Any]:
        source, image = context
        mask = self.mask_of(image, outputs)
        counts = np.bincount(mask.reshape(-1), minlength=len(self.artifact.labels))
        total = int(mask.size)
        classes = [{"index": int(i), "label": self.label(int(i)), "pixels": int(counts[i]),
                    "fraction": float(counts[i]) / total} for i in np.argsort(-counts) if counts[i] > 0]
        result = {**self.header(), "size": list(image.size), "classes": classes}
        if output is None:
            result["mask_png"] = png_base64(mask_image(mask))  # base64 PNG; pixel value = class index
            return result
        stem = output_stem(source)
        return _maybe_write(result, output, source, {"mask": (f"{stem}_mask.png", mask_image(mask)),
                                                     "overlay": (f"{stem}_overlay.png", overlay(image, mask, alpha))})


class DetectionPipeline(ImagePipeline):
    task = "detection"

    def postprocess(self, context: tuple[Any, Any], outputs: Mapping[str, np.ndarray],
                    output: str | Path | None = None, score_threshold: float = 0.5, iou_threshold: float = 0.5,
                    max_detections: int = 100) -> dict[str, Any]:
        source, image = context
        detections = self.detect(image, outputs, score_threshold, iou_threshold, max_detections)
        result = {**self.header(), "size": list(image.size), "score_threshold": score_threshold,
                  "iou_threshold": iou_threshold, "detections": detections}
        stem = output_stem(source)
        return _maybe_write(result, output, source,
                            {"image": (f"{stem}_detections.png", draw_detections(image, detections))})

    def detect(self, image: Any, out: Mapping[str, np.ndarray], score_threshold: float, iou_threshold: float,
               max_detections: int) -> list[dict[str, Any]]:
        import torch

        from laser.hub.nms import batched_nms

        if not 0 <= score_threshold <= 1 or max_detections < 1:
            raise ConfigError(f"score_threshold must be in [0, 1] and max_detections >= 1, got "
                              f"{score_threshold} and {max_detections}")
        boxes, scores, labels = (out[n] if n in out else list(out.values())[i]
                                 for i, n in enumerate(("boxes", "scores", "labels")))
        if boxes.ndim != 3 or boxes.shape[-1] != 4:
            raise BackendError(f"{self.artifact.name!r} returned boxes of shape {list(boxes.shape)}; a detection "
                               "model must return boxes (batch, N, 4), scores (batch, N), labels (batch, N)")
        b, s, lab = torch.from_numpy(boxes[0]), torch.from_numpy(scores[0]), torch.from_numpy(labels[0]).long()
        keep = torch.where(s > score_threshold)[0]
        keep = keep[torch.argsort(s[keep], descending=True, stable=True)[:1000]]  # bounded NMS input
        kept = keep[batched_nms(b[keep], s[keep], lab[keep], iou_threshold)][:max_detections]
        sx, sy = _scale(self.artifact.preprocessing, *image.size)
        w, h = image.size
        result = []
        for i in kept.tolist():
            x1, y1, x2, y2 = b[i].tolist()
            box = [min(max(x1 * sx, 0.0), w), min(max(y1 * sy, 0.0), h), min(max(x2 * sx, 0.0), w),
                   min(max(y2 * sy, 0.0), h)]
            result.append({"index": int(lab[i]), "label": self.label(int(lab[i])), "score": float(s[i]),
                           "box": [round(v, 2) for v in box]})
        return result


def _maybe_write(result: dict[str, Any], output: str | Path | None, source: Any,
                 pictures: Mapping[str, tuple[str, Any]]) -> dict[str, Any]:
    """With ``output``, save the pictures and the JSON answer there and list them under "files"."""
    if output is None:
        return result
    directory = Path(output)
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for key, (name, picture) in pictures.items():
        picture.save(directory / name)
        files[key] = str(directory / name)
    stem = output_stem(source)
    files["json"] = str(directory / f"{stem}.json")
    result = {**result, "files": files}
    write_json(result, directory, stem)
    return result
