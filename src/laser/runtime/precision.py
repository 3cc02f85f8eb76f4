"""Inference precision chosen at run time (bf16 / fp16 on OpenVINO's CPU plugin), recorded in the artifact.

OpenVINO runs an FP32 ONNX graph in bfloat16 (or float16) when asked with ``INFERENCE_PRECISION_HINT``
and the CPU has the kernels (AMX-BF16 / AVX512-BF16; AMX-FP16 / AVX512-FP16), which OpenVINO reports
as "BF16" / "FP16" in ``OPTIMIZATION_CAPABILITIES``. The model file does not change: the precision is a
property of how it runs. ``Precision`` records it in a lineage step of a new artifact (same ONNX file)::

    >>> bf = laser.Precision("bf16", data="digits")(laser.load("digits-cnn"))
    >>> laser.run(bf, backend="openvino").describe()["precision"]      # 'bf16' (from the manifest)

so a bundle that won ``laser optimize`` in bf16 runs (and is served) in bf16, and says so. The stage
is validated against its FP32 parent like an export (``laser.export.validate.compare``, both on
OpenVINO, the parent in f32), with a tolerance sized for a 8-bit mantissa (``TOLERANCE``). Where the
CPU has no such kernels it raises ``PrecisionUnavailable`` with the reason; OpenVINO itself would
silently run f32. Runtimes that cannot honour a recorded precision (onnxruntime) refuse the artifact
instead of running it in f32 under a bf16 name.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, ClassVar

from laser.artifact import Artifact, Step
from laser.errors import BackendError, ConfigError, ParityError
from laser.stages import Stage

OP = "precision"
PRECISIONS = ("bf16", "f16")
BACKENDS = ("openvino",)
# OpenVINO CPU capability that says the plugin has kernels for the precision
CAPABILITY = {"bf16": "BF16", "f16": "FP16"}
# The CPU flags that provide them (only quoted in messages; the capability list decides)
CPU_FLAGS = {"bf16": ("amx_bf16", "avx512_bf16"), "f16": ("amx_fp16", "avx512_fp16")}
# bf16 keeps 8 mantissa bits (rel. step 2^-8 = 0.4 %); after tens of layers the logits drift a few %
TOLERANCE = {"bf16": {"max_rel_error": 0.08, "top1_agreement": 0.95},
             "f16": {"max_rel_error": 0.02, "top1_agreement": 0.98}}


class PrecisionUnavailable(BackendError):
    """This machine's runtime has no kernels for the asked precision."""


