// The page around window.laser: what the model is, its natural input, its answer, and in-page latency.
import "./laser.js";

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...kids) => {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...kids);
  return node;
};
// An event handler whose failure is shown on the page (not lost in an unhandled promise rejection).
const guard = (fn) => async (...args) => {
  try { await fn(...args); } catch (err) { $("status").textContent = `error: ${err.message || err}`; $("status").className = "card error"; }
};
const kib = (n) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(2)} MiB` : `${(n / 1024).toFixed(1)} KiB`);

function showTopK(result, extra = "") {
  const out = $("output");
  out.hidden = false;
  out.replaceChildren(el("div", { className: "muted", textContent: `answer in ${result.ms.toFixed(2)} ms (one run)${extra}` }));
  const table = el("table");
  for (const r of result.top_k) {
    const bar = el("div", { className: "bar" }); bar.style.width = `${Math.max(2, 200 * r.score)}px`;
    table.append(el("tr", {}, el("td", { textContent: r.label }), el("td", {}, bar),
      el("td", { textContent: `${(100 * r.score).toFixed(1)} %` })));
  }
  out.append(table, el("div", { id: "latency", className: "muted", textContent: "measuring p50…" }));
}

async function measure(feeds) {
  const lat = await window.laser.latency(feeds, 30);
  $("latency").textContent = `in-browser latency p50 ${lat.page.p50_ms.toFixed(2)} ms, p90 ${lat.page.p90_ms.toFixed(2)} ms `
    + `(measured: ${lat.page.n} runs of laser.run with performance.now(); session.run alone p50 ${lat.session.p50_ms.toFixed(2)} ms)`;
}

function drawingPad(size) {
  const pad = el("canvas", { id: "pad", width: 224, height: 224 });
  const ctx = pad.getContext("2d", { willReadFrequently: true });
  const clear = () => { ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, pad.width, pad.height); };
  clear();
  let down = false;
  const at = (e) => { const r = pad.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  pad.addEventListener("pointerdown", (e) => { down = true; ctx.beginPath(); ctx.moveTo(...at(e)); });
  pad.addEventListener("pointermove", (e) => {
    if (!down) return;
    Object.assign(ctx, { lineWidth: 224 / size * 1.6, lineCap: "round", strokeStyle: "#000" });
    ctx.lineTo(...at(e)); ctx.stroke();
  });
  addEventListener("pointerup", guard(async () => { if (down) { down = false; await answer(pad); } }));
  return { pad, clear };
}

const PALETTE = [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
  [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128]];

function picture(source, ms, caption) {
  const out = $("output");
  out.hidden = false;
  const canvas = el("canvas", { id: "answer", width: source.width, height: source.height });
  canvas.style.width = `${Math.max(240, Math.min(448, source.width))}px`;  // small pictures shown larger
  canvas.style.imageRendering = "pixelated";
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(source, 0, 0);
  out.replaceChildren(el("div", { className: "muted", textContent: `answer in ${ms.toFixed(2)} ms (one run)` }), canvas,
    el("div", { textContent: caption }), el("div", { id: "latency", className: "muted", textContent: "measuring p50…" }));
  return ctx;
}

function showSegmentation(source, r) {
  const ctx = picture(source, r.ms, r.classes.slice(0, 5).map((c) => `${c.label} ${(100 * c.fraction).toFixed(1)} %`).join(" · "));
  const img = ctx.getImageData(0, 0, source.width, source.height);
  for (let y = 0; y < source.height; y++) for (let x = 0; x < source.width; x++) {
    const k = r.mask[Math.floor(y * r.height / source.height) * r.width + Math.floor(x * r.width / source.width)];
    if (!k) continue;  // class 0 (background) stays as it is
    const [cr, cg, cb] = PALETTE[k % PALETTE.length], i = 4 * (y * source.width + x);
    img.data[i] = (img.data[i] + cr) / 2; img.data[i + 1] = (img.data[i + 1] + cg) / 2; img.data[i + 2] = (img.data[i + 2] + cb) / 2;
  }
  ctx.putImageData(img, 0, 0);
}

function showDetections(source, r) {
  const ctx = picture(source, r.ms, `${r.detections.length} detection(s) with score > 0.5: `
    + r.detections.slice(0, 8).map((d) => `${d.label} ${(100 * d.score).toFixed(0)} %`).join(", "));
  ctx.lineWidth = Math.max(2, source.width / 200);
  ctx.font = `${Math.max(12, source.width / 40)}px sans-serif`;
  for (const d of r.detections) {
    const [x1, y1, x2, y2] = d.box, [cr, cg, cb] = PALETTE[1 + (d.index % (PALETTE.length - 1))];
    ctx.strokeStyle = ctx.fillStyle = `rgb(${cr},${cg},${cb})`;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    ctx.fillText(`${d.label} ${(100 * d.score).toFixed(0)} %`, x1 + 2, Math.max(12, y1 - 3));
  }
}

async function answer(source) {
  const model = await window.laser.config;
  const task = model.about.task;
  if (task === "segmentation") showSegmentation(source, await window.laser.segment(source));
  else if (task === "detection") showDetections(source, await window.laser.detect(source));
  else showTopK(await window.laser.classify(source, 3));
  await measure((await window.laser.imageFeeds(source)).feeds);
}

function imageInput(model) {
  const box = $("input");
  const pre = model.preprocessing;
  const side = pre.size ? Math.max(...pre.size) : pre.crop || 224;
  const picker = el("input", { type: "file", accept: "image/*" });
  const preview = el("canvas", { width: 224, height: 224 });
  picker.addEventListener("change", guard(async () => {
    const file = picker.files[0]; if (!file) return;
    const bmp = await createImageBitmap(file);
    Object.assign(preview, { width: bmp.width, height: bmp.height });
    preview.getContext("2d").drawImage(bmp, 0, 0);
    await answer(preview);
  }));
  const kids = [el("div", {}, el("div", { textContent: "Pick an image file:" }), picker)];
  if (side <= 28 && model.about.task === "classification") {  // a digit model: draw one
    const { pad, clear } = drawingPad(side);
    kids.unshift(el("div", {}, el("div", { textContent: "Draw a digit:" }), pad, el("br"),
      el("button", { textContent: "clear", onclick: clear })));
  }
  box.append(el("div", { className: "row" }, ...kids));
}

function textInput() {
  const box = $("input");
  const text = el("textarea", { id: "text", value: "stocks rally on strong earnings" });
  const go = el("button", { id: "classify", textContent: "classify", onclick: guard(async () => {
    const r = await window.laser.classifyText(text.value, 3);
    showTopK(r, `, ${r.tokens.filter((t) => t !== 0).length} tokens`);
    await measure(await window.laser.encodeText(text.value));
  }) });
  box.append(el("div", { textContent: "Text to classify:" }), text, go);
}

function rawInput() {
  const go = el("button", { id: "run", textContent: "run on an example input", onclick: guard(async () => {
    const feeds = await window.laser.exampleFeeds();
    const t0 = performance.now();
    const out = await window.laser.run(feeds);
    const o = $("output"); o.hidden = false;
    o.replaceChildren(el("div", { textContent: `ran in ${(performance.now() - t0).toFixed(2)} ms; outputs: `
      + Object.entries(out).map(([k, v]) => `${k} [${v.dims}]`).join(", ") }),
      el("div", { id: "latency", className: "muted" }));
    await measure(feeds);
  }) });
  $("input").append(el("div", { textContent: "This page shows the raw outputs for this task." }), go);
}

try {
  const info = await window.laser.ready;
  const m = { ...(await window.laser.config), ...info.model };
  document.title = `${m.name} · laser`;
  $("title").textContent = m.name;
  $("about").textContent = `${m.task} · ${m.precision} · ${kib(m.bytes)} · lineage: ${m.lineage.join(" → ") || "—"}`;
  $("runtime").textContent = `${info.runtime}, ${info.backend}`;
  $("status").textContent = `ready: ${info.backend}${info.backend === "wasm" ? ` (SIMD, ${info.threads} thread${info.threads > 1 ? "s" : ""}`
    + `${info.isolated ? "" : "; serve with COOP/COEP headers for threads"})` : ""}`;
  $("input").hidden = false;
  if (m.preprocessing.type === "image") imageInput(m);
  else if (m.preprocessing.type === "text") textInput();
  else rawInput();
} catch (err) {
  $("status").textContent = `the model did not load: ${err.message || err}`;
  $("status").className = "card error";
}
