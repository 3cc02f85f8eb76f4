"""Facts about this machine that timings depend on: CPU model, ISA flags, cores (the one /proc/cpuinfo reader).

Runtime code needs them (``backend="auto"`` caches its decisions per machine), so they live on the
runtime floor; ``laser.measure.hardware`` adds GPUs and peak throughput for reports, and the doctor
reads the flags.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path
from typing import Any

from laser.runtime.base import default_threads

CPUINFO = "/proc/cpuinfo"
# CPU flags that matter for inference speed (from /proc/cpuinfo), in the order we list them.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve")


def read_cpuinfo(cpuinfo: str | os.PathLike[str] = CPUINFO) -> tuple[str, set[str]]:
    """(CPU model, every CPU flag): the first "model name" and "flags" (x86) or "Features" (Arm) lines.
    Without a model name (or without the file) the model is the platform's processor or machine name."""
    model, flags = "", set[str]()
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and not model:
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def cpu_flags(cpuinfo: str | os.PathLike[str] = CPUINFO) -> set[str]:
    """Every flag the CPU reports (empty when /proc/cpuinfo is unreadable)."""
    return read_cpuinfo(cpuinfo)[1]


def cpu_info(cpuinfo: str | os.PathLike[str] = CPUINFO) -> dict[str, Any]:
    """CPU model, logical cores (usable by this process), ISA flags relevant to inference."""
    model, flags = read_cpuinfo(cpuinfo)
    return {"model": model, "logical_cores": os.cpu_count() or 1, "usable_cores": default_threads(),
            "isa": [f for f in ISA_FLAGS if f in flags], "arch": platform.machine()}


@functools.cache
def machine() -> str:
    """A short fingerprint of what makes timings comparable: CPU model, usable cores, OS/arch."""
    return f"{read_cpuinfo()[0]} x{default_threads()} {platform.system()}-{platform.machine()}"
