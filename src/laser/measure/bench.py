"""``laser.measure(...)``: the five LASER groups for each artifact × backend, as one Report."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from laser.artifact import Artifact
from laser.data import Dataset
from laser.errors import BackendError, ConfigError
from laser.measure import energy as energy_mod
from laser.measure.hardware import efficiency, fingerprint
from laser.measure.latency import LatencyResult, latency, repeated
from laser.measure.report import Report

log = logging.getLogger(__name__)

DEFAULT_EPSILONS = (0.0, 0.007, 0.03, 0.1)


def _artifacts(items: Artifact | str | Sequence[Artifact | str]) -> list[Artifact]:
    from laser.loader import load

    if isinstance(items, (Artifact, str)):
        items = [items]
    arts = [a if isinstance(a, Artifact) else load(a) for a in items]
    if not arts:
        raise ConfigError("measure needs at least one artifact, got none")
    return arts


def _jobs(art: Artifact, wanted: Sequence[str] | None, export: bool,
          cache: dict[tuple[int, str], Artifact]) -> tuple[list[tuple[Artifact, str]], list[str]]:
    """(artifact, backend) pairs to measure for ``art``, and the backends that cannot run it.

    A torch artifact asked to run on a backend for another format (onnxruntime, openvino,
    torchscript) is exported to that format first when ``export`` is set (laser.export validates the
    export against its parent)."""
    from laser.runtime import BACKENDS, BY_NAME_ONLY, backends_for

    runnable = backends_for(art)
    if not wanted or list(wanted) == ["auto"]:
        return [(art, b) for b in runnable[:1]], []
    unknown = [b for b in wanted if b not in BACKENDS]
    if unknown:
        raise ConfigError(f"unknown backend(s) {unknown}; known: {sorted(BACKENDS)}")
    jobs, missed = [], []
    for b in wanted:
        if b in runnable or (b in BY_NAME_ONLY and art.format in BACKENDS[b][1]):
            jobs.append((art, b))
        elif export and art.format == "torch" and b != "echo":
            target = BACKENDS[b][1][0]  # the backend's first format: onnx / torchscript
            if (id(art), target) not in cache:
                from laser.export import export as do_export

                cache[(id(art), target)] = do_export(art, to=target)
            jobs.append((cache[(id(art), target)], b))
        else:
            missed.append(b)
    return jobs, missed


def _ssh_jobs(art: Artifact, wanted: Sequence[str] | None, export: bool,
              cache: dict[tuple[int, str], Artifact]) -> tuple[list[tuple[Artifact, str]], list[str]]:
    """Jobs for an SSH device: ``ssh:RUNTIME`` per wanted runtime (default: the device's first that runs the
    format). A torch artifact is exported to ONNX first when ``export`` is set."""
    from laser.runtime import BACKENDS

    runtimes = [b for b in (wanted or ["auto"]) if b]
    if art.format not in BACKENDS["ssh"][1]:
        if not (export and art.format == "torch"):
            return [], [f"ssh:{r}" for r in runtimes]
        if (id(art), "onnx") not in cache:
            from laser.export import export as do_export

            cache[(id(art), "onnx")] = do_export(art, to="onnx")
        art = cache[(id(art), "onnx")]
    return [(art, f"ssh:{r}") for r in runtimes], []


def _runner_options(backend: str, threads: int | None, device: str, on: str | None,
                    identity: str | None) -> tuple[str, dict[str, Any]]:
    """(backend, options) for ``laser.run``: a job ``ssh:RUNTIME`` runs on the backend ``ssh`` with the device's."""
    options: dict[str, Any] = {"threads": threads}
    if device != "cpu":
        options["device"] = device
    if on:
        backend, runtime = "ssh", backend.partition(":")[2]
        options.update(on=on, identity=identity, runtime=runtime)
    return backend, options


def _dataset(data: Dataset | str | None) -> Dataset | None:
    if data is None or isinstance(data, Dataset):
        return data
    from laser import data as datasets

    return datasets.load(data, "test")


