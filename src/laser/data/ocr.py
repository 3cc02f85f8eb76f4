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
               "DejaVuSansCondensed.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif-Italic.ttf",
               "DejaVuSerifCondensed-Bold.ttf", "DejaVuSansMono-Bold.ttf", "NotoSansCJK-Regular.ttc")
CJK_FONT = "NotoSansCJK-Regular.ttc"
CJK_FONTS = (CJK_FONT, "NotoSansCJK-Bold.ttc", "NotoSerifCJK-Regular.ttc", "NotoSerifCJK-Bold.ttc")
FONTS_HINT = "apt-get install -y fonts-dejavu-core fonts-dejavu-extra fonts-noto-cjk"
LABEL_LENGTH = 40
VERSION = "v2"  # of the generator: a change of the rendering makes a new cache file
SIZES = {"train": 64, "val": 64, "test": 200}
SEEDS = {"train": 11, "val": 12, "test": 13}
DOC_SIZE = (640, 480)  # pages of ocr-docs (the detector card's example input is this page resized: 992 x 736)
DOC_SIZES = {"train": 12, "val": 12, "test": 24}
DOC_LINES = 12  # at most this many lines per page (truth boxes padded to it with -1)

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


def _word(rng: np.random.Generator) -> str:
    w = str(rng.choice(WORDS))
    return (w.upper(), w.capitalize(), w)[int(rng.integers(0, 3))]


def random_text(rng: np.random.Generator) -> tuple[str, bool]:
    """(a line of text, whether it needs the CJK font): words, numbers, dates, prices, times, codes and
    Chinese phrases, alone or mixed, as on receipts and invoices."""
    kind = rng.integers(0, 10)
    if kind == 0:
        return f"{_word(rng)} {rng.integers(1990, 2031)}", False
    if kind == 1:
        return " ".join(_word(rng) for _ in range(rng.integers(1, 5))), False
    if kind == 2:
        return f"{rng.integers(1, 29):02d}/{rng.integers(1, 13):02d}/{rng.integers(2000, 2030)}", False
    if kind == 3:
        return f"{_word(rng)} {rng.integers(1, 9999)}.{rng.integers(0, 100):02d}", False
    if kind == 4:
        return "".join(str(rng.choice(PHRASES)) for _ in range(rng.integers(1, 4))), True
    if kind == 5:
        return f"{rng.choice(PHRASES)} {rng.integers(10, 9999)}", True
    if kind == 6:
        return f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d} {_word(rng)} No.{rng.integers(100, 99999)}", False
    if kind == 7:
        return f"{rng.choice(PHRASES)}: {rng.integers(1, 999)}.{rng.integers(0, 100):02d}", True
    if kind == 8:
        return f"Tel {rng.integers(100, 999)}-{rng.integers(1000, 9999)}-{rng.integers(1000, 9999)}", False
    return f"{rng.choice(PHRASES)} {_word(rng)}", True


def render_line(text: str, font: str, rng: np.random.Generator | None = None, size: int = 32) -> Any:
    """The text in black on a light background, tightly cropped with a small margin; with ``rng``
    degraded (see ``degrade``) and on a tinted, uneven background with a grey ink."""
    from PIL import Image, ImageDraw, ImageFont

    face = ImageFont.truetype(str(font_path(font)), size)
    x0, y0, x1, y1 = face.getbbox(text)
    pad = size // 4
    bg = 255 if rng is None else int(rng.integers(150, 256))
    img = Image.new("L", (int(x1 - x0) + 2 * pad, int(y1 - y0) + 2 * pad), bg)
    ink = 0 if rng is None else int(rng.integers(0, min(110, bg - 60)))
    ImageDraw.Draw(img).text((pad - x0, pad - y0), text, font=face, fill=ink)
    if rng is None:
        return img.convert("RGB")
    return degrade(img, rng, bg)


