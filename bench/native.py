"""Static or dynamic graph, Python or C++: ResNet-18 on this machine's CPU, side by side in one run.

    PYTHONPATH=src .venv/bin/python bench/native.py [--model resnet18] [--batches 1 8] [--threads 2] [--runs 30]

ResNet-18 (torchvision, random weights: latency does not depend on them), batch 1 and 8, the same thread
count everywhere: eager PyTorch, torch.compile (Inductor, default mode; compile time apart), AOTInductor
``.pt2`` in Python (``aoti_load_package``) and in the C++ program of ``laser deploy cpp``, TorchScript in
Python and C++, ONNX Runtime in Python and C++. Python runners are timed in interleaved blocks
(``laser.timing.side_by_side``, p50 of every call, each call including numpy<->torch conversion); each C++
program runs ``--bench RUNS`` after 10 warm-up calls on the same input and prints its p50. Prints the
ratio of each to eager and the C++ / Python p50 ratio for the same artifact. Targets (from the issue):
AOTInductor <= 0.8x eager at batch 1; C++ within 5 % of the Python runner or faster.
"""

from __future__ import annotations

import argparse
import functools
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import laser
from laser.deploy import cpp_project
from laser.text import table
from laser.timing import side_by_side


def cpp_p50(binary: str, x: Path, runs: int, threads: int) -> float:
    done = subprocess.run([binary, "--input", str(x), "--bench", str(runs), "--threads", str(threads)],
                          capture_output=True, text=True, timeout=1800, check=True)
    found = re.search(r"p50_ms=([0-9.]+)", done.stdout)
    assert found, done.stdout + done.stderr
    return float(found.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="laser-bench-native-"))
    art = laser.load(f"torchvision.models:{args.model}", random_weights=True, input_shape=(3, 224, 224))
    made, seconds = {}, {}
    for fmt in ("aoti", "torchscript", "onnx"):
        t0 = time.perf_counter()
        made[fmt] = laser.export(art, to=fmt)
        seconds[f"export {fmt}"] = time.perf_counter() - t0
    binaries = {}
    for fmt, exported in made.items():
        built = cpp_project(exported, work / f"cpp-{fmt}", build=True)
        binaries[fmt], seconds[f"C++ build {fmt}"] = built["binary"], built["build_seconds"]
    runners = {"eager": laser.run(art, backend="torch", threads=args.threads),
               "torch.compile": laser.run(art, backend="compiled", threads=args.threads),
               "AOTInductor (Python)": laser.run(made["aoti"], backend="aoti", threads=args.threads),
               "TorchScript (Python)": laser.run(made["torchscript"], backend="torchscript", threads=args.threads),
               "ONNX Runtime (Python)": laser.run(made["onnx"], backend="onnxruntime", threads=args.threads)}
    seconds["torch.compile (first call, batch 1)"] = float(runners["torch.compile"].describe()["compile_seconds"])
    cpp_names = {"aoti": "AOTInductor (C++)", "torchscript": "TorchScript (C++)", "onnx": "ONNX Runtime (C++)"}
    rows = []
    for batch in args.batches:
        feeds = art.spec.example_inputs(batch=batch, seed=0)
        x = work / f"x{batch}.npy"
        np.save(x, np.ascontiguousarray(feeds[art.spec.input_names[0]]))
        for r in runners.values():
            r.warmup(3, batch=batch)  # torch.compile recompiles for a new batch size here, untimed
        times = side_by_side({k: functools.partial(r, feeds) for k, r in runners.items()}, rounds=max(3, args.runs // 5),
                             block=5, warmup=3)
        p50 = {k: statistics.median(v) for k, v in times.items()}
        p50.update({cpp_names[f]: cpp_p50(b, x, args.runs, args.threads) for f, b in binaries.items()})
        py_of = {"AOTInductor (C++)": "AOTInductor (Python)", "TorchScript (C++)": "TorchScript (Python)",
                 "ONNX Runtime (C++)": "ONNX Runtime (Python)"}
        for name, ms in p50.items():
            rows.append([batch, name, f"{ms:.3f}", f"{ms / p50['eager']:.2f}x",
                         f"{ms / p50[py_of[name]]:.2f}" if name in py_of else ""])
    for r in runners.values():
        r.close()
    print(f"{args.model}, {args.threads} threads, p50 ms (Python: {args.runs}+ interleaved calls; C++: --bench "
          f"{args.runs} after 10 warm-up calls)")
    print(table(rows, ["batch", "runner", "p50 ms", "vs eager", "C++ / Python"]))
    print("one-time costs (s): " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