def _torch_reference(art: Artifact, reference: Artifact | None, arts: list[Artifact]) -> Artifact | None:
    """The differentiable model attacks are computed on: the artifact itself if torch, else the
    given reference, else the first torch artifact measured alongside it with the same spec."""
    for cand in (art, reference, *arts):
        if cand is not None and cand.format == "torch" and cand.spec.inputs == art.spec.inputs:
            return cand
    return None


def measure(artifacts: Artifact | str | Sequence[Artifact | str], backends: Sequence[str] | str | None = None,
            data: Dataset | str | None = None, *, reference: Artifact | str | None = None,
            batch_sizes: Sequence[int] = (1,), repeats: int = 3, warmup: int = 10, warmup_seconds: float = 0.3,
            min_iters: int = 30,
            max_seconds: float = 1.0, threads: int | None = None, robustness: bool = False,
            epsilons: Sequence[float] = DEFAULT_EPSILONS, robust_samples: int = 200, peak: bool = True,
            activations: bool = True, export: bool = True, device: str = "cpu", on: str | None = None,
            identity: str | None = None) -> Report:
    """Measure Latency, Accuracy, Size, Energy and Robustness of each artifact on each backend.

    ``backends``: names (or "a,b"); None = the first backend that runs each artifact's format.
    ``data``: a dataset name or Dataset for accuracy and robustness (None: both skipped).
    ``reference``: artifact for agreement figures and the torch model attacks are computed on
    (default: the first artifact when several are measured). The reported latency is the median
    run of ``repeats`` at ``batch_sizes[0]``; every batch size is in ``latency_sweep`` and the best
    throughput among them is the Offline figure. ``export``: a torch artifact asked for on a backend
    of another format (e.g. onnxruntime) is exported to it first and measured as that export.
    ``device``: where runners run ('cpu', 'cuda', 'cuda:1'); energy is read from NVML on CUDA devices.
    ``on``: ``ssh://USER@HOST[:PORT]``: run every artifact on that device instead (``runtime/ssh.py``; ``backends``
    then name the device's runtimes, ``identity`` the key): latency is timed there, the report's hardware is the
    device's fingerprint, and timings under emulation (qemu) are of kind ``emulated``.
    """
    from laser.runtime import run

    _check_request(on, device, batch_sizes)
    arts = _artifacts(artifacts)
    backends = [b.strip() for b in backends.split(",") if b.strip()] if isinstance(backends, str) else backends
    ref = _artifacts(reference)[0] if reference is not None else (arts[0] if len(arts) > 1 else None)
    ds = _dataset(data)
    # A copy: the fingerprint is cached. On an SSH device it is the device's, filled in by its first runner.
    hw = {} if on else dict(fingerprint(peak=peak, device=device))
    lat_kw = {"warmup": warmup, "warmup_seconds": warmup_seconds, "min_iters": min_iters,
              "max_seconds": max_seconds}
    report = Report(artifacts=[], hardware=hw, settings={
        "backends": list(backends or ["auto"]), "data": ds.name if ds else None, "batch_sizes": list(batch_sizes),
        "repeats": repeats, **lat_kw, "threads": threads, "device": device, "robustness": robustness,
        "epsilons": list(epsilons), "reference": ref.name if ref else None})
    exported: dict[tuple[int, str], Artifact] = {}
    for parent in arts:
        jobs, missed = _ssh_jobs(parent, backends, export, exported) if on else _jobs(parent, backends, export, exported)
        if missed:
            report.skipped.append(_skip(parent, missed, f"backend(s) {missed} do not run {parent.format} artifacts; "
                                        "export the artifact to a format they run first (laser export)"
                                        + ("" if export else " or pass export=True")))
        sizes: dict[int, dict[str, Any]] = {}
        for art, backend in jobs:
            from laser.measure.size import size_of

            if id(art) not in sizes:
                sizes[id(art)] = size_of(art, activations=activations)
            # Agreement is against the given reference, else the torch model an export came from.
            agree_ref = ref if ref is not None else (parent if art is not parent else None)
            backend, options = _runner_options(backend, threads, device, on, identity)
            timed = [b for b in batch_sizes if art.spec.accepts_batch(b)]
            untimed = [b for b in batch_sizes if b not in timed]
            if not timed:  # a fixed-batch program (ExecuTorch .pte) asked only for batches it cannot take
                note = f"{art.spec.batch_note(untimed)}; measure it with --batch-sizes {art.spec.fixed_batch}"
                report.skipped.append(_skip(art, [backend], note))
                continue
            with run(art, backend=backend, **options) as runner:
                if on and not hw:
                    hw.update(runner.hardware())  # type: ignore[attr-defined]
                entry = _measure_one(art, runner, sizes[id(art)], ds, agree_ref, hw, timed, repeats, lat_kw,
                                     options)
                if untimed:
                    entry["warnings"].append(art.spec.batch_note(untimed))
                    entry["latency_untimed_batches"] = untimed
                if robustness and ds is not None:
                    entry["robustness"], how = _robustness(art, runner, ds, agree_ref, [parent, *arts], epsilons,
                                                           robust_samples)
                    entry["figures"].update(how)
            report.artifacts.append(entry)
    if not report.artifacts:
        why = "; ".join(f"{s['name']} on {', '.join(s['backends'])}: {s['reason']}" for s in report.skipped)
        raise BackendError(f"nothing was measured: {why}; pick backends that run these formats "
                           "(see laser.runtime.BACKENDS) or export the artifacts first")
    _unique_labels(report.artifacts)
    return report


