"""Where the winner of ``laser optimize --target`` is to run: the formats, backends and recipes that fit there.

One row per target; ``--formats``, ``--backends`` and ``--recipes`` narrow a target's defaults, and a
restricted target refuses a format or backend that does not run there. Candidates are measured on this
machine, on the runtime the target ships (ExecuTorch's and ONNX Runtime's CPU kernels are the ones a phone
runs, compiled for this CPU): the report names the target and says where the figures come from. PyTorch
eager is still measured, as the reference every speed-up is quoted against, but on a restricted target
it is never the winner.

    server   PyTorch eager, ONNX and TorchScript on every installed server runtime (the default)
    mobile   a phone or a Raspberry Pi: ExecuTorch .pte lowered to XNNPACK (FP32, and INT8 via PT2E with the
             XNNPACK quantizer) on the executorch backend, and ONNX Runtime's ORT format (FP32, INT8 QDQ)
             for ONNX Runtime Mobile on onnxruntime. .pte programs take batch 1 only: they are timed at batch 1
    browser  the model's web page (onnxruntime-web, WASM) in headless Chromium: ONNX FP32 and INT8 QDQ
    ssh://USER@HOST[:PORT]  mobile, measured on that device (``--on``, laser.optimize.device)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from laser.errors import ConfigError


@dataclass(frozen=True)
class Target:
    name: str
    formats: tuple[str, ...]  # default formats (and, when restricted, the only ones allowed)
    backends: tuple[str, ...] | None  # default backends; None: every installed one that runs the formats
    recipes: tuple[str, ...] | None  # default recipes; None: optimize's own default list
    restricted: bool  # formats/backends outside the row are refused, and the winner must be one of them
    description: str

    def choose(self, kind: str, given: Sequence[str] | None) -> list[str] | None:
        """``given`` formats or backends (``kind``), checked against the target; else its defaults."""
        allowed = self.formats if kind == "formats" else self.backends
        if not given:
            return list(allowed) if allowed is not None else None
        outside = [g for g in given if self.restricted and allowed is not None and g not in allowed]
        if outside:
            raise ConfigError(f"{kind} {outside} do not run on target {self.name!r} ({self.description}); "
                              f"use {', '.join(allowed or ())}, or another --target")
        return list(given)

    def deployable(self, fmt: str, backend: str) -> bool:
        """Whether a candidate in ``fmt`` on ``backend`` is something this target runs (may win)."""
        if not self.restricted:
            return True
        backend = backend.removeprefix("ssh:")  # --on: the device's runtime
        return fmt in self.formats and (self.backends is None or backend in self.backends)


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("server", ("torch", "onnx", "torchscript"), None, None, False,
           "PyTorch eager, ONNX and TorchScript on the installed server runtimes"),
    Target("mobile", ("executorch", "ort"), ("executorch", "onnxruntime"), ("none", "int8-pt2e", "int8-static"),
           True, "a phone or a Raspberry Pi: ExecuTorch .pte with XNNPACK, ORT format for ONNX Runtime Mobile"),
    Target("browser", ("onnx",), ("browser",), ("none", "int8-static"), True,
           "onnxruntime-web (WASM) in headless Chromium"),
)}
DEFAULT_TARGET = "server"


def split(name: str | None, on: str | None) -> tuple[str | None, str | None]:
    """(target, device): ``--target ssh://...`` is the mobile/edge formats measured on that device (``--on``)."""
    if name and name.strip().lower().startswith("ssh://"):
        if on and on != name:
            raise ConfigError(f"--target {name} and --on {on} name two devices; give one")
        return "mobile", name.strip()
    return name, on


def target(name: str | None) -> Target:
    """The row of ``name`` (None: the server default), or a ConfigError listing the targets."""
    key = (name or DEFAULT_TARGET).strip().lower()
    if key not in TARGETS:
        raise ConfigError(f"unknown --target {name!r}; use one of {', '.join(TARGETS)}")
    return TARGETS[key]
