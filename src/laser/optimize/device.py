"""``laser optimize --on ssh://USER@HOST[:PORT]``: every candidate measured on the device (runtime/ssh.py).

The device is asked once which runtimes import there (onnxruntime → onnx and .ort; openvino → onnx;
executorch → .pte); a candidate in a format it cannot run is listed as skipped, with the reason. PyTorch
eager does not run there, so the reference every speed-up is quoted against is the FP32 ONNX export on the
device. The final side-by-side round runs on the device too: one SSH session per finalist, kept open, each
taking its block of calls in turn (the device times every call with its own clock, the network is not in
the figures). The report's hardware is the device's fingerprint; an emulated device (qemu user mode) labels
every timing ``emulated``, and the verdict says so.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from laser.artifact import Artifact
from laser.errors import ConfigError, DependencyError
from laser.optimize import candidates as cands
from laser.optimize.candidates import Candidate, Recipe

if TYPE_CHECKING:
    from laser.optimize.evaluate import Settings

# format -> the device runtimes that run it, in the order they are preferred
RUNS: dict[str, tuple[str, ...]] = {"onnx": ("onnxruntime", "openvino"), "ort": ("onnxruntime",),
                                    "executorch": ("executorch",)}
DEVICE_FORMATS = ("onnx", "ort", "executorch")  # --on alone: every format a device runtime runs
DEVICE_RECIPES = ("none", "int8-static", "int8-pt2e")
# recipes whose choices are made on this machine's CPU or runtime, so they mean nothing for the device
LOCAL_ONLY: dict[str, str] = {
    "search": "the width search builds its latency table on this machine's ONNX Runtime, not the device's",
    "bf16": "whether bf16 kernels exist is checked on this machine's CPU, not the device's",
    "fp16-openvino": "whether f16 kernels exist is checked on this machine's CPU, not the device's"}
PIP = {"onnxruntime": "onnxruntime", "openvino": "openvino", "executorch": "executorch"}
# The doctor's probes (laser.doctor) time and profile on this machine: under --on they are skipped, named here.
DOCTOR_PROBES = ("thread scaling", "batch throughput", "per-operator profiles of parent and child",
                 "the onnxruntime-vs-openvino gap profile")


@dataclass
class Device:
    """The device an optimize run measures on, as it answered once: fingerprint and runtimes."""

    on: str
    identity: str | None
    hardware: dict[str, Any]
    runtimes: dict[str, str | None]  # name -> version; None: not importable there
    emulated: str | None = None

    @property
    def label(self) -> str:
        cpu = self.hardware.get("cpu", {})
        return f"{self.on} ({cpu.get('arch', '?')}" + (", EMULATED" if self.emulated else "") + ")"

    @property
    def key(self) -> dict[str, Any]:
        """What figures depend on, for the cache key: the device, its CPU, runtimes and emulation."""
        hw = self.hardware
        digest = hashlib.sha256(repr((hw.get("cpu"), sorted(self.runtimes.items()))).encode()).hexdigest()[:12]
        return {"device": self.on, "host": hw.get("hostname_hash"), "hw": digest, "emulated": bool(self.emulated)}

    def has(self, runtime: str) -> bool:
        return bool(self.runtimes.get(runtime))

    def baseline(self) -> Candidate:
        """The FP32 ONNX export on the device's first ONNX runtime: the reference of every speed-up."""
        for runtime in RUNS["onnx"]:
            if self.has(runtime):
                return Candidate("none", "onnx", f"ssh:{runtime}")
        raise DependencyError(f"the device {self.on} has neither onnxruntime nor openvino in its python3, so the "
                              "reference (the FP32 ONNX model on the device) cannot run: run `python3 -m pip install "
                              "onnxruntime numpy` on the device (or set LASER_SSH_PYTHON to a python that has it)")

    def describe_baseline(self) -> str:
        return f"FP32 ONNX on {self.label}"

    def evaluate(self) -> Any:
        from laser.optimize.evaluate import measure_candidate

        return functools.partial(measure_candidate, on=self.on, identity=self.identity)

    def timer(self) -> DeviceTimer:
        return DeviceTimer(self.on, self.identity)


def connect(on: str, identity: str | None) -> Device:
    """Ask the device once (one SSH session) for its fingerprint and the runtimes that import there."""
    from laser.runtime.ssh import probe

    link = probe(on, identity)
    try:
        device = Device(on, identity, link.hardware(), dict(link.found), link.emulated)
    finally:
        link.close()
    device.baseline()  # a device without an ONNX runtime cannot run the reference: said here, before any write
    return device