def _check_request(on: str | None, device: str, batch_sizes: Sequence[int]) -> None:
    if on and device != "cpu":
        raise ConfigError(f"device {device!r} is one of this machine's; the model runs on {on} instead (on its CPU): "
                          "drop --device or --on")
    if not batch_sizes or min(batch_sizes) < 1:
        raise ConfigError(f"batch_sizes must be positive integers, got {list(batch_sizes)}")


def _skip(art: Artifact, backends: list[str], reason: str) -> dict[str, Any]:
    return {"name": art.name, "format": art.format, "backends": backends, "reason": reason}


def _unique_labels(entries: list[dict[str, Any]]) -> None:
    """name@backend, told apart when it repeats: first by the last lineage step (digits-cnn+quantize),
    then by position (#2) when even that repeats (the same model measured twice)."""
    def clashes(labels: list[str]) -> set[str]:
        return {x for x in labels if labels.count(x) > 1}

    base = [Report.label(a) for a in entries]
    labels = list(base)
    for i in [i for i, x in enumerate(base) if x in clashes(base)]:
        last = (entries[i].get("steps") or ["?"])[-1]
        labels[i] = f"{entries[i]['name']}+{last}@{entries[i]['backend']}"
    repeated = clashes(labels)
    for i, a in enumerate(entries):
        label = f"{base[i]}#{i + 1}" if labels[i] in repeated else labels[i]  # the step did not tell them apart
        if label != base[i]:
            a["label"] = label


