"""Serving side by side in one run, loopback only: Flask vs laser, protocol overhead, dynamic batching.

    .venv/bin/python bench/serve.py [--duration 10] [--warmup 3] [--parts 1,2,3] [--json out.json]

1. The classic Flask deployment (PyTorch's "Deploying PyTorch in Python via a REST API with Flask"
   tutorial: Flask dev server, PIL + torchvision transforms, eager ResNet-18) vs ``laser serve`` of a
   laser-optimized ResNet-18 (exported to ONNX, INT8 static by ``laser.Quantize`` when available, else
   FP32) answering ``POST /v2/models/resnet18/classify``; the same JPEG as multipart upload, c=1 and 8.
   Targets: laser >= 5 x Flask's throughput at c=8 with a lower p99.
2. Protocol overhead, echo backend, a 256-byte tensor, c=1 and 16: laser HTTP (OIP JSON, and binary)
   vs a plain FastAPI echo endpoint (same JSON, same uvicorn settings) vs laser gRPC vs laser socket.
   Targets: laser HTTP >= 0.9 x plain FastAPI; socket >= 2 x laser HTTP.
3. Dynamic batching on vs off at c=32, ResNet-18 FP32 on ONNX Runtime, binary tensors over HTTP.
   Target: >= 1.8 x.
4. System shared memory vs binary HTTP for a 1 MiB FP32 tensor (a mean over 262144 values on ONNX
   Runtime), c=1 and 4: the same server, the input read from a registered /dev/shm region instead of
   the body.

Weights are random (no downloads here); BatchNorm statistics are re-estimated on one random batch so
activations have a realistic scale. Each server runs in its own process; the servers of a part are up
together (an idle one uses no CPU) and are measured in interleaved rounds (``--rounds``), so a change
in load from other processes hits all of them alike. The load generator (laser.serve.perf, asyncio +
uvloop, one connection per worker) runs in this process. All figures are measured, client-side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

FLASK_APP = textwrap.dedent('''
    # PyTorch's Flask REST API tutorial, with random weights (no download) and the port from argv.
    import io, sys
    import torch
    from flask import Flask, jsonify, request
    from PIL import Image
    from laser.vision_compat import torchvision
    tv = torchvision()
    import torchvision.transforms as transforms

    app = Flask(__name__)
    model = tv.models.resnet18()
    # The tutorial loads pretrained weights; here the same random weights laser serves (argv[2]).
    from safetensors.torch import load_file
    model.load_state_dict(load_file(sys.argv[2]))
    model.eval()

    def transform_image(image_bytes):
        my_transforms = transforms.Compose([transforms.Resize(255), transforms.CenterCrop(224),
                                            transforms.ToTensor(),
                                            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
        image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
        return my_transforms(image).unsqueeze(0)

    def get_prediction(image_bytes):
        tensor = transform_image(image_bytes=image_bytes)
        outputs = model.forward(tensor)
        _, y_hat = outputs.max(1)
        return str(y_hat.item()), "class_" + str(y_hat.item())

    @app.route("/health")
    def health():
        return "ok"

    @app.route("/predict", methods=["POST"])
    def predict():
        file = request.files["file"]
        img_bytes = file.read()
        class_id, class_name = get_prediction(image_bytes=img_bytes)
        return jsonify({"class_id": class_id, "class_name": class_name})

    app.run(host="127.0.0.1", port=int(sys.argv[1]))
''')

FASTAPI_APP = textwrap.dedent('''
    # A plain FastAPI echo endpoint: parse the OIP JSON body, answer the per-sample mean (what laser's
    # echo backend computes), no validation. Same uvicorn settings as laser (httptools, uvloop).
    import sys
    import numpy as np
    import uvicorn
    from fastapi import FastAPI, Request

    app = FastAPI()

    @app.get("/health")
    def health():
        return "ok"

    @app.post("/v2/models/echo/infer")
    async def infer(request: Request):
        body = await request.json()
        inp = body["inputs"][0]
        x = np.asarray(inp["data"], dtype=np.float32).reshape(inp["shape"])
        mean = x.reshape(len(x), -1).mean(1)
        out = np.repeat(mean[:, None], 10, axis=1)
        return {"model_name": "echo", "outputs": [{"name": "logits", "datatype": "FP32", "shape": list(out.shape),
                                                   "data": out.ravel().tolist()}]}

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False,
                http="httptools", loop="uvloop")
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def process(args: list[str], health: str, timeout_s: float = 300.0, env: dict[str, str] | None = None):
    """A server subprocess, up once ``health`` answers 200; stopped (SIGTERM, then kill) afterwards."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, stdout=log, stderr=log, env={**os.environ, **(env or {})}, cwd=ROOT)
        try:
            end = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"{args[:3]} exited: {log.read()[-2000:].decode(errors='replace')}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(health, timeout=2).status_code == 200:
                        break
                if time.monotonic() > end:
                    raise RuntimeError(f"{args[:3]} not ready after {timeout_s} s")
                time.sleep(0.3)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def load(make: Any, concurrency: int, duration: float, warmup: float) -> dict[str, Any]:
    from laser.serve.perf import measure
    from laser.serve.server import _loop_factory

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        r = runner.run(measure(make, concurrency, duration, warmup))
    return r.to_dict()


