// window.laser: the artifact in this folder, run by onnxruntime-web from ./ort/ (no request leaves this origin).
//   laser.ready                 Promise -> {backend, threads, isolated, runtime, model}
//   laser.config                Promise -> model.json (spec, preprocessing, labels)
//   laser.run(feeds)            feeds: {name: {data: TypedArray|Array, dims: number[]}} -> same shape per output
//   laser.classify(source)      <canvas>/<img>/ImageBitmap/ImageData -> {top_k, logits, ms}  (image models)
//   laser.classifyText(text)    str -> {top_k, logits, ms, tokens}                           (text models)
//   laser.segment(source)       -> {mask (class per pixel, model resolution), width, height, classes, ms}
//   laser.detect(source, opts)  -> {detections: [{label, score, box (source pixels, xyxy)}], ms}  (NMS per label)
//   laser.latency(feeds, n)     in-page p50/p90 (ms) of n session.run calls, and of laser.run around them
import { WordPiece, imageTensor } from "./preprocess.js";

const here = (path) => new URL(path, import.meta.url).href;
const TYPED = { float32: Float32Array, float16: Uint16Array, int32: Int32Array, int8: Int8Array, uint8: Uint8Array,
  int64: BigInt64Array, bool: Uint8Array, float64: Float64Array };

async function gpuAvailable() {
  try { return !!(navigator.gpu && await navigator.gpu.requestAdapter()); } catch { return false; }
}

async function build() {
  const model = await (await fetch(here("./model.json"))).json();
  const query = new URLSearchParams(location.search);
  const wanted = query.get("backend") || model.backend || "auto";
  const backend = wanted === "webgpu" || (wanted === "auto" && await gpuAvailable()) ? "webgpu" : "wasm";
  const ort = await import(here(backend === "webgpu" ? "./ort/ort.webgpu.min.mjs" : "./ort/ort.wasm.min.mjs"));
  ort.env.wasm.wasmPaths = here("./ort/");
  // Threads need SharedArrayBuffer, which browsers give only to cross-origin isolated pages (COOP + COEP).
  const threads = globalThis.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  ort.env.wasm.numThreads = Number(query.get("threads") || threads);
  ort.env.wasm.simd = true;
  ort.env.logLevel = "error";
  const session = await ort.InferenceSession.create(here("./" + model.file),
    { executionProviders: [backend], graphOptimizationLevel: "all" });
  return { ort, session, model, info: { backend, threads: ort.env.wasm.numThreads,
    isolated: !!globalThis.crossOriginIsolated, runtime: model.runtime, model: model.about } };
}

const state = build();
const spec = (m, name) => m.inputs.find((t) => t.name === name);

function tensor(ort, t, value) {
  const Typed = TYPED[t.dtype] || Float32Array;
  let data = value.data;
  if (!(data instanceof Typed)) {
    data = t.dtype === "int64" ? BigInt64Array.from(Array.from(data, (v) => BigInt(Math.round(Number(v)))))
      : Typed.from(data);
  }
  return new ort.Tensor(t.dtype, data, value.dims);
}

async function run(feeds) {
  const { ort, session, model } = await state;
  const inputs = {};
  for (const [name, value] of Object.entries(feeds)) {
    const t = spec(model, name);
    if (!t) throw new Error(`unknown input ${name}; the model takes ${model.inputs.map((i) => i.name)}`);
    inputs[name] = tensor(ort, t, value);
  }
  const out = await session.run(inputs);
  const result = {};
  for (const name of session.outputNames) {
    result[name] = { data: out[name].data, dims: Array.from(out[name].dims), type: out[name].type };
  }
  return result;
}

// run() with tensors as base64 of their bytes, {name: {b64, dtype, dims}}: how Python drives the page
// (a JSON list of a 150,000-element input costs more than the model).
const b64decode = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
function b64encode(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

async function runEncoded(feeds) {
  const plain = {};
  for (const [name, v] of Object.entries(feeds)) {
    plain[name] = { data: new (TYPED[v.dtype] || Float32Array)(b64decode(v.b64).buffer), dims: v.dims };
  }
  const out = await run(plain);
  const result = {};
  for (const [name, v] of Object.entries(out)) {
    const bytes = new Uint8Array(v.data.buffer, v.data.byteOffset, v.data.byteLength);
    result[name] = { b64: b64encode(bytes), dtype: v.type, dims: v.dims };
  }
  return result;
}

function softmaxTopK(logits, labels, k) {
  const max = Math.max(...logits);
  const e = Array.from(logits, (v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v, i) => ({ index: i, label: labels[i] ?? String(i), score: v / sum }))
    .sort((a, b) => b.score - a.score).slice(0, k);
}

function pixels(source) {
  if (source instanceof ImageData) return source;
  const w = source.naturalWidth || source.videoWidth || source.width, h = source.naturalHeight || source.videoHeight || source.height;
  if (source.getContext) return source.getContext("2d", { willReadFrequently: true }).getImageData(0, 0, w, h);
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(source, 0, 0);
  return ctx.getImageData(0, 0, w, h);
}

async function classifyFeeds(feeds, k) {
  const { model } = await state;
  const t0 = performance.now();
  const out = await run(feeds);
  const ms = performance.now() - t0;
  const first = out[model.outputs[0].name];
  const logits = Array.from(first.data, Number);
  return { top_k: softmaxTopK(logits, model.labels, k), logits, ms };
}

async function classify(source, k = 5) {
  return classifyFeeds((await imageFeeds(source)).feeds, k);
}

async function imageFeeds(source) {
  const { model } = await state;
  if (model.preprocessing.type !== "image") throw new Error(`this model's preprocessing is ${model.preprocessing.type}, not image`);
  const img = pixels(source);
  return { feeds: { [model.inputs[0].name]: imageTensor(img.data, img.width, img.height, model.preprocessing) },
    width: img.width, height: img.height, model };
}

// Segmentation: the class of every pixel at the model's resolution, and how much of the picture each covers.
async function segment(source) {
  const { feeds, model } = await imageFeeds(source);
  const t0 = performance.now();
  const out = (await run(feeds))[model.outputs[0].name];  // (1, classes, h, w) logits
  const ms = performance.now() - t0;
  const [, c, h, w] = out.dims;
  const mask = new Uint8Array(h * w), counts = new Array(c).fill(0);
  for (let i = 0; i < h * w; i++) {
    let best = 0;
    for (let k = 1; k < c; k++) if (out.data[k * h * w + i] > out.data[best * h * w + i]) best = k;
    mask[i] = best; counts[best]++;
  }
  const classes = counts.map((n, i) => ({ index: i, label: model.labels[i] ?? String(i), pixels: n, fraction: n / (h * w) }))
    .filter((r) => r.pixels > 0).sort((a, b) => b.pixels - a.pixels || a.index - b.index);
  return { mask, width: w, height: h, classes, ms };
}

const iou = (a, b) => {
  const iw = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0])), ih = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = iw * ih, union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
};