def _measure_one(art: Artifact, runner: Any, size: dict[str, Any], ds: Dataset | None, ref: Artifact | None,
                 hw: dict[str, Any], batch_sizes: Sequence[int], repeats: int, lat_kw: dict[str, Any],
                 options: dict[str, Any]) -> dict[str, Any]:
    figures: dict[str, dict[str, str]] = {}
    load_before = _load()
    rep = repeated(runner, repeats=repeats, batch_size=batch_sizes[0], **lat_kw)
    remote = getattr(runner, "remote", False)  # the local load average says nothing about a remote device
    notes = _noise_notes(rep.spread_pct, repeats, 0.0 if remote else max(load_before, _load()), hw)
    main: LatencyResult = rep.median_run
    sweep = [main] + [latency(runner, batch_size=b, **lat_kw) for b in batch_sizes[1:]]
    best = max(sweep, key=lambda r: r.throughput_per_s)
    lat = {**main.to_dict(), "p50_runs_ms": rep.p50s, "spread_pct": rep.spread_pct}
    for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "ci95_ms", "std_ms"):
        figures[f"latency.{k}"] = {"unit": "ms per query", "method": main.method, "kind": "measured"}
    figures["latency.throughput_per_s"] = {"unit": "samples/s", "method": main.method, "kind": "measured"}
    figures["latency.spread_pct"] = {"unit": "%", "method": rep.to_dict()["method"], "kind": "measured"}
    figures["latency.p50_runs_ms"] = {"unit": "ms", "method": rep.to_dict()["method"], "kind": "measured"}
    figures["latency_sweep"] = {"unit": "ms per query; samples/s", "method": main.method, "kind": "measured"}
    figures["offline"] = {"unit": "samples/s", "kind": "measured",
                          "method": f"MLPerf Offline: best throughput over batch sizes {list(batch_sizes)}"}
    for k in ("params", "nonzero_params", "macs", "flops", "bytes", "bytes_compressed", "bytes_by_dtype",
              "peak_activation_bytes"):
        if k in size:
            how = size["method"].get(k, "")
            figures[f"size.{k}"] = {"unit": how.rpartition("(")[2].rstrip(")") or "", "method": how,
                                    "kind": how.partition(":")[0] if ":" in how else "counted"}
    figures["size.files"] = {"unit": "B per file", "method": "measured: file sizes on disk", "kind": "measured"}
    accuracy: dict[str, Any] = {}
    if ds is not None:
        from laser.measure.accuracy import agreement, evaluate

        accuracy, how = evaluate(art.task, runner, ds)
        for k in accuracy:
            figures[f"accuracy.{k}"] = how[k]
        if ref is not None and ref is not art:
            from laser.runtime import run

            # Same device as the runner: a torch reference shares its module, which runners move in place.
            local = {k: v for k, v in options.items() if k in ("threads", "device")}  # not the SSH device's
            with run(ref, backend=_first_backend(ref), **local) as ref_runner:
                agree, how = agreement(runner, ref_runner, ds)
            accuracy.update(agree)
            figures.update({f"accuracy.{k}": v for k, v in how.items()})
    flops = size.get("flops")
    e = _energy(runner, main, flops, hw, art, size)
    figures["energy.joules_per_inference"] = {"unit": "J per inference (one sample)", "method": e.source,
                                              "kind": e.method}
    figures["energy.gops_per_joule"] = {"unit": "GOP/J (1 op = 1 FLOP)", "method": "FLOPs per inference / 1e9 "
                                        "/ joules per inference", "kind": e.method}
    figures["energy.watts"] = {"unit": "W", "method": e.source, "kind": e.method}
    eff = efficiency(flops, best.throughput_per_s, hw, int8=_is_int8(art))
    if eff and (eff.get("percent_of_peak") or 0) > 100:
        notes.append(f"effective throughput is {eff['percent_of_peak']:.0f} % of the measured {eff['peak']} peak: "
                     "the peak micro-benchmark ran slower than this model (a busy CPU, or a faster kernel "
                     "path than the matmul used); read % of peak as a lower bound of the true peak's share")
    if eff:
        figures["efficiency"] = {"unit": eff["unit"], "method": eff["method"], "kind": "estimated"}
    if getattr(runner, "emulated", None):
        _label_emulated(figures, notes, runner)
    return {
        "name": art.name, "backend": runner.backend, "format": art.format, "task": art.task,
        "runner": runner.describe(), "steps": [s.op for s in art.lineage],
        "latency": lat, "latency_sweep": [r.to_dict(samples=False) for r in sweep],
        "offline": {"throughput_per_s": best.throughput_per_s, "batch_size": best.batch_size,
                    "p50_ms": best.p50_ms},
        "accuracy": accuracy,
        "size": {k: v for k, v in size.items() if k != "method"},
        "energy": e.to_dict(), "efficiency": eff, "robustness": None, "figures": figures, "warnings": notes,
    }