def compare(targets: dict[str, Any], levels: tuple[int, ...], a: argparse.Namespace) -> dict[str, list[dict]]:
    """Each target at each level in ``a.rounds`` interleaved rounds (target A, B, ..., A, B, ...), so load
    from other processes hits every target alike. Per level: requests and seconds summed over rounds,
    latency percentiles averaged over rounds; stable when the rounds' throughputs agree within 10 %."""
    out: dict[str, list[dict]] = {name: [] for name in targets}
    for c in levels:
        rounds: dict[str, list[dict]] = {name: [] for name in targets}
        for r in range(a.rounds):
            for name, make in targets.items():
                rounds[name].append(load(make, c, a.duration / a.rounds, a.warmup if r == 0 else min(a.warmup, 1.0)))
        for name, rs in rounds.items():
            rps = np.asarray([x["throughput_rps"] for x in rs])
            seconds = sum(x["duration_s"] for x in rs)
            out[name].append({
                "concurrency": c, "requests": sum(x["requests"] for x in rs), "errors": sum(x["errors"] for x in rs),
                "duration_s": seconds, "throughput_rps": sum(x["requests"] for x in rs) / seconds,
                **{k: float(np.mean([x[k] for x in rs])) for k in ("p50_ms", "p90_ms", "p99_ms")},
                "round_rps": rps.tolist(), "stable": bool(np.all(np.abs(rps - rps.mean()) <= 0.1 * rps.mean())),
            })
    return out


def row(name: str, r: dict[str, Any]) -> str:
    return (f"{name:<40} c={r['concurrency']:<3} {r['throughput_rps']:>8.1f} req/s  p50 {r['p50_ms']:7.2f} ms  "
            f"p99 {r['p99_ms']:7.2f} ms  errors {r['errors']}{'' if r['stable'] else '  (unstable)'}")


# -- models -----------------------------------------------------------------------------------
def resnet18(workdir: Path) -> tuple[Path, Path, str]:
    """(FP32 ONNX bundle, serving bundle, what the serving bundle is): random weights, real BN scale
    (random init leaves BN statistics that push activations toward denormals, which distorts timings).
    The torch weights go to ``workdir/resnet18.safetensors`` for the Flask app."""
    import laser
    from laser.export import export
    from laser.models.factory import with_batchnorm_statistics

    art = with_batchnorm_statistics(laser.load("resnet18", random_weights=True))
    from safetensors.torch import save_file

    save_file(art.module.state_dict(), str(workdir / "resnet18.safetensors"))
    fp32 = export(art, to="onnx").save(workdir / "resnet18-fp32")
    try:
        from laser.compress.quantize import Quantize
    except ImportError:
        return fp32.location, fp32.location, "FP32 ONNX Runtime (laser.compress.quantize not available)"
    int8 = Quantize("int8-static", calibration="random", samples=32, progress=False)(fp32).save(workdir / "resnet18-int8")
    return fp32.location, int8.location, "INT8 static (laser.Quantize, u8s8 per-channel) on ONNX Runtime"


