"""Energy per inference and GOPs/J: measured from counters where they exist, else estimated.

- **RAPL** (Intel/AMD CPUs, Linux powercap): ``/sys/class/powercap/intel-rapl:N/energy_uj`` counts
  microjoules per package and wraps at ``max_energy_range_uj``. Often readable by root only.
- **NVML** (NVIDIA GPUs, ``pynvml`` from nvidia-ml-py): the total-energy counter (mJ, Volta and
  later) or, where that is unsupported, power (mW) sampled every 10 ms and integrated.
- **Estimate** where neither exists (this VM has no RAPL, hwmon, MSR or perf power events):
  joules = watts per busy core × process CPU seconds, the watts per core taken from a small table of
  CPU TDPs keyed by model name, or a stated default. Always labelled ``estimated`` with its model.

A figure is either measured or estimated, never a mix: ``EnergyResult.method`` says which.
"""

from __future__ import annotations

import importlib
import itertools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from laser.errors import ConfigError

POWERCAP = Path("/sys/class/powercap")

# CPU model substring -> (TDP in W, physical cores). Published TDPs; per-core power = TDP / cores.
CPU_TDP: dict[str, tuple[float, int]] = {
    "Xeon(R) CPU E5-2450": (95.0, 8),
    "Xeon(R) CPU E5-2680 v4": (120.0, 14),
    "Xeon(R) Gold 6148": (150.0, 20),
    "Xeon(R) Platinum 8175M": (240.0, 24),
    "Xeon(R) Platinum 8275CL": (240.0, 24),
    "Xeon(R) Platinum 8375C": (300.0, 32),
    "Xeon(R) Platinum 8488C": (350.0, 48),
    "Xeon(R) Platinum 8480": (350.0, 56),
    "EPYC 7763": (280.0, 64),
    "EPYC 9654": (360.0, 96),
    "Core(TM) i7-8700": (65.0, 6),
    "Core(TM) i9-13900K": (125.0, 24),
    "Apple M1": (20.0, 8),
}
# Used when the CPU model is not in the table (e.g. a VM reporting "Intel(R) Xeon(R) Processor"):
# a recent server core under full load draws roughly 5-10 W; we state 7.5 W.
DEFAULT_WATTS_PER_CORE = 7.5


@dataclass(frozen=True)
class EnergyResult:
    joules_per_inference: float
    gops_per_joule: float | None  # giga-operations (1 op = 1 FLOP; a MAC is 2) per joule
    method: str  # "measured" | "estimated"
    source: str  # what was read or assumed, in words
    watts: float  # average power over the run
    seconds: float
    inferences: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- RAPL ----------------------------------------------------------------------------------------

class RaplReader:
    """Package-level RAPL domains under ``root`` (sub-domains such as core/uncore are inside them)."""

    name = "rapl"

    def __init__(self, root: str | Path = POWERCAP):
        self.root = Path(root)
        self._before: dict[str, int] = {}
        self.domains = sorted(p for p in self.root.glob("intel-rapl:*") if p.name.count(":") == 1)

    def available(self) -> bool:
        try:
            return bool(self.domains) and all(isinstance(self._read(d), int) for d in self.domains)
        except (OSError, ValueError):
            return False

    @staticmethod
    def _read(domain: Path, file: str = "energy_uj") -> int:
        return int((domain / file).read_text().strip())

    def read(self) -> dict[str, int]:
        """Counter value (µJ) per domain."""
        return {d.name: self._read(d) for d in self.domains}

    def joules(self, before: Mapping[str, int], after: Mapping[str, int]) -> float:
        """Energy between two readings, summed over domains, handling counter wrap-around."""
        total = 0
        for d in self.domains:
            delta = after[d.name] - before[d.name]
            if delta < 0:  # the counter wrapped at max_energy_range_uj
                delta += self._read(d, "max_energy_range_uj")
            total += delta
        return total / 1e6

    def start(self) -> None:
        self._before = self.read()

    def stop(self) -> float:
        """Joules since ``start``."""
        return self.joules(self._before, self.read())

    def describe(self) -> str:
        names = []
        for d in self.domains:
            try:
                names.append(f"{d.name} ({(d / 'name').read_text().strip()})")
            except OSError:
                names.append(d.name)
        return f"RAPL energy_uj counters under {self.root}: {', '.join(names)}"


# -- NVML ----------------------------------------------------------------------------------------

