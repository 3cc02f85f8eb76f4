"""Export: a torch artifact to ONNX, TorchScript, ORT format or an AOTInductor package, always validated against its parent.

    >>> onnx_art = laser.export.export(art, to="onnx")          # or Export(to="onnx")(art)
    >>> onnx_art.lineage[-1].results["validation"]["outputs"]   # max abs / rel error per output

ONNX (``exporter="auto"``): the torch.export-based (dynamo) exporter first; when it fails, or its graph
fails the parity check, the TorchScript-based (legacy) exporter. ``exporter="fastest"`` runs both and
keeps the graph that is faster in onnxruntime on this machine (measured, recorded in the lineage). The lineage step records which path
produced the file, why the other failed, the opset, ``onnx.checker``'s verdict, and the validation
figures (or ``verified: false`` when ``verify=False``: then nothing was checked).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import replace
from typing import Any, ClassVar

from laser._callable import make_callable
from laser.artifact import EXPORT_TARGETS, Artifact, Step, workspace
from laser.errors import ConfigError, ExportError, LaserError, ParityError
from laser.export.adapter import fixed_batch_spec
from laser.stages import Stage

log = logging.getLogger("laser.export")

TARGETS = EXPORT_TARGETS
EXPORTER_CHOICES = ("auto", "dynamo", "legacy", "fastest")
MIN_OPSET, MAX_OPSET = 9, 23


@dataclasses.dataclass(frozen=True)
class Export(Stage):
    """Export to ``to`` ('onnx' | 'torchscript' | 'ort' | 'aoti' | 'executorch'), then check parity with the parent on Spec
    example inputs (and ``data``: a ``laser.data.Dataset`` or dataset name, when given)."""

    op: ClassVar[str] = "export"
    to: str = "onnx"
    opset: int | None = None
    dynamic_batch: bool = True
    verify: bool = True
    exporter: str = "auto"
    data: Any = None
    quantize: str | None = None  # "int8": PT2E + XNNPACK quantizer, calibrated on ``data`` (to='executorch' only)

    def __post_init__(self) -> None:
        if self.to not in TARGETS:
            raise ConfigError(f"Export(to={self.to!r}) is not a target; use one of {TARGETS}, e.g. Export(to='onnx')")
        if self.exporter not in EXPORTER_CHOICES:
            raise ConfigError(f"Export(exporter={self.exporter!r}) is unknown; use one of {EXPORTER_CHOICES}")
        if self.opset is not None and not (isinstance(self.opset, int) and MIN_OPSET <= self.opset <= MAX_OPSET):
            raise ConfigError(f"Export(opset={self.opset!r}) is out of range; use an int in "
                              f"[{MIN_OPSET}, {MAX_OPSET}] or None for the exporter's default, e.g. opset=18")
        if self.to in ("torchscript", "aoti", "executorch") and (self.opset is not None or self.exporter != "auto"):
            raise ConfigError(f"opset and exporter apply to ONNX only; drop them for Export(to={self.to!r})")
        if self.quantize not in (None, "int8") or (self.quantize and self.to != "executorch"):
            raise ConfigError(f"Export(quantize={self.quantize!r}) is not supported; use quantize='int8' with "
                              "to='executorch' (ONNX INT8: laser.compress.Quantize)")

    def apply(self, artifact: Artifact) -> Artifact:
        if self.to == "ort":
            if artifact.format == "ort":
                raise ConfigError(f"{artifact.name!r} is already in ORT format; nothing to export")
            source = artifact if artifact.format == "onnx" else replace(self, to="onnx")(artifact)
            return self._to_ort(source)
        if artifact.format != "torch":
            raise ExportError(f"{artifact.name!r} is a {artifact.format} artifact; export to {self.to} starts from "
                              "a torch artifact (the PyTorch model with its architecture). Load the original "
                              "model (laser.load('name' or 'pkg.mod:factory', weights=...)) and export that"
                              + ("; an ONNX artifact can be converted with to='ort'" if artifact.format == "onnx" else ""))
        if self.to == "torchscript":
            return self._to_torchscript(artifact)
        if self.to == "aoti":
            return self._to_aoti(artifact)
        if self.to == "executorch":
            from laser.export.executorch import to_executorch

            return to_executorch(self, artifact)
        if self.exporter == "fastest":
            return self._fastest_onnx(artifact)
        return self._to_onnx(artifact)

    # -- helpers ----------------------------------------------------------------------------
    def _child_spec(self, artifact: Artifact) -> Any:
        return artifact.spec if self.dynamic_batch else fixed_batch_spec(artifact.spec, 1)

    def _finish(self, parent: Artifact, child: Artifact, results: dict[str, Any]) -> Artifact:
        """Validate ``child`` against ``parent`` and return it with the complete lineage step."""
        from laser.export.validate import compare

        if self.verify:
            try:
                results["validation"] = compare(parent, child, data=self.data)
            except ParityError as exc:
                exc.child = child  # type: ignore[attr-defined]  # kept so the CLI can save it for `laser diff`
                raise
            results["verified"] = True
        else:
            results["verified"] = False
            results["validation"] = None
            log.warning("export of %s to %s was not verified (verify=False)", parent.name, self.to)
        step = Step("export", params=self.params(), results=results)
        return Artifact(replace(child.manifest, lineage=(*parent.lineage, step)), child.files)

    def _to_onnx(self, artifact: Artifact) -> Artifact:
        from laser.export.onnx import export_onnx

        module = artifact.module.eval()
        spec = self._child_spec(artifact)
        order = ["dynamo", "legacy"] if self.exporter == "auto" else [self.exporter]
        attempts: list[dict[str, Any]] = []
        last: LaserError = ExportError("no exporter ran")
        for exporter in order:
            path = workspace(f"{artifact.name}-onnx-{exporter}") / "model.onnx"
            try:
                info = export_onnx(module, artifact.spec, path, exporter=exporter, opset=self.opset,
                                   dynamic_batch=self.dynamic_batch)
                files: dict[str, Any] = {"model.onnx": path}
                files.update({name: (path.parent / name, "external-data") for name in info["external_data"]})
                child = artifact.derive(Step("export", params=self.params()), files=files, format="onnx",
                                        spec=spec, architecture=None)
                results = {"exporter_used": exporter, "opset": info["opset"], "checker": info["checker"],
                           "export": info, "attempts": [*attempts, {"exporter": exporter, "ok": True,
                                                                     "seconds": info["seconds"]}]}
                if attempts:
                    results["fallback_reason"] = attempts[-1]["error"]
                # a graph that fails parity (ParityError) or does not load (BackendError) also falls back
                return self._finish(artifact, child, results)
            except LaserError as exc:
                if len(order) == 1:
                    raise
                attempts.append({"exporter": exporter, "ok": False, "error": str(exc)[:600]})
                log.info("ONNX export of %s with %s failed: %s", artifact.name, exporter, exc)
                last = exc
        kind = type(last) if isinstance(last, (ExportError, ParityError)) else ExportError
        error = kind(f"cannot export {artifact.name!r} ({type(module).__name__}) to ONNX: "
                     + "; ".join(f"{a['exporter']} exporter: {a['error']}" for a in attempts))
        if hasattr(last, "child"):
            error.child = last.child  # type: ignore[union-attr]
        raise error from last

    def _fastest_onnx(self, artifact: Artifact) -> Artifact:
        """Both exporters, each validated; keep the graph that runs faster in onnxruntime here (the two
        graphs of one model can differ ~2x in latency, e.g. ReduceMean vs GlobalAveragePool)."""
        from laser.runtime import run
        from laser.timing import interleaved_median_ms

        made: dict[str, Artifact] = {}
        failed: dict[str, str] = {}
        for exporter in ("dynamo", "legacy"):
            try:
                made[exporter] = replace(self, exporter=exporter)._to_onnx(artifact)
            except LaserError as exc:
                failed[exporter] = str(exc)[:600]
        if not made:
            raise ExportError(f"cannot export {artifact.name!r} to ONNX: "
                              + "; ".join(f"{k} exporter: {v}" for k, v in failed.items()))
        feeds = self._child_spec(artifact).example_inputs(batch=1)
        runners = {k: run(a, backend="onnxruntime") for k, a in made.items()}
        timings, rounds = interleaved_median_ms({k: functools.partial(r, feeds) for k, r in runners.items()})
        for r in runners.values():
            r.close()
        best = min(timings, key=timings.__getitem__)
        results = dict(made[best].lineage[-1].results)
        results.update(exporter_timings_ms=timings, attempts=[
            *({"exporter": k, "ok": True, "onnxruntime_median_ms": v} for k, v in timings.items()),
            *({"exporter": k, "ok": False, "error": v} for k, v in failed.items())],
            exporter_choice=(f"{best}: faster in onnxruntime here (median at batch 1, {rounds} interleaved "
                             "rounds: " + ", ".join(f"{k} {v:.3g} ms" for k, v in timings.items()) + ")"
                             if len(timings) > 1 else f"{best}: the only exporter that succeeded"))
        step = Step("export", params=self.params(), results=results)
        return Artifact(replace(made[best].manifest, lineage=(*artifact.lineage, step)), made[best].files)

    def _to_torchscript(self, artifact: Artifact) -> Artifact:
        from laser.export.torchscript import export_torchscript

        path = workspace(f"{artifact.name}-torchscript") / "model.pt"
        spec = self._child_spec(artifact)
        info = export_torchscript(artifact.module.eval(), spec, path, dynamic_batch=self.dynamic_batch)
        log.warning("%s", info["note"])
        child = artifact.derive(Step("export", params=self.params()), files={"model.pt": path},
                                format="torchscript", spec=spec, architecture=None)
        return self._finish(artifact, child, {"exporter_used": f"torch.jit.{info['method']} + freeze", "export": info})

    def _to_aoti(self, artifact: Artifact) -> Artifact:
        from laser.export.aoti import export_aoti

        path = workspace(f"{artifact.name}-aoti") / "model.pt2"
        spec = self._child_spec(artifact)
        info = export_aoti(artifact.module.eval(), spec, path, dynamic_batch=self.dynamic_batch)
        child = artifact.derive(Step("export", params=self.params()), files={"model.pt2": path},
                                format="aoti", spec=spec, architecture=None)
        return self._finish(artifact, child, {"exporter_used": "torch.export + AOTInductor", "export": info,
                                              "compile_seconds": info["compile_seconds"]})

    def _to_ort(self, artifact: Artifact) -> Artifact:
        from laser.export.ort_format import convert_to_ort, reduced_build_config

        path = workspace(f"{artifact.name}-ort") / "model.ort"
        info = convert_to_ort(artifact.model_file, path)
        config = reduced_build_config([path], path.parent)  # for an ORT minimal build with only these ops
        files: dict[str, Any] = {"model.ort": path, **{n: (p, "build-config") for n, p in config["files"].items()}}
        child = artifact.derive(Step("export", params=self.params()), files=files, format="ort", architecture=None)
        return self._finish(artifact, child, {"exporter_used": "onnxruntime ORT-format conversion", "export": info,
                                              "required_operators": config["operators"],
                                              "required_types": config["types"]})


def export(artifact: Artifact, to: str = "onnx", **options: Any) -> Artifact:
    """``Export(to=to, **options)(artifact)``: the exported artifact, validated against ``artifact``."""
    return Export(to=to, **options)(artifact)


make_callable(__name__, export)  # laser.export(...) works as package and as function

__all__ = ["TARGETS", "Export", "export"]
