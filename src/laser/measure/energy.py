"""Energy per inference and GOPs/J: measured from counters where they exist, else estimated.

- **RAPL** (Intel/AMD CPUs, Linux powercap): ``/sys/class/powercap/intel-rapl:N/energy_uj`` counts
  microjoules per package and wraps at ``max_energy_range_uj``. Often readable by root only.
- **NVML** (NVIDIA GPUs, ``pynvml`` from nvidia-ml-py): the total-energy counter (mJ, Volta and
  later) or, where that is unsupported, power (mW) sampled every 10 ms and integrated.
- **Estimate** where neither exists (this VM has no RAPL, hwmon, MSR or perf power events): a model
  of what the energy of one inference depends on (``estimate``), labelled ``estimated (model)``:

      E = compute + memory + static, capped at cores used × W per core × wall time per inference
      compute = Σ_layers MACs × energy per MAC at the layer's precision (fp32 / fp16 / bf16 / int8)
      memory  = Σ_layers bytes moved × energy per byte of the level they come from (DRAM, or cache
                when the working set fits in the last-level cache); weights read once per batch
      static  = STATIC_FRACTION × cores used × W per core × wall time per inference (p50 / batch)
      cores used = the runtime's threads (at most the usable cores), lowered to the cores the
                process kept busy on average (CPU time / wall time) when that is less: on a shared,
                loaded machine the rest of the wall time belongs to other processes

  The per-op and per-byte figures are Horowitz's 45 nm ones scaled to a modern node by stated
  factors; the W per core come from a small table of CPU TDPs keyed by model name, or a stated
  default. Process CPU time never *raises* the figure: spinning runtime threads are not work, and a
  figure built on them implied more power than the machine has. The cap makes the estimate
  physically bounded whatever the counts say. Every parameter is in ``model``.

A figure is either measured or estimated, never a mix: ``EnergyResult.method`` says which.
"""

from __future__ import annotations

import importlib
import itertools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
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
    watts: float  # average power over the run (estimated: over one inference's wall time)
    seconds: float
    inferences: int
    model: dict[str, Any] | None = None  # estimated: the model's parameters, inputs and terms; measured: None

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

# Energy per operation at 45 nm, 0.9 V: M. Horowitz, "Computing's energy problem (and what we can do
# about it)", ISSCC 2014, Fig. 1.1.9 (pJ). A MAC is one multiply + one add at the accumulator width:
# fp32 3.7 + 0.9; fp16 1.1 + 0.4; int8 0.2 multiply + 0.1 for the 32-bit integer add that int8 GEMM
# kernels (VNNI, QLinearConv) accumulate in (an 8-bit add, 0.03 pJ, would understate it). bfloat16 is
# not in the table: its 8-bit-mantissa multiplier is smaller than fp16's and it accumulates in fp32,
# which roughly cancels, so it is given the fp16 figure.
PJ_PER_MAC_45NM: dict[str, float] = {"fp32": 3.7 + 0.9, "fp16": 1.1 + 0.4, "bf16": 1.1 + 0.4, "int8": 0.2 + 0.1}
# Memory per byte at 45 nm (same source): SRAM 1 MB ~100 pJ per 64-bit access (the size of an L2 / a
# last-level-cache slice; an 8 KB SRAM is ~10 pJ), DRAM 1.3-2.6 nJ per 64-bit access (midpoint 1.95 nJ).
PJ_PER_BYTE_45NM: dict[str, float] = {"cache": 100 / 8, "dram": 1950 / 8}
# 45 nm -> a current (5-7 nm class) node, stated assumptions: arithmetic and SRAM ~4x less energy per
# operation (the order of the CMOS scaling in A. Stillmaker, B. Baas, "Scaling equations for the accurate
# prediction of CMOS device performance from 180 nm to 7 nm", Integration 58, 2017); DRAM ~2x less (its
# energy is mostly the I/O interface, which scales slowly): ~120 pJ/B = ~15 pJ/bit, DDR4/DDR5 class.
LOGIC_SCALE = 0.25
DRAM_SCALE = 0.5
# Static + idle share of a busy core's power (leakage, clock tree, uncore, instruction delivery: all
# that does not scale with the MACs and bytes counted above), drawn for the whole wall time. Servers
# draw about half of their peak power when idle (L. A. Barroso, U. Hölzle, "The case for energy-
# proportional computing", IEEE Computer 40(12), 2007); we state 50 %.
STATIC_FRACTION = 0.5
# Last-level cache assumed when /sys does not say (bytes).
DEFAULT_LLC_BYTES = 8 * 2**20