def _skip(device: Device, fmt: str) -> str | None:
    """Why the device cannot run ``fmt`` (None: it can)."""
    wanted = RUNS.get(fmt)
    if wanted is None:
        return (f"{fmt} does not run on a device: --on measures {', '.join(DEVICE_FORMATS)} artifacts "
                "(PyTorch eager and TorchScript run on this machine only)")
    if not any(device.has(r) for r in wanted):
        found = ", ".join(f"{k} {v}" for k, v in device.runtimes.items() if v) or "none"
        return (f"the device has no {' or '.join(wanted)} for {fmt} artifacts (runtimes there: {found}); "
                f"`python3 -m pip install {PIP[wanted[0]]}` on the device to measure them")
    return None


def plan(device: Device, recipes: Sequence[str | Recipe], formats: Sequence[str], runtimes: Sequence[str] | None,
         base_format: str) -> tuple[list[Candidate], dict[Candidate, str]]:
    """(candidates to measure on the device, candidates listed as skipped -> why): the FP32 ONNX reference first,
    then each recipe in each wanted format on each device runtime that runs it (``runtimes``: a subset)."""
    runtimes = [r.removeprefix("ssh:") for r in runtimes or ()]  # a winner.toml records ssh:RUNTIME
    bad = [r for r in runtimes if r not in PIP]
    if bad:
        raise ConfigError(f"--backends {bad}: with --on they name the device's runtimes: {', '.join(PIP)}")
    base = device.baseline()
    out: list[Candidate] = [base]
    skipped: dict[Candidate, str] = {}
    for r in recipes:
        name, domain = (r.name, r.domain) if isinstance(r, Recipe) else (r, cands.recipe_domain(r, base_format))
        for fmt in cands.formats_for(domain, formats):
            why = _skip(device, fmt) or (LOCAL_ONLY.get(name) if isinstance(name, str) else None)
            if why:
                skipped[Candidate(name, fmt, f"ssh:{RUNS[fmt][0]}" if fmt in RUNS else "ssh")] = why
                continue
            names = [rt for rt in RUNS[fmt] if device.has(rt) and (not runtimes or rt in runtimes)]
            if name in cands.ONLY_ON:
                names = [rt for rt in names if rt in cands.ONLY_ON[name]]
            out += [Candidate(name, fmt, f"ssh:{rt}") for rt in names]
    planned = [Candidate(c.recipe, c.format, c.backend, order=i) for i, c in enumerate(dict.fromkeys([*out, *skipped]))]
    return [c for c in planned if c not in skipped], {c: skipped[c] for c in planned if c in skipped}


class DeviceTimer:
    """finals.Timer on the device: one SSH session per finalist, opened once and kept for every set of rounds
    (``close()`` ends them); in each round every finalist makes ``switch`` untimed then ``block`` timed calls
    there, in turn. Per-round ms per call, each call timed on the device."""

    def __init__(self, on: str, identity: str | None):
        self.on, self.identity = on, identity
        self.runners: dict[str, Any] = {}

    def __call__(self, jobs: Mapping[str, tuple[Artifact, str]], settings: Settings, block: int,
                 switch: int) -> dict[str, list[list[float]]]:
        from laser.optimize.finals import ROUNDS
        from laser.runtime import run

        for name, (art, backend) in jobs.items():
            if name not in self.runners:
                self.runners[name] = run(art, backend="ssh", on=self.on, identity=self.identity,
                                         runtime=backend.partition(":")[2], threads=settings.threads)
        runners = {name: self.runners[name] for name in jobs}
        feeds = {name: r.spec.example_inputs(batch=1, seed=0) for name, r in runners.items()}
        times: dict[str, list[list[float]]] = {name: [] for name in runners}
        budget = max(0.5, 2 * settings.max_seconds) * len(runners)  # seconds per set, as the local timer's
        started = time.monotonic()
        while True:
            for name, r in runners.items():
                ns, _, _, _ = r.time_calls(feeds[name], warmup=switch, warmup_seconds=0.0, min_iters=block,
                                           max_seconds=0.0, iters=block)
                times[name].append([t / 1e6 for t in ns])
            done = len(times[next(iter(times))])
            if done >= 60 or (done >= ROUNDS and time.monotonic() - started >= budget):
                return times

    def close(self) -> None:
        runners, self.runners = self.runners, {}
        for r in runners.values():
            r.close()


def finals_method(device: Device, rounds: int, block: int, switch: int) -> str:
    kind = f"emulated ({device.emulated})" if device.emulated else "measured"
    return (f"{kind}: side by side on {device.on}, one SSH session per finalist: {rounds} interleaved rounds, each "
            f"finalist making {switch} untimed then {block} timed calls at batch 1 per round, each call timed on the "
            "device with time.perf_counter_ns (no SSH in the figures); p50/p90/p99 over all timed calls")
