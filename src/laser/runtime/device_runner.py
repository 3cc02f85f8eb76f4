"""The runner ``laser ... --on ssh://`` starts on the device: standard library + numpy + the device's runtime only.

It is sent as source over the SSH connection (``python3 -c BOOTSTRAP`` reads it from stdin) and never imports
laser. Protocol on stdin/stdout, one frame per message: 4-byte header length, JSON header, 8-byte payload length,
payload (npz bytes for arrays, raw bytes for files). In order:

1. device → ``{"hello": fingerprint}`` (or ``{"error": "missing", "module": ...}``: numpy absent);
2. laser → ``{"op": "file", "name": REL}`` + bytes, once per bundle file; the files go to a fresh temp dir;
   (``{"op": "runtimes"}`` → ``{"runtimes": {name: version or None}}``: which runtimes import here);
3. laser → ``{"op": "load", "model": REL, "format": F, "runtime": R|"auto", "threads": N}`` → ``{"runtime", "version"}``;
4. laser → ``{"op": "run"}`` + npz inputs → npz outputs; or ``{"op": "time", "warmup", "warmup_seconds",
   "min_iters", "max_seconds", "iters"}`` + npz inputs → ``{"wall_ns", "cpu_s", "warmup_done"}`` + the per-call
   ns (``.npy``): laser's latency loop run here, inference calls back to back timed by ``time.perf_counter_ns``;
5. ``{"op": "close"}`` or end of input → the temp dir is removed and the process exits.

It also exits (removing the temp dir) when its parent (the SSH session) goes away, or after ``IDLE_S`` seconds
without a request, so nothing is left running on the device.
"""

from __future__ import annotations

import functools
import io
import json
import os
import platform
import select
import shutil
import struct
import sys
import tempfile
import threading
import time
from typing import Any

Stream = Any  # a binary file object (raw stdin, buffered stdout)

IDLE_S = 600.0
RUNTIMES = {"onnx": ("onnxruntime", "openvino"), "ort": ("onnxruntime",), "executorch": ("executorch",)}
INSTALL = {"onnxruntime": "onnxruntime", "openvino": "openvino", "executorch": "executorch", "numpy": "numpy"}


def send(out: Stream, header: dict[str, Any], payload: bytes = b"") -> None:
    head = json.dumps(header).encode()
    out.write(struct.pack(">I", len(head)) + head + struct.pack(">Q", len(payload)) + payload)
    out.flush()


