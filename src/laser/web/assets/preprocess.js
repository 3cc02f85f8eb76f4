// The artifact's preprocessing (model.json "preprocessing"), in JS, matching laser.preprocess numerically:
// images are resized as Pillow resizes them (its separable 8-bit filters, fixed-point coefficients), and
// text is tokenized as the transformers BERT WordPiece tokenizer does (normalise, split, greedy pieces).

const PRECISION_BITS = 32 - 8 - 2; // Pillow's fixed-point precision for 8-bit images
const FILTERS = {
  bilinear: { support: 1.0, f: (x) => { x = Math.abs(x); return x < 1 ? 1 - x : 0; } },
  bicubic: { support: 2.0, f: (x) => {
    const a = -0.5; x = Math.abs(x);
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
  } },
};

// Per output pixel: [first input pixel, count, integer weights], as Pillow's precompute_coeffs.
function coefficients(inSize, outSize, filter) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = filter.support * filterscale;
  const out = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1.0 / filterscale;
    let xmin = Math.trunc(center - support + 0.5); if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5); if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    const k = []; let ww = 0;
    for (let x = 0; x < xmax; x++) { const w = filter.f((x + xmin - center + 0.5) * ss); k.push(w); ww += w; }
    const kk = k.map((w) => {
      const v = ww !== 0 ? w / ww : w;
      return Math.trunc(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
    });
    out.push([xmin, xmax, kk]);
  }
  return out;
}

function clip8(v) {
  if (v >= (1 << PRECISION_BITS) * 256) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / (1 << PRECISION_BITS));
}

// One separable pass over a channels-last uint8 image; axis 0 = horizontal, 1 = vertical.
function pass(src, w, h, c, outSize, axis, filter) {
  const coeffs = coefficients(axis === 0 ? w : h, outSize, filter);
  const ow = axis === 0 ? outSize : w, oh = axis === 0 ? h : outSize;
  const dst = new Uint8ClampedArray(ow * oh * c);
  const half = 1 << (PRECISION_BITS - 1);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const [first, n, kk] = coeffs[axis === 0 ? x : y];
      for (let ch = 0; ch < c; ch++) {
        let ss = half;
        for (let i = 0; i < n; i++) {
          const idx = axis === 0 ? (y * w + first + i) * c + ch : ((first + i) * w + x) * c + ch;
          ss += src[idx] * kk[i];
        }
        dst[(y * ow + x) * c + ch] = clip8(ss);
      }
    }
  }
  return dst;
}

function nearest(src, w, h, c, ow, oh) {
  const dst = new Uint8ClampedArray(ow * oh * c);
  for (let y = 0; y < oh; y++) {
    const sy = Math.min(h - 1, Math.floor((y + 0.5) * h / oh));
    for (let x = 0; x < ow; x++) {
      const sx = Math.min(w - 1, Math.floor((x + 0.5) * w / ow));
      for (let ch = 0; ch < c; ch++) dst[(y * ow + x) * c + ch] = src[(sy * w + sx) * c + ch];
    }
  }
  return dst;
}

// Pillow's Image.resize((ow, oh), filter) on a channels-last uint8 image.
export function resize(src, w, h, c, ow, oh, interpolation = "bilinear") {
  if (ow === w && oh === h) return src;
  if (interpolation === "nearest") return nearest(src, w, h, c, ow, oh);
  const filter = FILTERS[interpolation] || FILTERS.bilinear;
  let img = src, cw = w;
  if (ow !== w) { img = pass(img, w, h, c, ow, 0, filter); cw = ow; }
  if (oh !== h) img = pass(img, cw, h, c, oh, 1, filter);
  return img;
}

// RGBA pixels (ImageData.data) -> channels-last uint8 in Pillow's "L" or "RGB" mode (alpha dropped).
export function toMode(rgba, w, h, mode) {
  const n = w * h;
  if (mode === "L") {
    const out = new Uint8ClampedArray(n);
    for (let i = 0; i < n; i++) {  // Pillow's L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16
      out[i] = (rgba[4 * i] * 19595 + rgba[4 * i + 1] * 38470 + rgba[4 * i + 2] * 7471 + 0x8000) >>> 16;
    }
    return { data: out, c: 1 };
  }
  const out = new Uint8ClampedArray(n * 3);
  for (let i = 0; i < n; i++) for (let ch = 0; ch < 3; ch++) out[3 * i + ch] = rgba[4 * i + ch];
  return { data: out, c: 3 };
}

