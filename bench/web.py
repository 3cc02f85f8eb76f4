"""In-browser WASM vs Python onnxruntime on the same artifact, side by side in one run.

    .venv/bin/python bench/web.py [--models digits-cnn mobilenet_v3_small] [--passes 5] [--block 20]

For digits-cnn (laser's trained weights) and MobileNetV3-small (random weights, BatchNorm statistics from
one random batch), FP32 and INT8 (``Quantize("int8-static")``), batch 1: the page that ``laser web`` writes,
served from 127.0.0.1 with COOP/COEP (so WASM runs SIMD + threads), in headless Chromium; and laser's
onnxruntime runner in this process, with the same thread count. Passes alternate Python and browser
blocks, so load from other processes hits both alike. Browser times are in-page ``performance.now()``
around ``session.run`` ("ort-web") and around ``window.laser.run`` ("page", the API the page and users
call): the page's overhead is page / ort-web. No target ratio for browser vs Python: browsers are slower.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import laser
from laser.measure.latency import side_by_side
from laser.text import table


def artifacts(name: str) -> dict[str, laser.Artifact]:
    if name == "digits-cnn":
        fp32 = laser.export(laser.load("digits-cnn"), to="onnx")
        calib: dict[str, Any] = {"calibration": "digits"}
    else:
        from laser.models.factory import with_batchnorm_statistics

        art = laser.load(f"torchvision.models:{name}", random_weights=True, input_shape=(3, 224, 224))
        fp32 = laser.export(with_batchnorm_statistics(art, batch=4), to="onnx")
        calib = {"calibration": "random"}
    return {"fp32": fp32, "int8": laser.Quantize("int8-static", progress=False, **calib)(fp32)}


def feeds_json(feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    return {k: {"data": v.ravel().tolist(), "dims": list(v.shape)} for k, v in feeds.items()}


def bench_one(browser: Any, art: laser.Artifact, work: Path, passes: int, block: int, threads: int) -> dict[str, Any]:
    from laser.web import write_site
    from laser.web.server import start

    site = write_site(art, work / f"{art.name}-{id(art)}", backend="wasm")
    server, url = start(site)
    page = browser.open(url + "index.html")
    feeds = art.spec.example_inputs(batch=1)
    runner = laser.run(art, backend="onnxruntime", threads=threads)
    py: list[float] = []
    web: dict[str, list[float]] = {"session": [], "page": []}

    def browser_block() -> None:
        lat = page.evaluate("""async ([f, n]) => {
            for (const v of Object.values(f)) v.data = new Float32Array(v.data);  // as classify() passes it
            return await window.laser.latency(f, n, 2); }""", [feeds_json(feeds), block])
        for k in web:  # p50 of each block; the median over passes is reported
            web[k].append(lat[k]["p50_ms"])

    try:
        for _ in range(passes):
            py += side_by_side({"python": lambda: runner(feeds)}, rounds=1, block=block, switch=2, warmup=2)["python"]
            browser_block()
    finally:
        runner.close()
        page.close()
        server.shutdown()
        server.server_close()
    ort_web, page_ms, python = statistics.median(web["session"]), statistics.median(web["page"]), statistics.median(py)
    return {"python_ms": python, "ort_web_ms": ort_web, "page_ms": page_ms, "backend": page.info["backend"],
            "threads": page.info["threads"], "isolated": page.info["isolated"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["digits-cnn", "mobilenet_v3_small"])
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--block", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from laser.web.browser import Browser

    rows = []
    with tempfile.TemporaryDirectory() as tmp, Browser() as browser:
        for name in args.models:
            for precision, art in artifacts(name).items():
                r = bench_one(browser, art, Path(tmp), args.passes, args.block, args.threads)
                ep = f"{r['backend']} ({r['threads']} threads{', isolated' if r['isolated'] else ''})"
                rows.append([name, precision, f"{r['python_ms']:.3f}", f"{r['ort_web_ms']:.3f}", f"{r['page_ms']:.3f}",
                             f"{r['page_ms'] / r['python_ms']:.2f}x", f"{100 * (r['page_ms'] / r['ort_web_ms'] - 1):+.1f} %",
                             ep])
    print("batch 1, p50 in ms (measured: Python = laser's onnxruntime runner, perf_counter; browser = headless Chromium,"
          f" in-page performance.now(); median over {args.passes} passes of {args.block} calls each)")
    print(table(rows, ["model", "precision", "python ort", "ort-web", "page (laser.run)", "page / python",
                       "page overhead", "browser EP"]))


if __name__ == "__main__":
    main()
