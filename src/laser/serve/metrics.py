"""Prometheus metrics of one server (its own registry, so several servers can live in one process).

Label values are bounded: model and version labels only ever name models of the repository (requests
for unknown models are counted under model=""), outcomes come from a fixed list.
"""

from __future__ import annotations

import bisect
import contextlib
import time
from typing import Any

from laser.errors import require

# Seconds: 100 µs .. 30 s, denser where a CPU model's queue and compute times fall.
TIME_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256)


class Metrics:
    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        pc = require("prometheus_client", "serve", "prometheus-client")
        self.registry = pc.CollectorRegistry()
        r = self.registry
        self.requests = pc.Counter("laser_requests", "Inference requests by protocol and outcome.",
                                   ["model", "version", "protocol", "outcome"], registry=r)
        self.request_seconds = Histogram("laser_request_duration_seconds",
                                         "Request time inside the server (decode to encode), seconds.",
                                         ["model", "protocol"], TIME_BUCKETS, r)
        self.queue_seconds = Histogram("laser_queue_duration_seconds",
                                       "Time a request waited in the model queue before compute, seconds.",
                                       ["model", "version"], TIME_BUCKETS, r)
        self.compute_seconds = Histogram("laser_compute_duration_seconds", "Model execution time per batch, seconds.",
                                         ["model", "version"], TIME_BUCKETS, r)
        self.batch_size = Histogram("laser_batch_size", "Samples per model execution (dynamic batching).",
                                    ["model", "version"], BATCH_BUCKETS, r)
        self.queue_depth = pc.Gauge("laser_queue_depth", "Requests waiting in the model queue.",
                                    ["model", "version"], registry=r)
        self.model_ready = pc.Gauge("laser_model_ready", "1 when the model version is READY, else 0.",
                                    ["model", "version"], registry=r)
        self.inflight = pc.Gauge("laser_inflight_requests", "Requests being handled now.", registry=r)
        self.execution = pc.Gauge("laser_model_execution", "1 for how the model version runs its batches, chosen "
                                  "at load from a measured batch-1 call: inline (event loop) or thread.",
                                  ["model", "version", "strategy"], registry=r)
        self._generate = pc.generate_latest
        self._stats: dict[tuple[str, str], ModelStats] = {}
        # Per request: the labelled children looked up once per label set (labels() costs a lock and a
        # tuple build each time); the set is bounded (models x versions x protocols x outcomes).
        self._children: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}

    def count_inflight(self, read: Any) -> None:
        """laser_inflight_requests reads ``read()`` when scraped, instead of being updated per request."""
        self.inflight.set_function(read)

    def new_stats(self, model: str, version: str) -> ModelStats:
        """A fresh statistics record for a model version being loaded (a reload starts from zero, as in
        Triton); it is the one reported until that version is unloaded."""
        self._stats[(model, version)] = stats = ModelStats()
        return stats

    def statistics(self, model: str, version: str) -> dict[str, Any]:
        return self._stats.get((model, version), ModelStats()).to_dict(model, version)

    def observe_request(self, model: str, version: str, protocol: str, outcome: str, seconds: float) -> None:
        key = (model, version, protocol, outcome)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(*key), self.request_seconds.labels(model, protocol))
        children[0].inc()
        children[1].observe(seconds)
        stats = self._stats.get((model, version))
        if stats is not None:
            stats.request(outcome == "success", seconds)

    def forget(self, model: str, version: str, stats: ModelStats | None = None) -> None:
        """Drop the per-version series of an unloaded version (keeps the registry bounded); its statistics
        record goes unless a reload of the same version has replaced it already."""
        if stats is not None and self._stats.get((model, version)) is stats:
            del self._stats[(model, version)]
        for key in [k for k in self._children if k[:2] == (model, version)]:
            del self._children[key]
        for metric in (self.queue_seconds, self.compute_seconds, self.batch_size, self.queue_depth):
            with contextlib.suppress(KeyError):
                metric.remove(model, version)
        self.model_ready.labels(model, version).set(0)
        for strategy in ("inline", "thread"):
            with contextlib.suppress(KeyError):
                self.execution.remove(model, version, strategy)

    def render(self) -> bytes:
        return self._generate(self.registry)


