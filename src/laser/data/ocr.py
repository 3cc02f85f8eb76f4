"""OCR evaluation data rendered here with PIL from Debian's fonts: text lines and multi-line documents.

Lines: random English words, numbers, dates, prices and Chinese phrases, in DejaVu (sans, serif, mono,
bold) and Noto CJK, with a small rotation, blur, Gaussian noise and JPEG artefacts — seeded, so every run
makes the same set. ``ocr-lines`` is registered as a laser dataset: inputs are the recogniser's (3, 48, 320)
tensors, labels the ground-truth text's class indices in PP-OCRv4's dictionary (-1 padded), so the
metric (character accuracy = 1 - CER, line exact match) needs nothing but the model's outputs.
Generated once per split and cached under the laser cache (``datasets/``).

Fonts: ``apt-get install -y fonts-dejavu-core fonts-dejavu-extra fonts-noto-cjk`` (``make real-models``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from laser.errors import NotFoundError

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/opentype/noto"))
LATIN_FONTS = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf",
               "DejaVuSansCondensed.ttf")
CJK_FONT = "NotoSansCJK-Regular.ttc"
FONTS_HINT = "apt-get install -y fonts-dejavu-core fonts-dejavu-extra fonts-noto-cjk"
LABEL_LENGTH = 40
SIZES = {"train": 64, "val": 64, "test": 200}
SEEDS = {"train": 11, "val": 12, "test": 13}

WORDS = ("laser", "model", "export", "runtime", "serve", "measure", "optimize", "invoice", "total", "receipt",
         "order", "number", "date", "price", "amount", "customer", "shipping", "address", "station", "street",
         "coffee", "tea", "bread", "water", "paper", "table", "window", "green", "river", "north", "Monday",
         "Friday", "London", "Berlin", "Paris", "Tokyo", "Quality", "Service", "Report", "Account", "Balance")
PHRASES = ("发票号码", "合计金额", "欢迎光临", "北京市朝阳区", "上海", "深圳", "人民币", "谢谢惠顾", "日期", "数量",
           "单价", "总计", "服务电话", "中国银行", "营业时间", "地址", "收银员", "会员卡号", "现金", "找零")


def font_path(name: str) -> Path:
    for d in FONT_DIRS:
        if (d / name).is_file():
            return d / name
    raise NotFoundError(f"font {name} is not installed; install the fonts: {FONTS_HINT}")


def random_text(rng: np.random.Generator) -> tuple[str, bool]:
    """(a line of text, whether it needs the CJK font)."""
    kind = rng.integers(0, 6)
    if kind == 0:
        return f"{rng.choice(WORDS)} {rng.integers(1990, 2031)}", False
    if kind == 1:
        return " ".join(str(rng.choice(WORDS)) for _ in range(rng.integers(1, 4))), False
    if kind == 2:
        return f"{rng.integers(1, 29):02d}/{rng.integers(1, 13):02d}/{rng.integers(2000, 2030)}", False
    if kind == 3:
        return f"{rng.choice(WORDS).upper()} {rng.integers(1, 999)}.{rng.integers(0, 100):02d}", False
    if kind == 4:
        return "".join(str(rng.choice(PHRASES)) for _ in range(rng.integers(1, 3))), True
    return f"{rng.choice(PHRASES)} {rng.integers(10, 9999)}", True


def render_line(text: str, font: str, rng: np.random.Generator | None = None, size: int = 32) -> Any:
    """The text in black on a light background, tightly cropped with a small margin; with ``rng``
    degraded: rotation up to 2 degrees, blur, noise, JPEG quality 40-90."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    face = ImageFont.truetype(str(font_path(font)), size)
    x0, y0, x1, y1 = face.getbbox(text)
    pad = size // 4
    bg = 255 if rng is None else int(rng.integers(200, 256))
    img = Image.new("L", (int(x1 - x0) + 2 * pad, int(y1 - y0) + 2 * pad), bg)
    ink = 0 if rng is None else int(rng.integers(0, 70))
    ImageDraw.Draw(img).text((pad - x0, pad - y0), text, font=face, fill=ink)
    if rng is None:
        return img.convert("RGB")
    img = img.rotate(float(rng.uniform(-2, 2)), resample=Image.Resampling.BICUBIC, expand=True, fillcolor=bg)
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.0))))
    a = np.asarray(img, np.float32) + rng.normal(0, rng.uniform(0, 8), (img.height, img.width))
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(40, 91)))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def lines(n: int, seed: int) -> list[tuple[Any, str]]:
    """``n`` degraded (picture, text) pairs."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        text, cjk = random_text(rng)
        font = CJK_FONT if cjk else str(rng.choice(LATIN_FONTS))
        out.append((render_line(text, font, rng, size=int(rng.integers(24, 40))), text))
    return out


def document(texts: Sequence[str], size: tuple[int, int] = (640, 480), seed: int = 0) -> tuple[Any, list[list[float]]]:
    """A page with one line per text, at known places: (RGB picture, [x1, y1, x2, y2] per line)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    page = Image.new("RGB", size, (250, 250, 246))
    boxes, y = [], 30
    for text in texts:
        cjk = any(ord(c) > 0x2E80 for c in text)
        line = render_line(text, CJK_FONT if cjk else "DejaVuSans.ttf", size=int(rng.integers(26, 34)))
        x = int(rng.integers(20, max(21, size[0] - line.width - 20)))
        page.paste(line, (x, y))
        boxes.append([float(x), float(y), float(x + line.width), float(y + line.height)])
        y += line.height + int(rng.integers(20, 50))
    return page, boxes


def encode(text: str, labels: Sequence[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(labels)}
    missing = [c for c in text if c not in index]
    if missing:
        raise NotFoundError(f"characters {missing} are not in the recogniser's dictionary")
    out = np.full(LABEL_LENGTH, -1, np.int64)
    codes = [index[c] for c in text][:LABEL_LENGTH]
    out[:len(codes)] = codes
    return out


def ocr_lines(split: str) -> Any:
    """The ``ocr-lines`` dataset (see the module doc), generated once and cached."""
    from laser import hub
    from laser.data import SPLITS, Dataset
    from laser.errors import ConfigError
    from laser.hub.download import cache_dir
    from laser.hub.pipelines.ocr import line_input

    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {SPLITS}")
    path = cache_dir().parent / "datasets" / f"ocr-lines-v1-{split}.npz"
    if not path.is_file():
        rec = hub.load("pp-ocrv4-rec", progress=False)
        pairs = lines(SIZES[split], SEEDS[split])
        x = np.stack([line_input(img, rec.preprocessing, width=int(rec.preprocessing["width"])) for img, _ in pairs])
        y = np.stack([encode(text, rec.labels) for _, text in pairs])
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.stem + ".part.npz")
        np.savez(part, x=x, y=y)
        part.replace(path)
    with np.load(path) as f:
        return Dataset("ocr-lines", (f["x"],), f["y"])
