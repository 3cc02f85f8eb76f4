"""The machine a report was measured on: fingerprint and peak FP32 / INT8 / BF16 throughput.

Peak figures come from short micro-benchmarks: the best of a few large matrix products
(FP32: ``torch.mm``; INT8: ``torch._int_mm``, int8 × int8 -> int32) timed with perf_counter,
counting 2 ops per multiply-accumulate; on a CPU the better of all threads together and one thread
× cores (see ``_peak``). Library matmuls reach most, not all, of the theoretical
peak (an example measured elsewhere, on a 2-core VM: a hand-written FMA loop reached ~230 GFLOP/s FP32,
torch.mm at n=2048 ~200), so "% of peak" is relative to what a well-tuned kernel achieves here, as labelled.
"""

from __future__ import annotations

import functools
import platform
import shutil
import subprocess
import time
from typing import Any

from laser.runtime.hardware import ISA_FLAGS, cpu_flags, cpu_info  # noqa: F401 - CPU facts: one reader, in runtime


def gpu_info() -> list[dict[str, Any]]:
    """NVIDIA GPUs and driver via nvidia-smi (empty when there is none)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version,memory.total,power.limit",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 4:
            gpus.append({"name": parts[0], "driver": parts[1], "memory_mib": _num(parts[2]),
                         "power_limit_w": _num(parts[3])})
    return gpus


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _best_seconds(fn: Any, reps: int, device: str) -> float:
    import torch

    def timed() -> float:
        t0 = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)  # kernels are asynchronous: wait for the product itself
        return time.perf_counter() - t0

    timed()  # warm-up: thread pool start, packing buffers, cuBLAS handles
    return min(timed() for _ in range(reps))


def _default_n(device: str) -> int:
    return 8192 if device.startswith("cuda") else 2048  # long enough to hide launch/threading overhead


def peak_fp32(n: int | None = None, reps: int = 5, threads: int | None = None, device: str = "cpu",
              ) -> dict[str, Any]:
    """FP32 GFLOP/s of the best of ``reps`` n×n torch.mm (2 n³ FLOPs each) on ``device``."""
    import torch

    from laser.runtime.base import default_threads

    n = n or _default_n(device)
    threads = threads or default_threads()
    prev_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # true FP32, not TF32 tensor cores
    try:
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        return _peak(lambda: torch.mm(a, b), 2 * n**3, reps, threads, device, "gflops", "GFLOP/s",
                     f"torch.mm {n}x{n} float32" + (", TF32 off" if device != "cpu" else "") + ", 2 FLOPs per MAC")
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev_tf32


def _peak(fn: Any, ops: int, reps: int, threads: int, device: str, key: str, unit: str, what: str) -> dict[str, Any]:
    """Best rate of ``fn`` (``ops`` operations per call). On a CPU it is measured with all
    ``threads`` and with one thread × ``threads``, and the higher is kept: on a shared, busy CPU a
    multi-threaded product stalls whenever one of its threads is descheduled, while a one-thread run
    still finds full-speed time slices (this assumes linear scaling across cores, as a peak does)."""
    import torch

    if device != "cpu":
        rate = ops / _best_seconds(fn, reps, device) / 1e9
        return {key: rate, "unit": unit, "kind": "measured", "device": device,
                "method": f"best of {reps} {what} on {device}"}
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        multi = ops / _best_seconds(fn, reps, device) / 1e9
        torch.set_num_threads(1)
        single = ops / _best_seconds(fn, reps, device) / 1e9
    finally:
        torch.set_num_threads(prev)
    rate = max(multi, single * threads)
    how = (f"{threads} threads together" if multi >= single * threads
           else f"1 thread × {threads} (the {threads}-thread run got {multi:.0f}: busy CPU)")
    return {key: rate, "unit": unit, "kind": "measured", "device": device,
            "method": f"best of {reps} {what}; {how}"}


def peak_int8(n: int | None = None, reps: int = 5, threads: int | None = None, device: str = "cpu",
              ) -> dict[str, Any] | None:
    """INT8 GOP/s of the best of ``reps`` n×n torch._int_mm (int8 -> int32) on ``device``, or None
    if this build has no int8 GEMM there."""
    import torch

    from laser.runtime.base import default_threads

    if not hasattr(torch, "_int_mm"):
        return None
    n = n or _default_n(device)
    threads = threads or default_threads()
    kernel = "oneDNN; uses VNNI/AMX where present" if device == "cpu" else "cuBLASLt int8 tensor cores"
    try:
        a = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=device)
        b = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=device)
        return _peak(lambda: torch._int_mm(a, b), 2 * n**3, reps, threads, device, "gops", "GOP/s",
                     f"torch._int_mm {n}x{n} int8->int32 ({kernel}), 2 ops per MAC")
    except RuntimeError:  # no int8 GEMM kernel for this CPU/GPU/build
        return None


def peak_bf16(n: int | None = None, reps: int = 5, threads: int | None = None, device: str = "cpu",
              ) -> dict[str, Any] | None:
    """BF16 GFLOP/s of the best of ``reps`` n×n torch.mm on bfloat16 tensors (AMX-BF16 / AVX512-BF16 kernels
    where the CPU has them; elsewhere the library converts, which the method says), or None without bf16."""
    import torch

    from laser.runtime.base import default_threads

    threads = threads or default_threads()
    flags = cpu_flags() if device == "cpu" else set()
    native = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    # software bf16 runs at a few GFLOP/s: a 2048³ product would take tens of seconds, 256³ shows the rate
    n = n or (_default_n(device) if native or device != "cpu" else 256)
    kernel = (f"native: {', '.join(native)}" if native else "no bf16 instructions: converted in software"
              ) if device == "cpu" else "tensor cores"
    try:
        a = torch.randn(n, n, device=device).to(torch.bfloat16)
        b = torch.randn(n, n, device=device).to(torch.bfloat16)
        return _peak(lambda: torch.mm(a, b), 2 * n**3, reps, threads, device, "gflops", "GFLOP/s",
                     f"torch.mm {n}x{n} bfloat16 ({kernel}), 2 FLOPs per MAC")
    except RuntimeError:  # no bf16 matmul in this build
        return None


def _cpu_seconds(fn: Any, reps: int) -> float:
    """Best process CPU time of ``reps`` calls of ``fn`` after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return max(best, 1e-9)