// RGBA pixels of size (w, h) -> Float32Array (1, C, H, W), as laser.preprocess.image_to_array.
export function imageTensor(rgba, w, h, pre) {
  const f = Math.fround;
  let { data, c } = toMode(rgba, w, h, pre.mode || "RGB");
  const interp = pre.interpolation || "bilinear";
  if (pre.size) {
    const [oh, ow] = pre.size;
    data = resize(data, w, h, c, ow, oh, interp); w = ow; h = oh;
  } else {
    if (pre.resize) {
      const scale = pre.resize / Math.min(w, h);
      const ow = Math.max(1, Math.round(w * scale)), oh = Math.max(1, Math.round(h * scale));
      data = resize(data, w, h, c, ow, oh, interp); w = ow; h = oh;
    }
    if (pre.crop) {
      const k = pre.crop, left = Math.floor((w - k) / 2), top = Math.floor((h - k) / 2);
      const out = new Uint8ClampedArray(k * k * c);
      for (let y = 0; y < k; y++) for (let x = 0; x < k; x++) for (let ch = 0; ch < c; ch++) {
        const sy = y + top, sx = x + left;
        out[(y * k + x) * c + ch] = sy >= 0 && sy < h && sx >= 0 && sx < w ? data[(sy * w + sx) * c + ch] : 0;
      }
      data = out; w = k; h = k;
    }
  }
  const x = new Float32Array(c * h * w);
  let sum = 0;
  for (let ch = 0; ch < c; ch++) for (let i = 0; i < h * w; i++) {
    const v = f(data[i * c + ch] / 255.0); x[ch * h * w + i] = v; sum += v;
  }
  const invert = pre.ink === "light" && sum / x.length > 0.5; // dark strokes on light paper
  const mean = pre.mean || new Array(c).fill(0), std = pre.std || new Array(c).fill(1);
  for (let ch = 0; ch < c; ch++) {
    const m = f(mean[ch]), s = f(std[ch]);
    for (let i = 0; i < h * w; i++) {
      let v = x[ch * h * w + i];
      if (invert) v = f(1.0 - v);
      x[ch * h * w + i] = f(f(v - m) / s);
    }
  }
  return { data: x, dims: [1, c, h, w] };
}

// ---- text: BERT WordPiece, as transformers' BertTokenizerFast (lowercase, strip accents, split) ----
const isPunct = (ch) => /[!-\/:-@\[-`{-~]/.test(ch) || /\p{P}/u.test(ch);
const isCjk = (cp) => (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
  (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) ||
  (cp >= 0x2B820 && cp <= 0x2CEAF) || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);

function normalize(text, lowercase) {
  let out = "";
  for (const ch of text) {  // clean text: drop NUL, U+FFFD and control characters; whitespace -> " "
    const cp = ch.codePointAt(0);
    if (ch === "\t" || ch === "\n" || ch === "\r" || /\s/u.test(ch)) { out += " "; continue; }
    if (cp === 0 || cp === 0xFFFD || /\p{C}/u.test(ch)) continue;
    out += isCjk(cp) ? ` ${ch} ` : ch;
  }
  if (lowercase) out = out.normalize("NFD").replace(/\p{Mn}/gu, "").toLowerCase();
  return out;
}

function words(text) {
  const out = []; let cur = "";
  for (const ch of text) {
    if (ch === " ") { if (cur) out.push(cur); cur = ""; }
    else if (isPunct(ch)) { if (cur) out.push(cur); out.push(ch); cur = ""; }
    else cur += ch;
  }
  if (cur) out.push(cur);
  return out;
}

export class WordPiece {
  constructor(vocab, lowercase = true) {
    this.ids = new Map(vocab.map((t, i) => [t, i]));
    this.lowercase = lowercase;
  }

  pieces(word) {
    const chars = Array.from(word);
    if (chars.length > 100) return ["[UNK]"];
    const out = [];
    for (let start = 0; start < chars.length;) {
      let end = chars.length, found = null;
      while (start < end) {
        const piece = (start > 0 ? "##" : "") + chars.slice(start, end).join("");
        if (this.ids.has(piece)) { found = piece; break; }
        end--;
      }
      if (found === null) return ["[UNK]"];
      out.push(found); start = end;
    }
    return out;
  }

  // {input_ids, attention_mask, token_type_ids} as Int32Array(maxLength): [CLS] pieces [SEP], padded.
  encode(text, maxLength) {
    const tokens = words(normalize(text, this.lowercase)).flatMap((w) => this.pieces(w)).slice(0, maxLength - 2);
    const all = ["[CLS]", ...tokens, "[SEP]"];
    const ids = new Int32Array(maxLength).fill(this.ids.get("[PAD]") ?? 0);
    const mask = new Int32Array(maxLength);
    all.forEach((t, i) => { ids[i] = this.ids.get(t) ?? this.ids.get("[UNK]"); mask[i] = 1; });
    return { input_ids: ids, attention_mask: mask, token_type_ids: new Int32Array(maxLength) };
  }
}