def read_exact(inp: Stream, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = inp.read(left)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(inp: Stream) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack(">I", read_exact(inp, 4))
    header = json.loads(read_exact(inp, n))
    (m,) = struct.unpack(">Q", read_exact(inp, 8))
    return header, read_exact(inp, m)


def _cpuinfo() -> tuple[str, list[str], str]:
    """(model, flags, the ISA the flags belong to: x86 or arm) from /proc/cpuinfo."""
    model, isa = "", ""
    flags: list[str] = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags, isa = value.split(), "x86"
                elif key == "Features" and not flags:
                    flags, isa = value.split(), "arm"
                elif key == "CPU implementer":
                    isa = isa or "arm"
    except OSError:
        pass
    if not model:
        try:
            with open("/sys/firmware/devicetree/base/model") as f:
                model = f.read().strip("\x00\n ")
        except OSError:
            model = platform.processor() or platform.machine()
    return model, flags, isa


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # not installed, or installed without metadata
        return None


def fingerprint() -> dict[str, Any]:
    """What timings here depend on, and whether this python is emulated (qemu user mode)."""
    machine = platform.machine()
    model, flags, isa = _cpuinfo()
    arm = machine in ("aarch64", "arm64") or machine.startswith("arm")
    # qemu-user shows the host's /proc/cpuinfo: an arm python reading x86 flags (or the reverse) is emulated.
    mismatch = bool(isa) and (isa == "arm") != arm
    emulated = os.environ.get("LASER_EMULATED") or ("qemu user mode (cpuinfo is another ISA's)" if mismatch else None)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {"arch": machine, "cpu_model": model, "cpu_flags": flags, "logical_cores": os.cpu_count() or 1,
            "usable_cores": usable, "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "python_executable": sys.executable, "emulated": emulated,
            "hostname": platform.node(),
            "runtimes": {m: _version(m) for m in ("onnxruntime", "openvino", "executorch", "numpy")}}


class Model:
    """One loaded model on one runtime: ``call(feeds) -> outputs`` (numpy dicts)."""

    def __init__(self, path: str, fmt: str, runtime: str, threads: int, outputs: list[str]):
        self.runtime, self.outputs = runtime, outputs
        if runtime == "onnxruntime":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
            self.names = [o.name for o in self.session.get_outputs()]
            self.version = ort.__version__
        elif runtime == "openvino":
            import openvino as ov

            core = ov.Core()
            # As laser's openvino backend: FP32 means FP32 (no bf16 on AMX CPUs, no dynamic int8 of weights).
            compiled = core.compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                                        "INFERENCE_PRECISION_HINT": "f32",
                                                        "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0})
            self.request = compiled.create_infer_request()
            self.names = [o.get_any_name() for o in compiled.outputs]
            self.version = ov.__version__
        elif runtime == "executorch":
            from executorch.runtime import Runtime

            self.method = Runtime.get().load_program(path).load_method("forward")
            self.names = outputs
            self.version = _version("executorch") or "?"
        else:
            raise ValueError(f"unknown runtime {runtime!r}")

    def call(self, feeds: dict[str, Any], order: list[str]) -> dict[str, Any]:
        import numpy as np

        if self.runtime == "onnxruntime":
            values = self.session.run(None, feeds)
        elif self.runtime == "openvino":
            result = self.request.infer(feeds)
            values = [result[o] for o in self.request.model_outputs]
        else:
            import torch

            values = [v.numpy() for v in self.method.execute([torch.from_numpy(feeds[n]) for n in order])]
        names = self.outputs if len(self.outputs) == len(values) else self.names
        return {n: np.asarray(v) for n, v in zip(names, values)}


def importable(module: str) -> str | None:
    """The version of ``module`` when it imports here, else None (absent, or installed but broken). ExecuTorch
    is only looked up: importing it imports torch, seconds on a small board; a broken one fails at load."""
    try:
        if module == "executorch":
            import importlib.util

            if importlib.util.find_spec("executorch.runtime") is None:
                return None
        else:
            __import__(module)
    except Exception:
        return None
    return _version(module) or "?"


def pick_runtime(fmt: str, wanted: str) -> str:
    candidates = RUNTIMES.get(fmt, ())
    if wanted != "auto":
        if wanted not in candidates:
            raise LookupError(f"runtime {wanted!r} does not run {fmt} models; runtimes that do: {list(candidates)}")
        candidates = (wanted,)
    for name in candidates:
        try:
            __import__(name)
            return name
        except ImportError:
            continue
    raise ModuleNotFoundError(candidates[0] if candidates else fmt)


def time_calls(call: Any, feeds: dict[str, Any], p: dict[str, Any]) -> tuple[list[int], int, float, int]:
    """laser.measure.latency.time_calls, here: warm-up calls, then calls timed one by one, back to back.
    A copy on purpose: this file runs on the device, where laser is not installed; keep the two loops alike."""
    clock = time.perf_counter_ns
    warm_until = clock() + int(p["warmup_seconds"] * 1e9)
    done = 0
    while done < p["warmup"] or clock() < warm_until:
        call(feeds)
        done += 1
    budget_ns, iters = int(p["max_seconds"] * 1e9), p.get("iters")
    samples: list[int] = []
    cpu0 = time.process_time()
    start = clock()
    while True:
        t0 = clock()
        call(feeds)
        t1 = clock()
        samples.append(t1 - t0)
        if iters is not None:
            if len(samples) >= iters:
                break
        elif len(samples) >= p["min_iters"] and t1 - start >= budget_ns:
            break
    return samples, clock() - start, time.process_time() - cpu0, done


def _watch(parent: int, workdir: str) -> None:
    """Exit (removing the temp dir) when the SSH session that started us is gone."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            shutil.rmtree(workdir, ignore_errors=True)
            os._exit(3)


def serve(inp: Stream, out: Stream, workdir: str) -> None:
    import numpy as np

    model: Model | None = None
    order: list[str] = []
    while True:
        ready, _, _ = select.select([inp], [], [], IDLE_S)
        if not ready:
            return
        try:
            header, payload = receive(inp)
        except EOFError:
            return
        op = header.get("op")
        try:
            if op == "close":
                return
            if op == "file":
                dest = os.path.join(workdir, header["name"])
                if os.path.isabs(header["name"]) or ".." in header["name"].split("/"):
                    raise ValueError(f"refusing file name {header['name']!r}")
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with open(dest, "wb") as f:
                    f.write(payload)
                send(out, {"ok": True})
            elif op == "runtimes":
                send(out, {"ok": True, "runtimes": {m: importable(m) for m in ("onnxruntime", "openvino", "executorch")}})
            elif op == "load":
                runtime = pick_runtime(header["format"], header.get("runtime", "auto"))
                order = list(header["inputs"])
                model = Model(os.path.join(workdir, header["model"]), header["format"], runtime,
                              int(header["threads"]), list(header["outputs"]))
                send(out, {"ok": True, "runtime": runtime, "version": model.version})
            elif op == "run" and model is not None:
                with np.load(io.BytesIO(payload), allow_pickle=False) as z:
                    feeds = {k: z[k] for k in z.files}
                buf = io.BytesIO()
                np.savez(buf, **model.call(feeds, order))
                send(out, {"ok": True}, buf.getvalue())
            elif op == "time" and model is not None:
                with np.load(io.BytesIO(payload), allow_pickle=False) as z:
                    feeds = {k: z[k] for k in z.files}
                samples, wall_ns, cpu_s, done = time_calls(functools.partial(model.call, order=order), feeds, header)
                buf = io.BytesIO()
                np.save(buf, np.asarray(samples, dtype=np.int64))
                send(out, {"ok": True, "wall_ns": wall_ns, "cpu_s": cpu_s, "warmup_done": done}, buf.getvalue())
            else:
                send(out, {"error": "protocol", "message": f"unexpected request {op!r}"})
        except ModuleNotFoundError as exc:
            send(out, {"error": "missing", "module": exc.name or str(exc)})
        except Exception as exc:  # every failure goes back to laser as one line
            send(out, {"error": "failed", "message": f"{type(exc).__name__}: {str(exc)[:300]}"})


def main() -> None:
    # Unbuffered stdin, so select() sees every byte not yet read; the protocol gets its own copy of stdout and
    # fd 1 becomes stderr, so a runtime that prints (from Python or C) cannot corrupt it.
    inp = open(0, "rb", buffering=0, closefd=False)  # noqa: SIM115 - lives as long as the process
    out = open(os.dup(1), "wb")  # noqa: SIM115
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        import numpy  # noqa: F401
    except ImportError:
        send(out, {"error": "missing", "module": "numpy", "python": sys.executable})
        return
    workdir = tempfile.mkdtemp(prefix="laser-device-")
    threading.Thread(target=_watch, args=(os.getppid(), workdir), daemon=True).start()
    try:
        send(out, {"hello": fingerprint(), "workdir": workdir})
        serve(inp, out, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