class Histogram:
    """A Prometheus histogram whose observations cost a bisect and two additions: no lock, no per-bucket
    loop (every observation happens on the server's event loop thread). Rendered by the registry like
    prometheus_client's own (cumulative ``_bucket``, ``_count``, ``_sum``)."""

    def __init__(self, name: str, documentation: str, labelnames: list[str], buckets: tuple[float, ...],
                 registry: Any):
        self.name, self.documentation, self.labelnames = name, documentation, list(labelnames)
        self.bounds = tuple(float(b) for b in buckets)
        self._children: dict[tuple[str, ...], _HistogramChild] = {}
        registry.register(self)

    def labels(self, *values: str) -> _HistogramChild:
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = _HistogramChild(self.bounds)
        return child

    def remove(self, *values: str) -> None:
        del self._children[tuple(str(v) for v in values)]

    def describe(self) -> list[Any]:
        from prometheus_client.core import HistogramMetricFamily

        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> list[Any]:
        from prometheus_client.core import HistogramMetricFamily
        from prometheus_client.utils import floatToGoString

        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        edges = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        for key, child in list(self._children.items()):
            running, buckets = 0, []
            for edge, count in zip(edges, child.counts):
                running += count
                buckets.append((edge, running))
            family.add_metric(list(key), buckets, child.sum)
        return [family]


class _HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket (not cumulative); the last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value


class ModelStats:
    """Triton's statistics extension for one model version: counts and cumulative nanoseconds.

    Per request: success / fail (time inside the server), queue, and the compute_input / compute_infer /
    compute_output time of the batch it ran in; per batch size: the same three per execution.
    compute_input is joining the requests' tensors into the batch, compute_infer the model call,
    compute_output slicing each request's rows out of the batch outputs."""

    KEYS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")

    def __init__(self) -> None:
        self.totals = {k: [0, 0] for k in self.KEYS}  # [count, ns]
        self.batches: dict[int, list[list[int]]] = {}  # batch size -> [[count, ns]] x (input, infer, output)
        self.inference_count = 0  # samples run successfully
        self.execution_count = 0  # model executions (batches)
        self.last_inference = 0  # ms since the epoch

    def _add(self, key: str, seconds: float, count: int = 1) -> None:
        t = self.totals[key]
        t[0] += count
        t[1] += int(seconds * 1e9) * count

    def request(self, ok: bool, seconds: float) -> None:
        self._add("success" if ok else "fail", seconds)

    def queued(self, seconds: float) -> None:
        self._add("queue", seconds)

    def executed(self, size: int, requests: int, input_s: float, infer_s: float, output_s: float) -> None:
        """One successful model execution of ``size`` samples for ``requests`` requests."""
        self.inference_count += size
        self.execution_count += 1
        self.last_inference = int(time.time() * 1000)
        rows = self.batches.setdefault(size, [[0, 0], [0, 0], [0, 0]])
        for i, (key, seconds) in enumerate(zip(self.KEYS[3:], (input_s, infer_s, output_s))):
            self._add(key, seconds, requests)
            rows[i][0] += 1
            rows[i][1] += int(seconds * 1e9)

    def to_dict(self, model: str, version: str) -> dict[str, Any]:
        def duration(pair: list[int]) -> dict[str, int]:
            return {"count": pair[0], "ns": pair[1]}

        zero = {"count": 0, "ns": 0}
        return {
            "name": model, "version": version, "last_inference": self.last_inference,
            "inference_count": self.inference_count, "execution_count": self.execution_count,
            "inference_stats": {**{k: duration(v) for k, v in self.totals.items()}, "cache_hit": zero,
                                "cache_miss": zero},
            "batch_stats": [{"batch_size": size, "compute_input": duration(r[0]), "compute_infer": duration(r[1]),
                             "compute_output": duration(r[2])} for size, r in sorted(self.batches.items())],
            "memory_usage": [],
        }
