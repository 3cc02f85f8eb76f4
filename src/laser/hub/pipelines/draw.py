"""Pictures of results: class palette, mask PNG, overlay, detection boxes (Pillow only)."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def palette(n: int = 256) -> np.ndarray:
    """(n, 3) uint8 colours: the Pascal VOC colour map (class 0 black, then distinct colours by bit-spreading)."""
    out = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out[i] = (r, g, b)
    return out


def mask_image(mask: np.ndarray) -> Any:
    """(H, W) class indices -> palette PNG image: pixel values are class indices, shown in VOC colours."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8))  # mode L; putpalette makes it P
    img.putpalette(palette().reshape(-1).tolist())
    return img


def overlay(image: Any, mask: np.ndarray, alpha: float = 0.5) -> Any:
    """The RGB image with non-background classes tinted by their colour (background left as is)."""
    from PIL import Image

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    colours = palette()[mask].astype(np.float32)
    fg = (mask > 0)[..., None]
    blended = np.where(fg, (1 - alpha) * rgb + alpha * colours, rgb)
    return Image.fromarray(blended.round().astype(np.uint8))  # (H, W, 3) uint8 -> RGB


def png_base64(image: Any) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_mask(data: str) -> np.ndarray:
    """A ``mask_png`` field of a segmentation answer -> (H, W) uint8 class indices."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


def draw_detections(image: Any, detections: Sequence[Mapping[str, Any]]) -> Any:
    """A copy of the image with each box outlined and captioned 'label score' in its class colour."""
    from PIL import ImageDraw

    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    colours = palette()
    width = max(1, round(min(out.size) / 200))  # line width grows with the picture
    for det in detections:
        colour = tuple(int(v) for v in colours[1 + det["index"] % 255])
        x1, y1, x2, y2 = det["box"]
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
        caption = f"{det['label']} {det['score']:.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), caption)
        ty = y1 - (bottom - top) - 2 if y1 - (bottom - top) - 2 >= 0 else y1
        draw.rectangle((x1, ty, x1 + (right - left) + 4, ty + (bottom - top) + 2), fill=colour)
        draw.text((x1 + 2, ty), caption, fill=(255, 255, 255) if sum(colour) < 400 else (0, 0, 0))
    return out