def degrade(img: Any, rng: np.random.Generator, bg: int = 255, rotate: bool = True) -> Any:
    """A grey picture as a photo or scan of it: rotation up to 3 degrees, an uneven illumination gradient,
    resolution loss (down- and up-sampling to 45-100 %), Gaussian blur up to 1.5 px, Gaussian noise up to
    14 grey levels, JPEG at quality 25-90; returned as RGB."""
    from PIL import Image, ImageFilter

    if rotate:
        img = img.rotate(float(rng.uniform(-3, 3)), resample=Image.Resampling.BICUBIC, expand=True, fillcolor=bg)
    w, h = img.size
    a = np.asarray(img, np.float32)
    ramp = np.linspace(0, 1, w, dtype=np.float32)[None, :] * rng.uniform(-40, 40) + \
        np.linspace(0, 1, h, dtype=np.float32)[:, None] * rng.uniform(-25, 25)
    img = Image.fromarray(np.clip(a + ramp, 0, 255).astype(np.uint8))
    f = float(rng.uniform(0.45, 1.0))
    if f < 0.95:
        img = img.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BILINEAR).resize(
            (w, h), Image.Resampling.BILINEAR)
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.5))))
    noisy = np.asarray(img, np.float64) + rng.normal(0, rng.uniform(0, 14), (h, w))
    img = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(25, 91)))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _font(rng: np.random.Generator, cjk: bool) -> str:
    return str(rng.choice(CJK_FONTS if cjk else LATIN_FONTS))