def watts_per_core(cpu_model: str) -> tuple[float, str]:
    """(W per busy core, where the figure comes from)."""
    for key, (tdp, cores) in CPU_TDP.items():
        if key.lower() in cpu_model.lower():
            return tdp / cores, f"TDP {tdp:g} W / {cores} cores of {key} (table)"
    return DEFAULT_WATTS_PER_CORE, (f"default {DEFAULT_WATTS_PER_CORE:g} W per busy core "
                                    f"(CPU model {cpu_model!r} not in laser's TDP table)")


def last_level_cache(root: str | Path = "/sys/devices/system/cpu/cpu0/cache") -> tuple[int, str]:
    """(bytes of the largest cache level of CPU 0, where that comes from)."""
    best = (0, 0)
    for d in Path(root).glob("index*"):
        try:
            level = int((d / "level").read_text().strip())
            text = (d / "size").read_text().strip().upper()
            kind = (d / "type").read_text().strip() if (d / "type").exists() else "Unified"
        except (OSError, ValueError):
            continue
        mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        try:
            size = int(text.rstrip("KMG")) * mult
        except ValueError:
            continue
        if kind != "Instruction" and (level, size) > best:
            best = (level, size)
    if best[1]:
        return best[1], f"L{best[0]} {best[1] / 2**20:g} MiB ({root})"
    return DEFAULT_LLC_BYTES, f"default {DEFAULT_LLC_BYTES / 2**20:g} MiB (no cache sizes under {root})"


def estimate(seconds_per_inference: float, workload: Any, cpu_model: str, cores: float, *, wall_seconds: float,
             inferences: int, batch_size: int = 1, flops_per_inference: float | None = None,
             llc: tuple[int, str] | None = None, cpu_seconds: float | None = None) -> EnergyResult:
    """Estimated energy of one inference (one sample): compute + memory + static, bounded by the power
    of the cores used over the wall time of one inference (see the module docstring).

    ``seconds_per_inference``: wall time of one sample (p50 of a query / its batch size).
    ``workload``: a ``laser.measure.workload.Workload`` (per-layer MACs, precision, bytes at batch 1),
    or None (then only the static term is known, and the source says so).
    ``cores``: cores the inference holds (its threads, at most the usable cores; fewer when the
    process kept fewer busy: see ``from_latency``), > 0.
    ``cpu_seconds``: recorded for the reader."""
    if inferences < 1 or wall_seconds <= 0 or seconds_per_inference <= 0:
        raise ConfigError(f"energy estimate needs inferences >= 1 and wall times > 0, got {inferences}, "
                          f"{wall_seconds}, {seconds_per_inference}")
    if cores <= 0:
        raise ConfigError(f"energy estimate needs cores > 0, got {cores}")
    batch_size = max(1, int(batch_size))
    w_core, where = watts_per_core(cpu_model)
    llc_bytes, llc_where = llc if llc is not None else last_level_cache()
    p_max = cores * w_core
    cap = p_max * seconds_per_inference
    static = STATIC_FRACTION * cap
    pj_mac = {k: v * LOGIC_SCALE for k, v in PJ_PER_MAC_45NM.items()}
    pj_byte = {"cache": PJ_PER_BYTE_45NM["cache"] * LOGIC_SCALE, "dram": PJ_PER_BYTE_45NM["dram"] * DRAM_SCALE}
    macs = workload.macs_by_precision() if workload is not None else {}
    compute = sum(n * pj_mac.get(p, pj_mac["fp32"]) for p, n in macs.items()) * 1e-12
    moved = {"weights_cache": 0.0, "weights_dram": 0.0, "activations_cache": 0.0, "activations_dram": 0.0}
    if workload is not None:
        # Weights stay cache-resident between inferences when they all fit; else they stream from DRAM.
        # Weights are read once per batch, so per sample they cost 1 / batch of their bytes.
        w_level = "cache" if workload.weight_bytes <= llc_bytes else "dram"
        for layer in workload.layers:
            moved[f"weights_{w_level}"] += layer.weight_bytes / batch_size
            a_level = "cache" if layer.activation_bytes * batch_size <= llc_bytes else "dram"
            moved[f"activations_{a_level}"] += layer.activation_bytes
    memory = sum(b * pj_byte[k.rpartition("_")[2]] for k, b in moved.items()) * 1e-12
    uncapped = compute + memory + static
    joules = min(uncapped, cap)
    capped = uncapped > cap
    model = {
        "formula": "min(compute + memory + static, cores × W per core × seconds per inference)",
        "pj_per_mac": pj_mac, "pj_per_byte": pj_byte, "pj_per_mac_45nm": dict(PJ_PER_MAC_45NM),
        "pj_per_byte_45nm": dict(PJ_PER_BYTE_45NM), "logic_scale": LOGIC_SCALE, "dram_scale": DRAM_SCALE,
        "static_fraction": STATIC_FRACTION, "watts_per_core": w_core, "watts_per_core_source": where,
        "cores": cores, "max_watts": p_max, "seconds_per_inference": seconds_per_inference,
        "batch_size": batch_size, "llc_bytes": llc_bytes, "llc_source": llc_where,
        "macs_by_precision": macs, "bytes_moved": {k: round(v) for k, v in moved.items()},
        "joules": {"compute": compute, "memory": memory, "static": static, "cap": cap},
        "capped": capped, "workload": workload.source if workload is not None else None,
        "cpu_seconds": cpu_seconds,
        "sources": "Horowitz ISSCC 2014 (45 nm pJ per op / per 64-bit access); node scaling after Stillmaker & "
                   "Baas 2017 (assumed factors); static share after Barroso & Hölzle 2007",
    }
    mix = ", ".join(f"{n / 1e6:.3g} M MACs {p} at {pj_mac.get(p, pj_mac['fp32']):.3g} pJ" for p, n in macs.items())
    mem = ", ".join(f"{b / 1e3:.3g} kB {k.replace('_', ' from ')}" for k, b in moved.items() if b)
    source = (f"estimated (model): compute {compute * 1e6:.3g} µJ ({mix or 'MACs unknown'}) + memory "
              f"{memory * 1e6:.3g} µJ ({mem or 'bytes unknown'}; cache {pj_byte['cache']:.3g} pJ/B, DRAM "
              f"{pj_byte['dram']:.3g} pJ/B, LLC {llc_where}) + static {static * 1e6:.3g} µJ "
              f"({STATIC_FRACTION:.0%} of {cores:.3g} cores × {w_core:.3g} W over {seconds_per_inference * 1e3:.3g} ms "
              f"per inference){'; capped' if capped else ''} at {p_max:.3g} W × wall time = {cap * 1e6:.3g} µJ; "
              f"{where}; Horowitz ISSCC 2014 45 nm figures × {LOGIC_SCALE:g} (DRAM × {DRAM_SCALE:g}); "
              f"workload {workload.source if workload is not None else 'unknown: static term only'}; "
              "no RAPL or NVML counter readable here")
    return _result(joules, flops_per_inference, "estimated", source, joules / seconds_per_inference,
                   wall_seconds, inferences, model)


