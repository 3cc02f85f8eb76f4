"""Pre- and post-processing described by data in the manifest, shared by the CLI, pipelines and server.

An image preprocessing dict (``Artifact.preprocessing``)::

    {"type": "image", "mode": "RGB", "resize": 256, "crop": 224, "mean": [...], "std": [...]}
    {"type": "image", "mode": "L", "size": [8, 8], "mean": [0.5], "std": [0.5], "ink": "light"}

Pixels are scaled to [0, 1], resized (``resize``: shorter side, then ``crop``: centre crop; or ``size``:
exact [H, W]; ``interpolation``: "bilinear" (default), "bicubic" or "nearest"), then normalised per channel: (x - mean) / std. ``ink: "light"`` means the model was
trained on light strokes on a dark background (the digits data): images with a light background are
inverted first.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from laser.errors import ConfigError, InputError

MAX_IMAGE_PIXELS = 50_000_000  # refuse decompression bombs before decoding


def load_image(source: str | os.PathLike[str] | bytes | Any) -> Any:
    """A PIL image from a path, raw bytes, or a PIL image; unreadable input gets a clear InputError."""
    from PIL import Image, UnidentifiedImageError

    if hasattr(source, "convert") and hasattr(source, "size"):
        return source
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            img = Image.open(io.BytesIO(bytes(source)))
            what = f"{len(source)} bytes"
        else:
            path = Path(source)
            if not path.is_file():
                raise InputError(f"image file {path} does not exist")
            img = Image.open(path)
            what = str(path)
        img.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as exc:
        raise InputError(f"cannot read an image from {what if 'what' in locals() else 'the input'}: "
                         f"{type(exc).__name__}: {str(exc)[:160]}; give a PNG or JPEG file") from exc
    return img


def image_to_array(image: Any, pre: Mapping[str, Any]) -> np.ndarray:
    """(1, C, H, W) float32, preprocessed as ``pre`` says."""
    from PIL import Image

    if pre.get("type") != "image":
        raise ConfigError(f"this model's preprocessing is {pre.get('type')!r}, not 'image'; "
                          "pass a .npy/.npz tensor instead")
    img = load_image(image).convert(pre.get("mode", "RGB"))
    modes = Image.Resampling
    resample = {"bilinear": modes.BILINEAR, "bicubic": modes.BICUBIC, "nearest": modes.NEAREST}.get(
        pre.get("interpolation", "bilinear"), modes.BILINEAR)  # as the model's training transforms resized
    if "size" in pre:
        h, w = pre["size"]
        img = img.resize((int(w), int(h)), resample)
    else:
        if "resize" in pre:
            short = int(pre["resize"])
            scale = short / min(img.size)
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), resample)
        if "crop" in pre:
            c = int(pre["crop"])
            left, top = (img.width - c) // 2, (img.height - c) // 2
            img = img.crop((left, top, left + c, top + c))
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)  # (H, W) -> (1, H, W); (H, W, C) -> (C, H, W)
    if pre.get("ink") == "light" and x.mean() > 0.5:  # dark strokes on light paper: invert
        x = 1.0 - x
    mean = np.asarray(pre.get("mean", [0.0] * x.shape[0]), np.float32)[:, None, None]
    std = np.asarray(pre.get("std", [1.0] * x.shape[0]), np.float32)[:, None, None]
    return np.ascontiguousarray(((x - mean) / std)[None], dtype=np.float32)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def top_k(logits: np.ndarray, labels: Sequence[str], k: int = 5) -> list[list[dict[str, Any]]]:
    """Per sample, the k best classes as ``{"index", "label", "score"}`` (score = softmax probability)."""
    if k < 1:
        raise ConfigError(f"top-k must be >= 1, got {k}")
    probs = softmax(np.asarray(logits, dtype=np.float64).reshape(len(logits), -1))
    out = []
    for row in probs:
        idx = np.argsort(-row)[: min(k, row.size)]
        out.append([{"index": int(i), "label": labels[i] if i < len(labels) else str(int(i)),
                     "score": float(row[i])} for i in idx])
    return out


def read_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The arrays of a .npz file (by name) or a .npy file (as ``{"": array}``), never unpickled; a file
    numpy cannot read (not a zip, truncated, object arrays) gets one clear InputError."""
    import zipfile

    file = Path(path)
    try:
        if file.suffix.lower() == ".npy":
            return {"": np.load(file, allow_pickle=False)}
        with np.load(file, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise InputError(f"{file} holds one array, not a .npz archive; name it .npy, or save it with "
                                 "np.savez(path, input=array)")
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        if isinstance(exc, OSError) and not file.is_file():
            raise InputError(f"{file} does not exist") from None
        what = "a .npy array" if file.suffix.lower() == ".npy" else "a .npz archive"
        why = str(exc).splitlines()[0][:120] if str(exc) else "truncated"
        if "pickled" in why:  # numpy's answer to bytes that are neither a zip archive nor a .npy header
            why = "neither a zip archive nor a .npy header; laser never unpickles"
        raise InputError(f"{file} is not {what} numpy can read ({why}); write it with "
                         "np.savez(path, input=array) (or np.save for .npy)") from None