def one_core_peaks(n: int = 1024, reps: int = 5, copy_mib: int = 64) -> dict[str, dict[str, Any]]:
    """Peaks of one core in process CPU time: FP32 ``torch.mm`` and INT8 ``torch._int_mm`` (n×n, 2 ops per
    MAC, one intra-op thread) and memory bandwidth (a ``copy_mib`` MiB numpy copy, read + write counted).

    CPU time counts only the time this process ran, so on a shared, busy machine the figures are what the
    core does when it has it (wall-clock rates there include waiting for other processes)."""
    import numpy as np
    import torch

    prev = torch.get_num_threads()
    out: dict[str, dict[str, Any]] = {}
    how = "best of {reps} in process CPU time (time.process_time), one thread"
    try:
        torch.set_num_threads(1)
        a, b = torch.randn(n, n), torch.randn(n, n)
        out["fp32"] = {"gops": 2 * n**3 / _cpu_seconds(lambda: torch.mm(a, b), reps) / 1e9, "unit": "GFLOP/s",
                       "kind": "measured", "method": f"torch.mm {n}x{n} float32, " + how.format(reps=reps)}
        if hasattr(torch, "_int_mm"):
            try:
                qa = torch.randint(-128, 128, (n, n), dtype=torch.int8)
                qb = torch.randint(-128, 128, (n, n), dtype=torch.int8)
                out["int8"] = {"gops": 2 * n**3 / _cpu_seconds(lambda: torch._int_mm(qa, qb), reps) / 1e9,
                               "unit": "GOP/s", "kind": "measured",
                               "method": f"torch._int_mm {n}x{n} int8->int32, " + how.format(reps=reps)}
            except RuntimeError:  # no int8 GEMM kernel in this build
                pass
    finally:
        torch.set_num_threads(prev)
    src = np.ones(copy_mib * 2**20 // 8)
    dst = np.empty_like(src)
    out["bandwidth"] = {"gbs": 2 * src.nbytes / _cpu_seconds(lambda: np.copyto(dst, src), reps) / 1e9,
                        "unit": "GB/s", "kind": "measured",
                        "method": f"numpy copy of {copy_mib} MiB (read + write counted), " + how.format(reps=reps)}
    return out


@functools.cache
def fingerprint(peak: bool = True, device: str = "cpu") -> dict[str, Any]:
    """What a report was measured on. ``peak`` adds the FP32/INT8 micro-benchmarks (~1-2 s) on
    ``device`` (the one the runners use, so that % of peak compares like with like)."""
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_info(), "gpus": gpu_info(), "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "hostname_hash": _host_hash(),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    if peak:
        info["peak_device"] = device
        info["peak_fp32"] = peak_fp32(device=device)
        info["peak_int8"] = peak_int8(device=device)
        info["peak_bf16"] = peak_bf16(device=device)
    return info


def _host_hash() -> str:
    """A short stable id of the host (not its name) so reports from one machine can be grouped."""
    import hashlib

    return hashlib.sha256(platform.node().encode()).hexdigest()[:12]


def efficiency(flops_per_inference: float | None, inferences_per_s: float, hardware: dict[str, Any],
               int8: bool = False) -> dict[str, Any] | None:
    """Effective throughput = FLOPs per inference × inferences/s, and its share of the measured peak."""
    if not flops_per_inference or not inferences_per_s:
        return None
    effective = flops_per_inference * inferences_per_s / 1e9
    peak = hardware.get("peak_int8") if int8 else hardware.get("peak_fp32")
    peak_g = (peak or {}).get("gops" if int8 else "gflops")
    which = ("int8" if int8 else "fp32") + f" on {hardware.get('peak_device', 'cpu')}"
    return {"effective_gops": effective, "peak_gops": peak_g,
            "percent_of_peak": 100.0 * effective / peak_g if peak_g else None,
            "peak": which, "unit": "GOP/s (1 op = 1 FLOP, 2 per MAC)",
            "method": "estimated: FLOPs per inference (batch 1 count) × measured Offline inferences/s (best "
                      "batch size); peak from the hardware micro-benchmark"}
