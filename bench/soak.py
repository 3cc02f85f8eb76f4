"""Soak: ``laser serve`` under steady load for minutes, with reloads, watched for failures and leaks.

    .venv/bin/python bench/soak.py [--minutes 10] [--concurrency 16] [--reload-every 30] [--json out.json]

One server process (loopback only) serves a repository of two models, the digits CNN as a PyTorch
bundle and the same network exported to ONNX (ONNX Runtime); ``--concurrency`` workers (one connection
each) send requests back to back, spread over HTTP (binary tensors), gRPC and the socket protocol and
over both models. Every ``--reload-every`` seconds one model is reloaded through the model-control
endpoint (alternating), which swaps in a freshly loaded version while requests keep arriving.

Every ``--sample-every`` seconds the server's resident memory (VmRSS), thread count and open file
descriptors are read from /proc. Reported, all measured: requests answered and failed (any non-success
answer or transport error), throughput, client-side latency p50/p99, reloads done and failed; after the
warm-up (the first 10 %, at least 1 minute for runs of 5 minutes or more): the RSS slope in MiB/min (a
least-squares line through the samples) and the change in threads and fds from the end of warm-up to
the end. Targets: zero failed requests, zero failed reloads, no threads or fds left behind, an RSS slope
near zero (under 1 MiB/min).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import PY, free_port, process  # bench/serve.py: the server subprocess helpers

MODELS = ("digits", "digits-onnx")
PROTOCOLS = ("http", "grpc", "laser")


def repository(root: Path) -> Path:
    """``root/repo/<model>/1/``: the digits CNN as a PyTorch bundle and exported to ONNX."""
    import laser
    from laser.export import export

    art = laser.load("digits-cnn")
    art.save(root / "repo" / MODELS[0] / "1")
    export(art, to="onnx").save(root / "repo" / MODELS[1] / "1")
    return root / "repo"


def proc_sample(pid: int) -> dict[str, float]:
    """VmRSS (MiB), threads and open fds of process ``pid``, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_mib": int(fields["VmRSS"].split()[0]) / 1024, "threads": int(fields["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


class Sampler(threading.Thread):
    """Samples the server process every ``every`` s until stopped: (seconds since start, sample)."""

    def __init__(self, pid: int, every: float):
        super().__init__(daemon=True)
        self.pid, self.every, self.t0 = pid, every, time.monotonic()
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.monotonic() - self.t0, proc_sample(self.pid)))
            self.stop.wait(self.every)