class NvmlReader:
    """Energy of NVIDIA GPU ``index`` through NVML. ``nvml`` defaults to the ``pynvml`` module."""

    name = "nvml"

    def __init__(self, index: int = 0, nvml: Any = None, sample_s: float = 0.01):
        self.index = index
        self.sample_s = sample_s
        self.nvml = nvml
        self.handle: Any = None
        self.mode = ""
        self._samples: list[tuple[float, float]] = []
        self._start_mj = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def available(self) -> bool:
        try:
            if self.nvml is None:
                self.nvml = importlib.import_module("pynvml")
            self.nvml.nvmlInit()
            self.handle = self.nvml.nvmlDeviceGetHandleByIndex(self.index)
        except Exception:  # no module, no driver, no device: NVML raises its own error types
            return False
        try:
            self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            self.mode = "energy"
        except Exception:
            self.mode = "power"
        return True

    def start(self) -> None:
        """Read the energy counter (mJ), or start sampling power in a background thread."""
        if self.mode == "energy":
            self._start_mj = float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
            return
        # The first sample is taken here, not in the thread, so the integral starts now even when
        # the sampling thread is scheduled late on a busy machine.
        self._samples = [(time.perf_counter(), self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0)]
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self.sample_s):
            self._samples.append((time.perf_counter(), self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0))

    def stop(self) -> float:
        """Joules since ``start``."""
        if self.mode == "energy":
            return (float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)) - self._start_mj) / 1000.0
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        # One last sample so that a run shorter than the sampling period still has an interval.
        self._samples.append((time.perf_counter(), self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0))
        s = self._samples
        # Trapezoidal integral of power (W) over time (s).
        return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in itertools.pairwise(s))

    def describe(self) -> str:
        name = self.nvml.nvmlDeviceGetName(self.handle)
        name = name.decode() if isinstance(name, bytes) else str(name)
        how = ("total energy counter (nvmlDeviceGetTotalEnergyConsumption, mJ)" if self.mode == "energy"
               else f"power sampled every {self.sample_s * 1000:g} ms (nvmlDeviceGetPowerUsage), integrated")
        return f"NVML on GPU {self.index} ({name}): {how}; GPU board only, host CPU not included"


def reader_for(device: str = "cpu", rapl_root: str | Path = POWERCAP, nvml: Any = None) -> Any:
    """A counter reader that works for this device, or None (then energy can only be estimated)."""
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        r: Any = NvmlReader(index, nvml=nvml)
        return r if r.available() else None
    r = RaplReader(rapl_root)
    return r if r.available() else None


def measure_with(reader: Any, fn: Callable[[], int], flops_per_inference: float | None) -> EnergyResult:
    """Run ``fn`` (returns how many inferences it did) between two counter readings."""
    reader.start()
    t0 = time.perf_counter()
    n = fn()
    seconds = time.perf_counter() - t0
    joules = reader.stop()
    if n < 1 or seconds <= 0:
        raise ConfigError(f"energy measurement needs at least one inference, got {n} in {seconds:.3f} s")
    return _result(joules / n, flops_per_inference, "measured", reader.describe(), joules / seconds, seconds, n)


# -- estimate ------------------------------------------------------------------------------------

def watts_per_core(cpu_model: str) -> tuple[float, str]:
    """(W per busy core, where the figure comes from)."""
    for key, (tdp, cores) in CPU_TDP.items():
        if key.lower() in cpu_model.lower():
            return tdp / cores, f"TDP {tdp:g} W / {cores} cores of {key} (table)"
    return DEFAULT_WATTS_PER_CORE, (f"default {DEFAULT_WATTS_PER_CORE:g} W per busy core "
                                    f"(CPU model {cpu_model!r} not in laser's TDP table)")


def estimate(cpu_seconds: float, wall_seconds: float, inferences: int, flops_per_inference: float | None,
             cpu_model: str) -> EnergyResult:
    """Estimated energy from process CPU time: W per core × CPU seconds (= cores busy × wall time)."""
    if inferences < 1 or wall_seconds <= 0:
        raise ConfigError(f"energy estimate needs inferences >= 1 and wall time > 0, got {inferences}, {wall_seconds}")
    w, where = watts_per_core(cpu_model)
    joules = w * cpu_seconds
    source = (f"model: {w:.2f} W per busy core × process CPU time (user+sys, {cpu_seconds:.3f} s over "
              f"{wall_seconds:.3f} s wall = {cpu_seconds / wall_seconds:.2f} cores busy); {where}; "
              "no RAPL or NVML counter readable here")
    return _result(joules / inferences, flops_per_inference, "estimated", source, joules / wall_seconds,
                   wall_seconds, inferences)


def from_latency(lat: Any, flops_per_inference: float | None, cpu_model: str) -> EnergyResult:
    """Estimate from a LatencyResult's CPU and wall time (no extra run)."""
    return estimate(lat.cpu_seconds, lat.wall_seconds, lat.iters * lat.batch_size, flops_per_inference, cpu_model)


def _result(jpi: float, flops: float | None, method: str, source: str, watts: float, seconds: float,
            n: int) -> EnergyResult:
    gopj = (flops / 1e9) / jpi if flops and jpi > 0 else None
    return EnergyResult(joules_per_inference=jpi, gops_per_joule=gopj, method=method, source=source,
                        watts=watts, seconds=seconds, inferences=n)