def lines(n: int, seed: int) -> list[tuple[Any, str]]:
    """``n`` degraded (picture, text) pairs, glyphs 18-40 px high."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        text, cjk = random_text(rng)
        out.append((render_line(text, _font(rng, cjk), rng, size=int(rng.integers(18, 41))), text))
    return out


def document(texts: Sequence[str], size: tuple[int, int] = DOC_SIZE, seed: int = 0,
             rng: np.random.Generator | None = None) -> tuple[Any, list[list[float]]]:
    """A page with one line per text, at known places: (RGB picture, [x1, y1, x2, y2] of each line's ink).
    With ``rng``: random fonts, sizes (14-36 px) and ink, lines 8-40 px apart, the page degraded as a photo (``degrade``, no rotation, so
    the boxes stay exact)."""
    from PIL import Image, ImageDraw, ImageFont

    place = rng if rng is not None else np.random.default_rng(seed)
    bg = 250 if rng is None else int(rng.integers(190, 256))
    page = Image.new("L", size, bg)
    pen = ImageDraw.Draw(page)
    boxes, y = [], int(place.integers(15, 40))
    for text in texts:
        cjk = any(ord(c) > 0x2E80 for c in text)
        font = (CJK_FONT if cjk else "DejaVuSans.ttf") if rng is None else _font(rng, cjk)
        face = ImageFont.truetype(str(font_path(font)), int(place.integers(14, 36) if rng is not None else
                                                             place.integers(26, 34)))
        x0, y0, x1, y1 = (int(v) for v in face.getbbox(text))
        x = int(place.integers(20, max(21, size[0] - (x1 - x0) - 20)))
        if y + (y1 - y0) > size[1] - 10:
            break
        ink = 20 if rng is None else int(rng.integers(0, min(110, bg - 70)))
        pen.text((x - x0, y - y0), text, font=face, fill=ink)
        boxes.append([float(x), float(y), float(x + x1 - x0), float(y + y1 - y0)])
        y += int(y1 - y0) + int(place.integers(8, 40) if rng is not None else place.integers(16, 46))
    return (page.convert("RGB") if rng is None else degrade(page, rng, bg, rotate=False)), boxes


def documents(n: int, seed: int) -> list[tuple[Any, list[list[float]]]]:
    """``n`` degraded pages of 3-9 random lines (``document``)."""
    rng = np.random.default_rng(seed)
    return [document([random_text(rng)[0] for _ in range(rng.integers(3, 10))], rng=rng) for _ in range(n)]


def encode(text: str, labels: Sequence[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(labels)}
    missing = [c for c in text if c not in index]
    if missing:
        raise NotFoundError(f"characters {missing} are not in the recogniser's dictionary")
    out = np.full(LABEL_LENGTH, -1, np.int64)
    codes = [index[c] for c in text][:LABEL_LENGTH]
    out[:len(codes)] = codes
    return out


def _cached(name: str, split: str, make: Any) -> dict[str, np.ndarray]:
    """The arrays of ``make()`` for one split, generated once into the laser cache (``datasets/``)."""
    from laser.data import SPLITS
    from laser.errors import ConfigError
    from laser.hub.download import cache_dir

    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {SPLITS}")
    path = cache_dir().parent / "datasets" / f"{name}-{VERSION}-{split}.npz"
    if not path.is_file():
        arrays = make()
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.stem + ".part.npz")
        np.savez(part, **arrays)
        part.replace(path)
    with np.load(path) as f:  # plain arrays only (allow_pickle stays off)
        return {k: f[k] for k in f.files}


def ocr_lines(split: str) -> Any:
    """The ``ocr-lines`` dataset (see the module doc), generated once and cached."""
    from laser import hub
    from laser.data import Dataset
    from laser.hub.pipelines.ocr import line_input

    def make() -> dict[str, np.ndarray]:
        rec = hub.load("pp-ocrv4-rec", progress=False)
        pairs = lines(SIZES[split], SEEDS[split])
        x = np.stack([line_input(img, rec.preprocessing, width=int(rec.preprocessing["width"])) for img, _ in pairs])
        return {"x": x, "y": np.stack([encode(text, rec.labels) for _, text in pairs])}

    f = _cached("ocr-lines", split, make)
    return Dataset("ocr-lines", (f["x"],), f["y"])


def page_arrays(pages: Sequence[tuple[Any, list[list[float]]]]) -> dict[str, np.ndarray]:
    """(picture, line boxes) pages as arrays: pixels (N, H, W, 3) uint8, boxes (N, DOC_LINES, 4), -1 padded."""
    boxes = np.full((len(pages), DOC_LINES, 4), -1.0, np.float32)
    for i, (_, b) in enumerate(pages):
        boxes[i, :min(len(b), DOC_LINES)] = np.asarray(b, np.float32).reshape(-1, 4)[:DOC_LINES]
    return {"pages": np.stack([np.asarray(p.convert("RGB"), np.uint8) for p, _ in pages]), "boxes": boxes}


def det_dataset(name: str, arrays: dict[str, np.ndarray], pre: dict[str, Any]) -> Any:
    """``page_arrays`` as the detector's dataset: inputs resized and normalised as ``pre`` says, boxes
    scaled from page pixels to input pixels."""
    from PIL import Image

    from laser.data import Dataset
    from laser.hub.pipelines.ocr import det_input

    inputs = [det_input(Image.fromarray(p), pre) for p in arrays["pages"]]
    scale = np.array([1 / inputs[0][1][0], 1 / inputs[0][1][1]] * 2, np.float32)  # page px -> input px
    boxes = np.where(arrays["boxes"] >= 0, arrays["boxes"] * scale, -1.0).astype(np.float32)
    return Dataset(name, (np.stack([x for x, _ in inputs]),), boxes)


def ocr_docs(split: str) -> Any:
    """The ``ocr-docs`` dataset: degraded 640 x 480 pages of 3-9 lines (``documents``) as the detector's
    (3, 736, 992) inputs; labels (pages, DOC_LINES, 4) = each line's ink box [x1, y1, x2, y2] in input
    pixels, rows of -1 after the last line. The pages are cached as pixels and normalised on load."""
    from laser import hub

    arrays = _cached("ocr-docs", split, lambda: page_arrays(documents(DOC_SIZES[split], SEEDS[split] + 100)))
    return det_dataset("ocr-docs", arrays, dict(hub.card("pp-ocrv4-det").preprocessing))