// Detection: candidates above scoreThreshold, NMS per label, boxes in the source picture's pixels.
async function detect(source, { scoreThreshold = 0.5, iouThreshold = 0.5, maxDetections = 100 } = {}) {
  const { feeds, model, width, height } = await imageFeeds(source);
  const t0 = performance.now();
  const out = await run(feeds);
  const ms = performance.now() - t0;
  const named = (n, i) => out[n] || Object.values(out)[i];
  const boxes = named("boxes", 0), scores = named("scores", 1), labels = named("labels", 2);
  const pre = model.preprocessing;
  const [sy, sx] = pre.size ? [height / pre.size[0], width / pre.size[1]] : [1, 1];
  const cand = [];
  for (let i = 0; i < scores.data.length; i++) if (scores.data[i] > scoreThreshold) cand.push(i);
  cand.sort((a, b) => scores.data[b] - scores.data[a] || a - b);
  const kept = [];
  for (const i of cand.slice(0, 1000)) {
    const box = Array.from(boxes.data.subarray(4 * i, 4 * i + 4)), label = Number(labels.data[i]);
    if (kept.some((k) => k.index === label && iou(k.raw, box) > iouThreshold)) continue;
    kept.push({ index: label, raw: box, score: scores.data[i] });
    if (kept.length >= maxDetections) break;
  }
  const clip = (v, hi) => Math.min(Math.max(v, 0), hi);
  const detections = kept.map((k) => ({ index: k.index, label: model.labels[k.index] ?? String(k.index), score: k.score,
    box: [clip(k.raw[0] * sx, width), clip(k.raw[1] * sy, height), clip(k.raw[2] * sx, width), clip(k.raw[3] * sy, height)] }));
  return { detections, width, height, ms };
}

let tokenizer = null;
async function encodeText(text) {
  const { model } = await state;
  const pre = model.preprocessing;
  if (pre.type !== "text") throw new Error(`this model's preprocessing is ${pre.type}, not text`);
  tokenizer ||= new WordPiece(pre.vocab, pre.lowercase !== false);
  const length = pre.max_length || 128;
  const enc = tokenizer.encode(text, length);
  const feeds = {};
  for (const t of model.inputs) feeds[t.name] = { data: enc[t.name], dims: [1, length] };
  return feeds;
}

async function classifyText(text, k = 5) {
  const feeds = await encodeText(text);
  return { ...(await classifyFeeds(feeds, k)), tokens: Array.from(Object.values(feeds)[0].data) };
}

function percentile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

// p50/p90 of n calls of session.run on ready-made tensors ("session") and of laser.run on plain feeds ("page").
async function latency(feeds, n = 20, warmup = 3) {
  const { ort, session, model } = await state;
  const tensors = {};
  for (const [name, v] of Object.entries(feeds)) tensors[name] = tensor(ort, spec(model, name), v);
  const times = { session: [], page: [] };
  for (let i = 0; i < warmup; i++) { await session.run(tensors); await run(feeds); }
  const timed = async (key, fn) => { const t0 = performance.now(); await fn(); times[key].push(performance.now() - t0); };
  for (let i = 0; i < n; i++) {  // interleaved, each first every other time: load falls on both alike
    const pair = [["session", () => session.run(tensors)], ["page", () => run(feeds)]];
    for (const [key, fn] of i % 2 ? pair.reverse() : pair) await timed(key, fn);
  }
  const sum = (xs) => ({ p50_ms: percentile(xs, 0.5), p90_ms: percentile(xs, 0.9), n: xs.length });
  return { session: sum(times.session), page: sum(times.page) };
}

async function exampleFeeds() {
  const { model } = await state;
  const feeds = {};
  for (const t of model.inputs) {
    const dims = t.shape.map((d) => (typeof d === "number" ? d : 1));
    const n = dims.reduce((a, b) => a * b, 1);
    const lo = t.value_range ? t.value_range[0] : 0;
    feeds[t.name] = { data: Array.from({ length: n }, (_, i) => (t.value_range ? lo : Math.sin(i))), dims };
  }
  return feeds;
}

window.laser = { ready: state.then((s) => s.info), config: state.then((s) => s.model), run, runEncoded, classify, classifyText,
  segment, detect, imageFeeds, encodeText, latency, exampleFeeds };