def from_latency(lat: Any, flops_per_inference: float | None, cpu_model: str, workload: Any = None,
                 cores: int | None = None, llc: tuple[int, str] | None = None) -> EnergyResult:
    """Estimate from a LatencyResult (no extra run): one inference takes p50 / batch size of wall time
    on the runtime's threads, at most ``cores`` (the usable cores), and at most the cores the process
    kept busy on average (CPU time / wall time of the run) when the machine was shared. CPU time can
    only lower the figure: inflated CPU time (spinning threads) changes nothing."""
    from laser.runtime.base import default_threads

    usable = cores or default_threads()
    threads = min(lat.threads or usable, usable)
    busy = lat.cpu_seconds / lat.wall_seconds if lat.cpu_seconds > 0 and lat.wall_seconds > 0 else None
    held = min(threads, busy) if busy else threads
    batch = max(1, lat.batch_size)
    e = estimate(lat.p50_ms / 1e3 / batch, workload, cpu_model, held, wall_seconds=lat.wall_seconds,
                 inferences=lat.iters * batch, batch_size=batch, flops_per_inference=flops_per_inference,
                 llc=llc, cpu_seconds=lat.cpu_seconds)
    assert e.model is not None
    e.model.update({"threads": threads, "usable_cores": usable, "busy_cores": busy})
    how = (f"cores held: {held:.3g} = min({threads} threads, {busy:.3g} busy on average = CPU time / wall time)"
           if busy is not None else f"cores held: {threads} threads (no CPU time recorded)")
    return replace(e, source=e.source.replace("; no RAPL", f"; {how}; no RAPL"))


def _result(jpi: float, flops: float | None, method: str, source: str, watts: float, seconds: float,
            n: int, model: dict[str, Any] | None = None) -> EnergyResult:
    gopj = (flops / 1e9) / jpi if flops and jpi > 0 else None
    return EnergyResult(joules_per_inference=jpi, gops_per_joule=gopj, method=method, source=source,
                        watts=watts, seconds=seconds, inferences=n, model=model)
