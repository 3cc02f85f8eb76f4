"""The Runner contract every backend follows: ``runner(inputs) -> outputs`` as numpy dicts."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

import numpy as np

from laser.artifact import Artifact
from laser.errors import ConfigError


def default_threads() -> int:
    """All cores this process may use (respects CPU affinity / cgroup pinning)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


class Runner:
    """Runs one artifact on one backend. Subclasses implement ``_run``; inputs are validated here.

    ``threads`` sets intra-op threads (default: all cores). ``warmup(n)`` runs n calls on example
    inputs so one-time costs (allocation, engine builds, JIT) stay out of measured latency.
    """

    backend: str = "?"
    decoupled: bool = False  # True: ``stream`` yields several outputs for one call (e.g. one a generated step)

    def __init__(self, artifact: Artifact, threads: int | None = None, device: str = "cpu"):
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        self.artifact = artifact
        self.spec = artifact.spec
        self.threads = threads or default_threads()
        self.device = device

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.spec.check_inputs(inputs)
        return self._run(inputs)

    def _run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def stream(self, inputs: Mapping[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """The outputs of one call as they come: a decoupled runner yields several, any other one."""
        yield self(inputs)

    def warmup(self, n: int = 3, batch: int = 1) -> dict[str, np.ndarray]:
        """``n`` untimed calls on Spec example inputs at ``batch`` (every other named dim sized as
        ``ModelSpec.example_inputs`` does), e.g. to keep an engine build out of timings; the last outputs."""
        feeds = self.spec.example_inputs(batch=batch)
        out: dict[str, np.ndarray] = {}
        for _ in range(n):
            out = self._run(feeds)
        return out

    def describe(self) -> dict[str, object]:
        """What this runner is: backend, device/provider, threads. Recorded next to every measurement."""
        return {"backend": self.backend, "device": self.device, "threads": self.threads}

    def close(self) -> None:
        """Release sessions/engines. Runners are also released when garbage-collected."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.artifact.name!r}, threads={self.threads})"
