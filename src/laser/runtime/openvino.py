"""OpenVINO backend (optional extra ``laser[openvino]``): runs ``onnx`` artifacts on OpenVINO's CPU plugin.

Precision is FP32 by default. OpenVINO's CPU plugin otherwise picks bf16 on CPUs with AMX/AVX512-BF16
(this one has them): about 4x faster on ResNet-18 here, but a silent precision drop that breaks export
parity. Ask for it explicitly with ``precision="bf16"`` and validate the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from laser.artifact import Artifact
from laser.errors import BackendError, ConfigError, require
from laser.runtime.base import Runner

PRECISIONS = ("f32", "bf16", "f16")


class OpenVINORunner(Runner):
    backend = "openvino"

    def __init__(self, artifact: Artifact, threads: int | None = None, device: str = "cpu",
                 precision: str = "f32", hint: str = "LATENCY"):
        ov = require("openvino", "openvino")
        super().__init__(artifact, threads, device)
        if artifact.format != "onnx":
            raise BackendError(f"the openvino backend runs onnx artifacts, {artifact.name!r} is {artifact.format}; "
                               "export it to ONNX first (laser export MODEL --to onnx)")
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
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
        return {**super().describe(), "precision": self.precision, "hint": self.hint}

    def close(self) -> None:
        self._request = None
        self.compiled = None