async def load(ports: dict[str, int], concurrency: int, seconds: float, reload_every: float,
               http_url: str) -> dict[str, Any]:
    """``concurrency`` workers over protocols x models for ``seconds``; a model reload every ``reload_every`` s."""
    from laser.serve.perf import infer_sender

    x = {"input": np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)}
    end = time.perf_counter() + seconds
    ok: dict[str, int] = {}
    failed: dict[str, int] = {}
    latencies: list[float] = []
    reloads = {"done": 0, "failed": 0, "errors": []}

    async def worker(i: int) -> None:
        proto, model = PROTOCOLS[i % len(PROTOCOLS)], MODELS[(i // len(PROTOCOLS)) % len(MODELS)]
        key = f"{proto}/{model}"
        send, close = await infer_sender(f"{proto}://127.0.0.1:{ports[proto]}", model, x)()
        try:
            while (t0 := time.perf_counter()) < end:
                try:
                    good = await send()
                except (OSError, RuntimeError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                    good = False
                if good:
                    ok[key] = ok.get(key, 0) + 1
                    latencies.append(time.perf_counter() - t0)
                else:
                    failed[key] = failed.get(key, 0) + 1
                    await asyncio.sleep(0.01)
        finally:
            close()

    async def reloader() -> None:
        async with httpx.AsyncClient(base_url=http_url, timeout=120) as client:
            n = 0
            while time.perf_counter() + reload_every < end:
                await asyncio.sleep(reload_every)
                r = await client.post(f"/v2/repository/models/{MODELS[n % len(MODELS)]}/load", json={})
                n += 1
                if r.status_code == 200:
                    reloads["done"] += 1
                else:
                    reloads["failed"] += 1
                    reloads["errors"].append(r.text[:200])

    t0 = time.perf_counter()
    await asyncio.gather(reloader(), *(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - t0
    lat = np.asarray(latencies) * 1000 if latencies else np.asarray([np.nan])
    return {"requests": sum(ok.values()), "failed": sum(failed.values()), "by_stream": ok, "failed_by_stream": failed,
            "seconds": elapsed, "throughput_rps": sum(ok.values()) / elapsed,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)), "reloads": reloads}


def resources(samples: list[tuple[float, dict[str, float]]], warmup_s: float) -> dict[str, Any]:
    """RSS slope (least squares, MiB/min) and thread/fd change over the samples after warm-up."""
    after = [(t, s) for t, s in samples if t >= warmup_s]
    if len(after) < 3:
        raise SystemExit(f"only {len(after)} samples after the {warmup_s:.0f} s warm-up; run longer")
    t = np.asarray([a[0] for a in after]) / 60
    rss = np.asarray([a[1]["rss_mib"] for a in after])
    first, last = after[0][1], after[-1][1]
    return {"samples_after_warmup": len(after), "rss_mib_after_warmup": first["rss_mib"], "rss_mib_end": last["rss_mib"],
            "rss_mib_max": float(rss.max()), "rss_slope_mib_per_min": float(np.polyfit(t, rss, 1)[0]),
            "threads_after_warmup": int(first["threads"]), "threads_end": int(last["threads"]),
            "threads_max": int(max(s["threads"] for _, s in after)),
            "fds_after_warmup": int(first["fds"]), "fds_end": int(last["fds"]),
            "fds_max": int(max(s["fds"] for _, s in after))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="load duration (default 10)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--reload-every", type=float, default=30.0, help="seconds between model reloads")
    p.add_argument("--sample-every", type=float, default=5.0, help="seconds between /proc samples")
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args()
    if not 0 < a.minutes <= 240 or not 1 <= a.concurrency <= 256 or a.reload_every <= 0 or a.sample_every <= 0:
        p.error("--minutes in (0, 240], --concurrency in [1, 256], --reload-every and --sample-every > 0")
    seconds = a.minutes * 60
    warmup_s = max(60.0, 0.1 * seconds) if a.minutes >= 5 else 0.2 * seconds
    from laser.serve.server import _loop_factory

    with tempfile.TemporaryDirectory(prefix="laser-soak-") as tmp:
        repo = repository(Path(tmp))
        ports = {"http": free_port(), "grpc": free_port(), "laser": free_port()}
        cmd = [PY, "-m", "laser.cli.main", "serve", str(repo), "--model-control", "--http-port", str(ports["http"]),
               "--grpc-port", str(ports["grpc"]), "--socket-port", str(ports["laser"]), "--max-batch-size", "16"]
        http_url = f"http://127.0.0.1:{ports['http']}"
        print(f"{os.cpu_count()} CPUs, 1-min load average {os.getloadavg()[0]:.1f}; {a.minutes:g} min at "
              f"c={a.concurrency} over {'/'.join(PROTOCOLS)} x {'/'.join(MODELS)}, a reload every {a.reload_every:g} s")
        with process(cmd, http_url + "/v2/health/ready") as server:
            sampler = Sampler(server.pid, a.sample_every)
            sampler.start()
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                traffic = runner.run(load(ports, a.concurrency, seconds, a.reload_every, http_url))
            sampler.stop.set()
            sampler.join()
            sampler.samples.append((time.monotonic() - sampler.t0, proc_sample(server.pid)))
    res = resources(sampler.samples, warmup_s)
    results = {"method": "measured: client-side counts and latencies; server VmRSS/Threads/fd from /proc every "
                         f"{a.sample_every:g} s; RSS slope = least-squares line after warm-up",
               "minutes": a.minutes, "concurrency": a.concurrency, "reload_every_s": a.reload_every,
               "warmup_s": warmup_s, "loadavg_1min_after": os.getloadavg()[0], **traffic, **res}
    r, rl = results, traffic["reloads"]
    print(f"requests {r['requests']} answered, {r['failed']} failed  ({r['throughput_rps']:.1f} req/s, "
          f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms)")
    print(f"reloads {rl['done']} done, {rl['failed']} failed")
    print(f"RSS {r['rss_mib_after_warmup']:.1f} -> {r['rss_mib_end']:.1f} MiB (max {r['rss_mib_max']:.1f}), slope "
          f"{r['rss_slope_mib_per_min']:+.3f} MiB/min after {warmup_s:.0f} s warm-up")
    print(f"threads {r['threads_after_warmup']} -> {r['threads_end']} (max {r['threads_max']}), "
          f"fds {r['fds_after_warmup']} -> {r['fds_end']} (max {r['fds_max']})")
    verdict = (r["failed"] == 0 and rl["failed"] == 0 and r["threads_end"] <= r["threads_after_warmup"]
               and r["fds_end"] <= r["fds_after_warmup"] and r["rss_slope_mib_per_min"] < 1.0)
    print("PASS" if verdict else "FAIL", "(targets: 0 failed requests and reloads, no threads/fds left, RSS slope "
          "< 1 MiB/min)")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))
    sys.exit(0 if verdict else 1)


if __name__ == "__main__":
    main()