@functools.cache
def openvino_capabilities(device: str = "CPU") -> tuple[str, ...]:
    """OpenVINO's OPTIMIZATION_CAPABILITIES of a device ('FP32', 'INT8', 'BF16', 'FP16' ...); () without openvino."""
    try:
        import openvino as ov
    except ImportError:
        return ()
    try:
        return tuple(str(c) for c in ov.Core().get_property(device, "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # a device that is not there
        return ()


def unavailable_reason(precision: str, backend: str = "openvino") -> str | None:
    """Why ``precision`` cannot run on ``backend`` here, or None when it can."""
    if precision == "f32":
        return None
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r}; use one of {PRECISIONS}"
    if backend not in BACKENDS:
        return f"{precision} inference precision is set at run time on {BACKENDS} only, not on {backend}"
    from importlib.util import find_spec

    if find_spec("openvino") is None:
        return f"{precision} on OpenVINO needs openvino: pip install 'laser[openvino]'"
    caps = openvino_capabilities("CPU")
    if CAPABILITY[precision] in caps:
        return None
    from laser.runtime.hardware import cpu_info

    cpu = cpu_info()
    flags = sorted(set(cpu.get("isa", ())) & set(CPU_FLAGS[precision]))
    return (f"this CPU ({cpu.get('model') or cpu.get('arch', '?')}) has no {precision} kernels in OpenVINO: its CPU "
            f"plugin reports capabilities {list(caps)}, without {CAPABILITY[precision]!r} (it needs "
            f"{' or '.join(CPU_FLAGS[precision])}; found {flags or 'neither'}), and would silently run f32")


def recorded_precision(artifact: Artifact) -> dict[str, Any] | None:
    """``{"precision", "backend", "step"}`` from the latest ``precision`` step of the lineage, or None."""
    for i in range(len(artifact.lineage) - 1, -1, -1):
        step = artifact.lineage[i]
        if step.op == OP:
            got = step.results.get("runtime") or {}
            if got.get("precision"):
                return {"precision": got["precision"], "backend": got.get("backend", "openvino"), "step": i}
    return None


def refuse_recorded(artifact: Artifact, backend: str) -> None:
    """For runtimes that run f32 only: raise when the artifact records another inference precision."""
    got = recorded_precision(artifact)
    if got and got["precision"] != "f32":
        raise BackendError(f"{artifact.name!r} records {got['precision']} inference precision for {got['backend']} "
                           f"(lineage step {got['step']}); {backend} would run it in f32. Run it with "
                           f"backend={got['backend']!r}, or run its FP32 parent on {backend}")


@dataclasses.dataclass(frozen=True)
class Precision(Stage):
    """Run the model in ``precision`` ('bf16' or 'f16') on ``backend`` (OpenVINO), validated against FP32.

    A torch artifact is exported to ONNX first; the ONNX file is kept as is and the precision recorded
    in the lineage. ``data``: a labelled dataset (or its name) whose samples join the parity check.
    ``max_rel_error``/``top1_agreement``: the parity gate (None = ``TOLERANCE`` for the precision).
    """

    op: ClassVar[str] = OP
    precision: str = "bf16"
    backend: str = "openvino"
    data: Any = None
    max_rel_error: float | None = None
    top1_agreement: float | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            hint = " (fp16 *weights* in the file: laser.Quantize('fp16'))" if self.precision == "fp16" else ""
            raise ConfigError(f"unknown precision {self.precision!r}; use one of {PRECISIONS}{hint}, "
                              "e.g. Precision('bf16')")
        if self.backend not in BACKENDS:
            raise ConfigError(f"inference precision is chosen at run time on {BACKENDS} only, got backend "
                              f"{self.backend!r}; e.g. Precision('bf16', backend='openvino')")
        if self.max_rel_error is not None and self.max_rel_error <= 0:
            raise ConfigError(f"max_rel_error must be > 0, got {self.max_rel_error!r}; e.g. max_rel_error=0.05")
        if self.top1_agreement is not None and not 0 <= self.top1_agreement <= 1:
            raise ConfigError(f"top1_agreement is a fraction in [0, 1], got {self.top1_agreement!r}")

    def params(self) -> dict[str, Any]:
        out = super().params()
        if self.data is not None and not isinstance(self.data, str):
            from laser.compress.quantize import describe_source

            out["data"] = describe_source(self.data)
        return out

    def gate(self) -> dict[str, float]:
        default = TOLERANCE[self.precision]
        return {"max_rel_error": self.max_rel_error if self.max_rel_error is not None else default["max_rel_error"],
                "top1_agreement": (self.top1_agreement if self.top1_agreement is not None
                                   else default["top1_agreement"])}

    def apply(self, artifact: Artifact) -> Artifact:
        reason = unavailable_reason(self.precision, self.backend)
        if reason:
            raise PrecisionUnavailable(reason)
        parent = self._onnx_parent(artifact)
        runtime = {"backend": self.backend, "precision": self.precision,
                   "capabilities": list(openvino_capabilities("CPU"))}
        child = parent.derive(Step(self.op, params=self.params(), results={"runtime": runtime}))
        check = self.validate(parent, child)
        step = Step(self.op, params=self.params(), results={"runtime": runtime, "validation": check})
        return parent.derive(step)

    def validate(self, parent: Artifact, child: Artifact) -> dict[str, Any]:
        """Parity of ``child`` (bf16 on OpenVINO) with ``parent`` (f32 on OpenVINO); ParityError outside the gate."""
        from laser.export.validate import compare

        got = compare(parent, child, data=self.data, backend=self.backend, parent_backend=self.backend,
                      raise_on_failure=False)
        gate = self.gate()
        worst = max((o["max_rel_error"] for o in got["outputs"].values()), default=0.0)
        failures = []
        if worst > gate["max_rel_error"]:
            failures.append(f"max relative error {worst:.3g} > {gate['max_rel_error']:g}")
        agree = got.get("top1_agreement_up_to_ties")
        if agree is not None and agree < gate["top1_agreement"]:
            failures.append(f"top-1 agreement {agree:.3g} < {gate['top1_agreement']:g} over {got['top1_samples']} "
                            "samples")
        result = {"passed": not failures, "max_rel_error": worst, "gate": gate,
                  "top1_agreement": got.get("top1_agreement"), "top1_samples": got.get("top1_samples"),
                  "outputs": got["outputs"], "inputs": got["inputs"],
                  "method": f"measured: {self.precision} vs f32, both on {self.backend}, same inputs; "
                            "max_rel_error = max |child - parent| / max |parent| (spec.tolerance is for "
                            "exact exports; the gate is sized for the precision)"}
        if failures:
            raise ParityError(f"{parent.name!r} in {self.precision} on {self.backend} drifts from FP32: "
                              + "; ".join(failures) + ". Keep f32, or loosen the gate (max_rel_error=, "
                              "top1_agreement=) if this drift is acceptable")
        return result

    def _onnx_parent(self, artifact: Artifact) -> Artifact:
        if artifact.format == "torch":
            from laser.export import export

            return export(artifact, to="onnx", dynamic_batch=True)
        if artifact.format not in ("onnx", "openvino"):
            raise ConfigError(f"{artifact.name!r} is a {artifact.format} artifact; {self.precision} inference on "
                              f"{self.backend} takes a torch model (exported first), an ONNX artifact or an "
                              "OpenVINO IR")
        return artifact


def describe_recorded(artifact: Artifact) -> Mapping[str, Any] | None:
    """What a runner reports about a recorded precision (None when there is none)."""
    got = recorded_precision(artifact)
    return None if got is None else {**got, "source": f"manifest (lineage step {got['step']}, op {OP!r})"}


__all__ = ["PRECISIONS", "TOLERANCE", "Precision", "PrecisionUnavailable", "openvino_capabilities",
           "recorded_precision", "refuse_recorded", "unavailable_reason"]