def _label_emulated(figures: dict[str, dict[str, str]], notes: list[str], runner: Any) -> None:
    """Timings (and what is derived from them) under qemu emulation are of kind ``emulated``, never ``measured``."""
    for key, fig in figures.items():
        if key.startswith(("latency", "offline", "energy", "efficiency")):
            fig["kind"] = "emulated"
    notes.append(f"every timing here is EMULATED ({runner.emulated} on {runner.on}): it says how the artifact runs "
                 "under emulation, not how fast a real device is; outputs are the device architecture's")


def _load() -> float:
    """1-minute load average (runnable processes), 0 where the OS does not report it."""
    import os

    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return 0.0


def _noise_notes(spread_pct: float, repeats: int, load: float, hw: dict[str, Any]) -> list[str]:
    """Say so when latency figures are not trustworthy: runs disagree, or other work shares the CPU."""
    cores = hw.get("cpu", {}).get("usable_cores") or 1
    notes = []
    if repeats > 1 and spread_pct > 10:
        notes.append(f"p50 differed by {spread_pct:.0f} % across {repeats} runs (> 10 %): latency is noisy here; "
                     "the median run is reported. Rerun on an idle machine, with more --repeats, or --threads 1")
    if load > cores:
        notes.append(f"load average {load:.1f} on {cores} usable cores during the runs: other processes compete for "
                     "the CPU, so latency is inflated and unstable (with several intra-op threads, one descheduled "
                     "thread stalls the whole call)")
    return notes


def _first_backend(art: Artifact) -> str:
    from laser.runtime import backends_for

    runnable = backends_for(art)
    if not runnable:
        raise BackendError(f"no backend runs the reference {art.name!r} ({art.format})")
    return runnable[0]


def _is_int8(art: Artifact) -> bool:
    return any("int8" in str(s.params.get("method", "")) or s.op == "quantize" for s in art.lineage)


# OpenVINO's INFERENCE_PRECISION_HINT (runner.describe()["precision"]) -> laser's precision names.
_RUNTIME_PRECISION = {"bf16": "bf16", "f16": "fp16"}


def _energy(runner: Any, lat: LatencyResult, flops: float | None, hw: dict[str, Any], art: Artifact | None = None,
            size: dict[str, Any] | None = None) -> energy_mod.EnergyResult:
    """Measured from RAPL/NVML when a counter is readable, else estimated from the latency run and the
    artifact's per-layer workload (MACs at their precision, bytes moved)."""
    # A remote runner's energy can only be estimated: this machine's counters do not see the device.
    reader = None if getattr(runner, "remote", False) else energy_mod.reader_for(getattr(runner, "device", "cpu"))
    if reader is None:
        from laser.measure.workload import of_artifact

        cpu = hw.get("cpu", {})
        load = of_artifact(art, size) if art is not None else None
        if load is not None:
            load = load.with_precision(_RUNTIME_PRECISION.get(str(runner.describe().get("precision"))))
        return energy_mod.from_latency(lat, flops, cpu.get("model", ""), load, cores=cpu.get("usable_cores"))
    feeds = runner.spec.example_inputs(batch=lat.batch_size)
    n = max(lat.iters, 10)

    def work() -> int:
        for _ in range(n):
            runner(feeds)
        return n * lat.batch_size

    return energy_mod.measure_with(reader, work, flops)


def _robustness(art: Artifact, runner: Any, ds: Dataset, ref: Artifact | None, arts: list[Artifact],
                epsilons: Sequence[float], samples: int) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    from laser.measure.robustness import robustness

    torch_ref = _torch_reference(art, ref, arts)
    return robustness(runner, ds.take(samples) if samples else ds,
                      torch_ref.module if torch_ref is not None else None, epsilons=epsilons,
                      reference_name=torch_ref.name if torch_ref is not None else None)
