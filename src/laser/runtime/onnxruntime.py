"""ONNX Runtime backend: runs ``onnx`` and ``ort`` artifacts.

Execution providers: TensorRT, then CUDA, then CPU, each chosen only when this onnxruntime build
offers it (``onnxruntime.get_available_providers()``), with the options below. What the session really
uses is read back from it (a provider whose libraries are missing is dropped by ONNX Runtime at session
creation) and reported by ``describe()``.

The session is created once in ``__init__`` with every option set (threads, graph optimisation level
ALL), so a call is one ``session.run``: the wrapper adds only the Spec check (a few microseconds).
TensorRT builds its engine on the first run of each input shape: ``warmup()`` runs that build so it
stays out of measured latency, and engines are cached on disk (``trt_engine_cache_path``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from laser.artifact import Artifact
from laser.errors import BackendError, ConfigError, require
from laser.runtime.base import Runner

log = logging.getLogger("laser.runtime")

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
# Largest batch a TensorRT optimisation profile covers when the Spec's batch dim is dynamic; other
# dynamic dims (sequence length ...) get DYNAMIC_DIM_MAX. Larger inputs make TensorRT rebuild the engine.
TRT_MAX_BATCH = 32
DYNAMIC_DIM_MAX = 512
OPTIMIZATION = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                "all": "ORT_ENABLE_ALL"}


def cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "laser" / "tensorrt"


def default_providers(artifact: Artifact, device: str = "auto") -> list[str | tuple[str, dict[str, Any]]]:
    """The providers to ask for, best first, with their options, among those this build offers.

    ``device``: 'auto' (GPU providers when offered, else CPU), 'cpu', 'cuda' or 'cuda:N'.
    """
    ort = require("onnxruntime", "onnx")
    available = ort.get_available_providers()
    if device == "cpu":
        return [CPU]
    device_id = int(device.partition(":")[2] or 0) if device.startswith("cuda") else 0
    chosen: list[str | tuple[str, dict[str, Any]]] = []
    # onnxruntime-gpu lists TensorRT even when libnvinfer is absent; asking for it then only prints an
    # EP error and falls back, so ask only when the library loads.
    if TENSORRT in available and artifact.format == "onnx" and tensorrt_loadable():
        chosen.append((TENSORRT, tensorrt_options(artifact, device_id)))
    if CUDA in available:
        # use_tf32=0: FP32 means FP32 (TF32 convolutions drift ~1e-3, seen on an H200); opt in for speed.
        chosen.append((CUDA, {"device_id": device_id, "cudnn_conv_algo_search": "EXHAUSTIVE",
                              "arena_extend_strategy": "kSameAsRequested", "use_tf32": 0}))
    if device.startswith("cuda") and not chosen:
        raise BackendError(f"device {device!r} asked for, but this onnxruntime offers only {available}; "
                           "install onnxruntime-gpu on a CUDA machine, or use device='cpu'")
    return [*chosen, CPU]


def tensorrt_loadable() -> bool:
    """True when TensorRT's runtime library (libnvinfer) can be loaded by this process."""
    import ctypes

    for name in ("libnvinfer.so.10", "libnvinfer.so"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def tensorrt_options(artifact: Artifact, device_id: int = 0) -> dict[str, Any]:
    """TensorRT provider options: FP32 (no silent FP16), engine + timing caches on disk, and one
    optimisation profile covering batch 1..TRT_MAX_BATCH when the Spec has dynamic dims."""
    opts: dict[str, Any] = {"device_id": device_id, "trt_fp16_enable": False, "trt_engine_cache_enable": True,
                            "trt_engine_cache_path": str(cache_dir()), "trt_timing_cache_enable": True,
                            "trt_max_workspace_size": 2 << 30}
    if any(t.dynamic_dims for t in artifact.spec.inputs):
        def shapes(batch: int, other: int) -> str:
            return ",".join(f"{t.name}:" + "x".join(str(d) for d in t.concrete_shape(
                {d: other for d in t.dynamic_dims.values() if d != "batch"}, batch=batch)) for t in artifact.spec.inputs)

        opts.update(trt_profile_min_shapes=shapes(1, 1), trt_profile_opt_shapes=shapes(1, 128),
                    trt_profile_max_shapes=shapes(TRT_MAX_BATCH, DYNAMIC_DIM_MAX))
    return opts


class OnnxRuntimeRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, artifact: Artifact, threads: int | None = None, device: str = "auto",
                 providers: Sequence[str | tuple[str, dict[str, Any]]] | None = None,
                 optimization: str = "all", extra_outputs: Sequence[str] = ()):
        ort = require("onnxruntime", "onnx")
        super().__init__(artifact, threads, device)
        if artifact.format not in ("onnx", "ort"):
            raise BackendError(f"the onnxruntime backend runs onnx and ort artifacts, {artifact.name!r} is "
                               f"{artifact.format}; export it first: laser.export.export(artifact, to='onnx')")
        from laser.runtime.precision import refuse_recorded

        refuse_recorded(artifact, self.backend)  # a bf16 artifact is not run in f32 under its name
        if optimization not in OPTIMIZATION:
            raise ConfigError(f"optimization must be one of {sorted(OPTIMIZATION)}, got {optimization!r}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1  # one model at a time: parallelism is inside operators
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION[optimization])
        self.optimization = optimization
        so.log_severity_level = 3  # errors only: a dropped provider is reported by describe(), not stderr noise
        asked = list(providers) if providers is not None else default_providers(artifact, device)
        self._check_providers(asked, ort.get_available_providers())
        model = artifact.model_file
        try:
            self.session = ort.InferenceSession(str(model), so, providers=asked)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented types
            raise BackendError(f"onnxruntime cannot load {model.name} of {artifact.name!r}: "
                               f"{str(exc).splitlines()[0][:300]}") from exc
        self.providers = self.session.get_providers()
        self.device = "cpu" if self.providers[0] == CPU else f"cuda:{_device_id(asked)}"
        self._asked = [p if isinstance(p, str) else p[0] for p in asked]
        self.output_names = [*self.spec.output_names, *extra_outputs]
        graph_outputs = {o.name for o in self.session.get_outputs()}
        missing = [n for n in self.output_names if n not in graph_outputs]
        if missing:
            raise BackendError(f"{model.name} of {artifact.name!r} has no output(s) {missing}; the graph's "
                               f"outputs are {sorted(graph_outputs)}")

    @staticmethod
    def _check_providers(asked: Sequence[Any], available: Sequence[str]) -> None:
        for p in asked:
            name = p if isinstance(p, str) else p[0]
            if name not in available:
                raise BackendError(f"execution provider {name!r} is not in this onnxruntime build, which offers "
                                   f"{list(available)}; pick one of those or install the build that has it")
            if name == TENSORRT and not tensorrt_loadable():
                raise BackendError("TensorrtExecutionProvider is in this onnxruntime build, but TensorRT's library "
                                   "(libnvinfer.so.10) cannot be loaded; install TensorRT 10 (e.g. `pip install "
                                   "tensorrt`) and put its libraries on LD_LIBRARY_PATH, or ask for "
                                   "CUDAExecutionProvider instead")

    def _run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # String tensors: laser passes object arrays of UTF-8 bytes; ORT reads only str elements (bytes
        # elements silently read as no match), and answers str.
        feeds = {k: _as_text(v) if v.dtype.kind == "O" else v for k, v in inputs.items()}
        values = self.session.run(self.output_names, feeds)
        return {k: _as_bytes(v) if v.dtype.kind == "O" else v for k, v in zip(self.output_names, values)}

    def describe(self) -> dict[str, object]:
        dropped = [p for p in self._asked if p not in self.providers]
        out: dict[str, object] = {**super().describe(), "providers": list(self.providers),
                                  "graph_optimization": self.optimization}
        if dropped:
            out["providers_unavailable"] = dropped  # offered by the build but failed to initialise here
        return out

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]


def _as_text(a: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda b: b.decode() if isinstance(b, bytes) else b, otypes=[object])(a) if a.size else a


def _as_bytes(a: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda t: t.encode() if isinstance(t, str) else t, otypes=[object])(a) if a.size else a


def _device_id(asked: Sequence[Any]) -> int:
    for p in asked:
        if not isinstance(p, str) and "device_id" in p[1]:
            return int(p[1]["device_id"])
    return 0
