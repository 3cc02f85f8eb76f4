"""Prometheus metrics of one server (its own registry, so several servers can live in one process).

Label values are bounded: model and version labels only ever name models of the repository (requests
for unknown models are counted under model=""), outcomes come from a fixed list.
"""

from __future__ import annotations

import contextlib

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
        self.request_seconds = pc.Histogram("laser_request_duration_seconds",
                                            "Request time inside the server (decode to encode), seconds.",
                                            ["model", "protocol"], buckets=TIME_BUCKETS, registry=r)
        self.queue_seconds = pc.Histogram("laser_queue_duration_seconds",
                                          "Time a request waited in the model queue before compute, seconds.",
                                          ["model", "version"], buckets=TIME_BUCKETS, registry=r)
        self.compute_seconds = pc.Histogram("laser_compute_duration_seconds",
                                            "Model execution time per batch, seconds.",
                                            ["model", "version"], buckets=TIME_BUCKETS, registry=r)
        self.batch_size = pc.Histogram("laser_batch_size", "Samples per model execution (dynamic batching).",
                                       ["model", "version"], buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = pc.Gauge("laser_queue_depth", "Requests waiting in the model queue.",
                                    ["model", "version"], registry=r)
        self.model_ready = pc.Gauge("laser_model_ready", "1 when the model version is READY, else 0.",
                                    ["model", "version"], registry=r)
        self.inflight = pc.Gauge("laser_inflight_requests", "Requests being handled now.", registry=r)
        self.execution = pc.Gauge("laser_model_execution", "1 for how the model version runs its batches, chosen "
                                  "at load from a measured batch-1 call: inline (event loop) or thread.",
                                  ["model", "version", "strategy"], registry=r)
        self._generate = pc.generate_latest

    def observe_request(self, model: str, version: str, protocol: str, outcome: str, seconds: float) -> None:
        self.requests.labels(model, version, protocol, outcome).inc()
        self.request_seconds.labels(model, protocol).observe(seconds)

    def forget(self, model: str, version: str) -> None:
        """Drop the per-version series of an unloaded version (keeps the registry bounded)."""
        for metric in (self.queue_seconds, self.compute_seconds, self.batch_size, self.queue_depth):
            with contextlib.suppress(KeyError):
                metric.remove(model, version)
        self.model_ready.labels(model, version).set(0)
        for strategy in ("inline", "thread"):
            with contextlib.suppress(KeyError):
                self.execution.remove(model, version, strategy)

    def render(self) -> bytes:
        return self._generate(self.registry)
