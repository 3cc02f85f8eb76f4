"""OpenVINO backend (optional extra ``laser[openvino]``): runs ``onnx`` artifacts and OpenVINO IR (``openvino``
artifacts, from ``laser import``) on OpenVINO's CPU plugin.

Precision is FP32 by default. OpenVINO's CPU plugin otherwise picks bf16 on CPUs with AMX/AVX512-BF16
(about 4x faster on ResNet-18 on a Xeon with AMX), but a silent precision drop that breaks export
parity. Ask for it explicitly with ``precision="bf16"`` (or ``"f16"``), or record it in the artifact with
the ``Precision`` stage (``laser.runtime.precision``; the recipe ``bf16`` of ``laser optimize``), which
validates it: ``precision=None`` (the default) runs what the artifact records, else f32. The precision
OpenVINO really compiled is read back; a CPU without the kernels raises instead of running f32.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from laser.artifact import Artifact
from laser.errors import BackendError, ConfigError, require
from laser.runtime.base import Runner

PRECISIONS = ("f32", "bf16", "f16")


def compiled_precision(compiled: Any, asked: str) -> str:
    """The inference precision OpenVINO really compiled ('f32', 'bf16', 'f16'; ``asked`` was the hint): a hint
    the CPU cannot honour is dropped silently, and this says so."""
    got = compiled.get_property("INFERENCE_PRECISION_HINT")
    return str(getattr(got, "get_type_name", lambda: got)())  # ov.Type -> 'f32' / 'bf16' / 'f16'


class OpenVINORunner(Runner):
    backend = "openvino"

    def __init__(self, artifact: Artifact, threads: int | None = None, device: str = "cpu",
                 precision: str | None = None, hint: str = "LATENCY"):
        from laser.runtime.precision import describe_recorded, unavailable_reason

        ov = require("openvino", "openvino")
        super().__init__(artifact, threads, device)
        if artifact.format not in ("onnx", "openvino"):
            raise BackendError(f"the openvino backend runs onnx and openvino artifacts, {artifact.name!r} is "
                               f"{artifact.format}; "
                               "export it to ONNX first (laser export MODEL --to onnx)")
        recorded = describe_recorded(artifact)
        if precision is None:
            if recorded is not None and recorded["backend"] == self.backend:
                precision, self.precision_source = recorded["precision"], recorded["source"]
            else:
                precision, self.precision_source = "f32", "default (f32)"
        else:
            self.precision_source = "argument"
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS} or None (the artifact's), got {precision!r}")
        if precision != "f32" and device == "cpu":
            reason = unavailable_reason(precision, self.backend)
            if reason:
                raise BackendError(f"cannot run {artifact.name!r} in {precision}: {reason}")
        if hint not in ("LATENCY", "THROUGHPUT"):
            raise ConfigError(f"hint must be 'LATENCY' or 'THROUGHPUT', got {hint!r}")
        self.precision, self.hint = precision, hint
        ov_device = device.upper() if device != "cpu" else "CPU"
        core = ov.Core()
        if ov_device not in core.available_devices:
            raise BackendError(f"OpenVINO device {ov_device!r} is not available here; available: "
                               f"{core.available_devices}")
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": hint,
                                  "INFERENCE_PRECISION_HINT": precision}
        if precision == "f32":
            config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = 0  # no on-the-fly int8 of weights either
        try:
            self.compiled = core.compile_model(core.read_model(str(artifact.model_file)), ov_device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError with multi-line op conversion reports
            raise BackendError(f"OpenVINO cannot compile {artifact.model_file.name} of {artifact.name!r}: "
                               f"{str(exc).strip().splitlines()[0][:300]}") from exc
        compiled = compiled_precision(self.compiled, precision)
        if compiled != precision:
            raise BackendError(f"OpenVINO compiled {artifact.name!r} in {compiled}, not the {precision} asked for "
                               f"({self.precision_source}): this {ov_device} has no {precision} kernels")
        self._request = self.compiled.create_infer_request()
        ports = {}
        for port in self.compiled.outputs:
            for name in port.get_names():
                ports[name] = port
        missing = [n for n in self.spec.output_names if n not in ports]
        if missing:
            raise BackendError(f"the OpenVINO model of {artifact.name!r} has no output(s) {missing}; "
                               f"it has {sorted(ports)}")
        self._ports = [(n, ports[n]) for n in self.spec.output_names]

    def _run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self._request.infer(dict(inputs))  # copies outputs out of the request's buffers
        return {name: result[port] for name, port in self._ports}

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "precision": self.precision, "precision_source": self.precision_source,
                "hint": self.hint}

    def close(self) -> None:
        self._request = None
        self.compiled = None
