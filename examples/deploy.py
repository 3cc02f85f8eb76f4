"""The tail every worked example shares: export, quantize, measure and serve a trained model with laser.

    from deploy import deploy
    summary = deploy(artifact, sample=Path("picture.png"), calibration=train_set, data=val_set, out=out_dir)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import laser
from laser.data import Dataset


def example_args(name: str, description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default=f"out/examples/{name}", help="output directory (default: %(default)s)")
    p.add_argument("--fast", action="store_true", help="less data, fewer epochs, shorter measurements (tests)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def deploy(art: laser.Artifact, *, sample: Any, calibration: Dataset | None, data: Dataset, out: Path,
           quantize: str = "int8-static", fast: bool = False) -> dict[str, Any]:
    """Export to ONNX, quantize, measure all three side by side, then serve the quantized model on
    127.0.0.1 and answer one request through the same task pipeline. Returns what happened."""
    t0 = time.perf_counter()
    # --fast takes the TorchScript-based exporter (seconds, not tens of seconds); both are validated.
    onnx = laser.export(art, to="onnx", exporter="legacy" if fast else "auto")
    check = onnx.lineage[-1].results
    worst = max(o["max_abs_error"] for o in check["validation"]["outputs"].values())
    print(f"exported to ONNX with the {check['exporter_used']} exporter in {time.perf_counter() - t0:.1f} s; "
          f"validated against torch: {'passed' if check['validation']['passed'] else 'FAILED'} "
          f"(max |error| {worst:.2g})")
    t0 = time.perf_counter()
    q = laser.Quantize(quantize, calibration=calibration, samples=64 if fast else 256, progress=False)(onnx)
    print(f"quantized ({quantize}) in {time.perf_counter() - t0:.1f} s: {onnx.bytes / 1024:.0f} KiB -> "
          f"{q.bytes / 1024:.0f} KiB")
    timing = {"repeats": 1, "max_seconds": 0.2, "min_iters": 5, "warmup": 2, "peak": False} if fast else {}
    report = laser.measure([art, onnx, q], data=data, **timing)
    print(report.to_markdown())
    saved = q.save(out / "model-int8")
    body = sample.encode("utf-8") if isinstance(sample, str) else Path(sample).read_bytes()
    server = laser.serve(saved, http_port=0, grpc_port=None, socket_port=None, block=False)
    try:
        import httpx

        # The server runs the artifact's own task pipeline (laser.hub.pipelines) on the raw picture or text.
        r = httpx.post(f"{server.http_url}/v2/models/{saved.name}/pipeline", content=body, timeout=60)
        r.raise_for_status()
        answer = r.json()
    finally:
        server.stop()
    answer.pop("mask_png", None)  # keep the printout short
    print(f"served {saved.location} on {server.http_url}, one request, stopped; answer: {answer}")
    return {"onnx": onnx, "int8": q, "report": report, "served": answer, "bundle": saved.location}