def jpeg() -> bytes:
    """A 640 x 480 photo-like JPEG (smooth gradients + noise), the same bytes for every server."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:640]
    img = np.stack([128 + 100 * np.sin(xx / 60), 128 + 100 * np.cos(yy / 45), 128 + 60 * np.sin((xx + yy) / 80)], -1)
    img = (img + rng.normal(0, 12, img.shape)).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def multipart(field: str, data: bytes) -> tuple[bytes, str]:
    boundary = "laserbenchboundary7d3f"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"cat.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def laser_serve(models: list[str], port: int, *extra: str) -> list[str]:
    return [PY, "-m", "laser.cli.main", "serve", *models, "--http-port", str(port), *extra]


# -- parts ------------------------------------------------------------------------------------
def part1(work: Path, a: argparse.Namespace, results: dict[str, Any]) -> None:
    from laser.serve.perf import http_request, http_sender

    _, serving, what = resnet18(work)
    image = jpeg()
    body, ctype = multipart("file", image)
    print(f"\n[1] Flask tutorial (eager ResNet-18) vs laser serve ({what}); {len(image)}-byte JPEG, multipart")
    out: dict[str, Any] = {"laser_model": what, "image_bytes": len(image)}
    script = work / "flask_app.py"
    script.write_text(FLASK_APP)
    fport, lport = free_port(), free_port()
    laser_cmd = laser_serve([f"resnet18={serving}"], lport, "--no-grpc", "--no-socket", "--max-batch-size", "8",
                            "--max-queue-delay-ms", "2")
    with contextlib.ExitStack() as stack:
        stack.enter_context(process([PY, str(script), str(fport), str(work / "resnet18.safetensors")],
                                    f"http://127.0.0.1:{fport}/health"))
        stack.enter_context(process(laser_cmd, f"http://127.0.0.1:{lport}/v2/health/ready"))
        flask_req = http_request("127.0.0.1", fport, "/predict", body, {"Content-Type": ctype})
        laser_req = http_request("127.0.0.1", lport, "/v2/models/resnet18/classify?k=1", body, {"Content-Type": ctype})
        out.update(compare({"flask": http_sender("127.0.0.1", fport, flask_req),
                            "laser": http_sender("127.0.0.1", lport, laser_req)}, (1, 8), a))
    for name, label in (("flask", "flask + torch eager"), ("laser", "laser serve /classify")):
        for r in out[name]:
            print(row(label, r))
    f8, l8 = out["flask"][1], out["laser"][1]
    out["throughput_ratio_c8"] = l8["throughput_rps"] / max(f8["throughput_rps"], 1e-9)
    out["p99_ratio_c8"] = l8["p99_ms"] / f8["p99_ms"]
    print(f"    laser / flask at c=8: throughput {out['throughput_ratio_c8']:.2f} x (target >= 5), "
          f"p99 {out['p99_ratio_c8']:.2f} x (target < 1)")
    results["flask_vs_laser"] = out


def part2(work: Path, a: argparse.Namespace, results: dict[str, Any]) -> None:
    import laser
    from laser.serve.client import request_json
    from laser.serve.perf import grpc_sender, http_request, http_sender, socket_sender
    from laser.serve.proto import message

    bundle = laser.load("digits-cnn").save(work / "digits")
    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)  # 256 bytes
    json_body = json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                        "data": x.ravel().tolist()}]}).encode()
    head, chunks = request_json({"input": x}, None, True, None)
    print("\n[2] protocol overhead: echo backend, one (1, 1, 8, 8) FP32 tensor per request")
    levels = (1, 16)
    out: dict[str, Any] = {}
    script = work / "fastapi_app.py"
    script.write_text(FASTAPI_APP)
    fport, hp, gp, sp = free_port(), free_port(), free_port(), free_port()
    laser_cmd = laser_serve([f"digits={bundle.location}"], hp, "--grpc-port", str(gp), "--socket-port", str(sp),
                            "--backend", "echo", "--max-batch-size", "16")
    with contextlib.ExitStack() as stack:
        stack.enter_context(process([PY, str(script), str(fport)], f"http://127.0.0.1:{fport}/health"))
        stack.enter_context(process(laser_cmd, f"http://127.0.0.1:{hp}/v2/health/ready"))
        msg = message("ModelInferRequest")(model_name="digits")
        msg.inputs.add(name="input", datatype="FP32", shape=x.shape)
        msg.raw_input_contents.append(x.tobytes())
        frame_head = json.dumps({"model_name": "digits", **json.loads(head)}).encode()
        targets = {
            "fastapi_json": http_sender("127.0.0.1", fport, http_request(
                "127.0.0.1", fport, "/v2/models/echo/infer", json_body, {"Content-Type": "application/json"})),
            "laser_http_json": http_sender("127.0.0.1", hp, http_request(
                "127.0.0.1", hp, "/v2/models/digits/infer", json_body, {"Content-Type": "application/json"})),
            "laser_http_binary": http_sender("127.0.0.1", hp, http_request(
                "127.0.0.1", hp, "/v2/models/digits/infer", b"".join([head, *chunks]),
                {"Inference-Header-Content-Length": str(len(head))})),
            "laser_grpc": grpc_sender(f"127.0.0.1:{gp}", msg),
            "laser_socket": socket_sender("127.0.0.1", sp, frame_head, chunks),
        }
        out.update(compare(targets, levels, a))
    for name, rs in out.items():
        for r in rs:
            print(row(name, r))
    ratios = {}
    for i, c in enumerate(levels):
        rps = {k: v[i]["throughput_rps"] for k, v in out.items()}
        ratios[f"c{c}"] = {"laser_http_json_over_fastapi": rps["laser_http_json"] / rps["fastapi_json"],
                           "socket_over_laser_http_json": rps["laser_socket"] / rps["laser_http_json"],
                           "grpc_over_laser_http_json": rps["laser_grpc"] / rps["laser_http_json"]}
        r = ratios[f"c{c}"]
        print(f"    c={c}: laser HTTP / FastAPI {r['laser_http_json_over_fastapi']:.2f} x (target >= 0.9), "
              f"socket / laser HTTP {r['socket_over_laser_http_json']:.2f} x (target >= 2), "
              f"gRPC / laser HTTP {r['grpc_over_laser_http_json']:.2f} x")
    out["ratios"] = ratios
    results["protocol_overhead"] = out


def part3(work: Path, a: argparse.Namespace, results: dict[str, Any]) -> None:
    from laser.serve.client import request_json
    from laser.serve.perf import http_request, http_sender

    fp32 = work / "resnet18-fp32"
    if not fp32.exists():
        resnet18(work)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    head, chunks = request_json({"input": x}, None, True, None)
    body = b"".join([head, *chunks])
    print("\n[3] dynamic batching on vs off, ResNet-18 FP32 on ONNX Runtime, c=32, binary tensors over HTTP")
    servers = {"batching off": ["--no-batching"],
               "batching on": ["--max-batch-size", "32", "--max-queue-delay-ms", "5"]}
    ports = {name: free_port() for name in servers}
    with contextlib.ExitStack() as stack:
        for name, flags in servers.items():
            cmd = laser_serve([f"resnet18={fp32}"], ports[name], "--no-grpc", "--no-socket", "--backend",
                              "onnxruntime", *flags)
            stack.enter_context(process(cmd, f"http://127.0.0.1:{ports[name]}/v2/health/ready"))
        targets = {name: http_sender("127.0.0.1", port, http_request(
            "127.0.0.1", port, "/v2/models/resnet18/infer", body, {"Inference-Header-Content-Length": str(len(head))}))
            for name, port in ports.items()}
        out: dict[str, Any] = {name: rs[0] for name, rs in compare(targets, (32,), a).items()}
    for name in servers:
        print(row(name, out[name]))
    out["ratio"] = out["batching on"]["throughput_rps"] / max(out["batching off"]["throughput_rps"], 1e-9)
    print(f"    batching on / off: {out['ratio']:.2f} x (target >= 1.8)")
    results["dynamic_batching"] = out


def part4(work: Path, a: argparse.Namespace, results: dict[str, Any]) -> None:
    import onnx
    import tritonclient.utils.shared_memory as shm
    from onnx import TensorProto, helper

    import laser
    from laser.serve.client import request_json
    from laser.serve.perf import http_request, http_sender

    n = 1 << 18  # FP32 values: 1 MiB
    graph = helper.make_graph([helper.make_node("ReduceMean", ["signal"], ["level"], axes=[1], keepdims=1)], "level",
                              [helper.make_tensor_value_info("signal", TensorProto.FLOAT, ["batch", n])],
                              [helper.make_tensor_value_info("level", TensorProto.FLOAT, ["batch", 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(work / "level.onnx"))
    bundle = laser.load(work / "level.onnx", name="level").save(work / "level")
    x = np.random.default_rng(0).standard_normal((1, n)).astype(np.float32)
    head, chunks = request_json({"signal": x}, None, True, None)
    shm_body = json.dumps({"inputs": [{"name": "signal", "shape": [1, n], "datatype": "FP32", "parameters": {
        "shared_memory_region": "signal", "shared_memory_byte_size": x.nbytes}}]}).encode()
    print("\n[4] system shared memory vs binary HTTP, one (1, 262144) FP32 tensor (1 MiB) per request, ONNX Runtime")
    port, key = free_port(), f"/laser_bench_{os.getpid()}"
    handle = shm.create_shared_memory_region("bench", key, x.nbytes)
    try:
        shm.set_shared_memory_region(handle, [x])
        cmd = laser_serve([f"level={bundle.location}"], port, "--no-grpc", "--no-socket", "--backend", "onnxruntime")
        with process(cmd, f"http://127.0.0.1:{port}/v2/health/ready"):
            httpx.post(f"http://127.0.0.1:{port}/v2/systemsharedmemory/region/signal/register",
                       json={"key": key, "byte_size": x.nbytes}).raise_for_status()
            path = "/v2/models/level/infer"
            targets = {
                "http_binary_1MiB": http_sender("127.0.0.1", port, http_request(
                    "127.0.0.1", port, path, b"".join([head, *chunks]), {"Inference-Header-Content-Length": str(len(head))})),
                "http_shm_1MiB": http_sender("127.0.0.1", port, http_request(
                    "127.0.0.1", port, path, shm_body, {"Content-Type": "application/json"})),
            }
            out: dict[str, Any] = compare(targets, (1, 4), a)
    finally:
        shm.destroy_shared_memory_region(handle)
    for name, rs in out.items():
        for r in rs:
            print(row(name, r))
    out["ratios"] = {f"c{r['concurrency']}": s["throughput_rps"] / max(r["throughput_rps"], 1e-9)
                     for r, s in zip(out["http_binary_1MiB"], out["http_shm_1MiB"])}
    for level, ratio in out["ratios"].items():
        print(f"    {level}: shared memory / binary HTTP throughput {ratio:.2f} x")
    results["shared_memory"] = out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per level")
    p.add_argument("--warmup", type=float, default=3.0, help="discarded seconds before a level's first round")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds per level (duration split among them)")
    p.add_argument("--parts", default="1,2,3")
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args()
    parts = {int(x) for x in a.parts.split(",")}
    results: dict[str, Any] = {"method": "measured: client-side, laser.serve.perf, loopback, one server at a time",
                               "duration_s": a.duration, "warmup_s": a.warmup, "cpus": os.cpu_count()}
    results["loadavg_1min_before"] = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, 1-min load average {os.getloadavg()[0]:.1f} before the run "
          "(above the CPU count: other processes share the cores, expect noise)")
    with tempfile.TemporaryDirectory(prefix="laser-bench-serve-") as tmp:
        work = Path(tmp)
        for n, fn in ((1, part1), (2, part2), (3, part3), (4, part4)):
            if n in parts:
                fn(work, a, results)
    results["loadavg_1min_after"] = os.getloadavg()[0]
    print(f"\n1-min load average after the run: {os.getloadavg()[0]:.1f}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
