"""Which converter imports a TF SavedModel / Keras / TFLite / Paddle model, and the OpenVINO IR import.

tf2onnx / paddle2onnx give ONNX (what ``--to onnx|torch``, the ONNX quantizers and every ONNX backend take), so
they come first. When their Python lacks them (no frameworks venv: the usual case for a user who installed laser
only) or they fail on the model, and no ``--to`` was asked for, OpenVINO's frontends convert instead and the
bundle is an OpenVINO IR (``openvino_ir.py``). ``--converter`` picks one. The step records the converter and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from laser.artifact import Artifact, Step
from laser.errors import ConfigError, LaserError, ParityError
from laser.importer import frameworks as fw
from laser.importer import openvino_ir as ovir

PARITY_ATOL = fw.PARITY_ATOL


def _result(to: str) -> str:
    return "an ONNX result" if to == "onnx" else "a torch result (through ONNX)"


def _field_converter(fmt: str, converter: str | None) -> str:
    """The ONNX converter for ``fmt``; refuses ``--converter`` naming the other one."""
    own = fw.CONVERTERS[fmt]
    if converter not in (None, "openvino", own):
        raise ConfigError(f"--converter {converter} does not read {fmt} models; use {own} or openvino")
    return own


def from_framework(path: Path, fmt: str, to: str | None, converter: str | None, name: str | None,
                   input_shape: tuple[int, ...] | None, extra: dict[str, Any], signature: str | None,
                   python: str | None) -> Artifact:
    from laser.importer import via_onnx

    own = _field_converter(fmt, converter)
    if fmt == "tflite" and path.read_bytes()[4:8] != b"TFL3":  # before any converter: TFLite readers crash on it
        raise ConfigError(f"{path.name} is not a TFLite flatbuffer (no 'TFL3' identifier); re-export it")
    if converter == "openvino":
        if to is not None:
            raise ConfigError(f"--converter openvino writes an OpenVINO IR, not {to}; {_result(to)} needs "
                              f"{own}: `python -m pip install {fw.PIP[own]}` in a frameworks venv (make "
                              "frameworks-venv), then --python or $LASER_FRAMEWORKS_PYTHON")
        return via_openvino(path, fmt, name, input_shape, extra, signature, python, "asked for (--converter openvino)")
    fallback_ok = converter is None and to is None and ovir.reads(fmt, path) is None
    try:
        py = fw.python_for(fmt, python)
    except fw.ConverterMissing as exc:
        if to is not None and converter is None and ovir.reads(fmt, path) is None:
            raise fw.ConverterMissing(f"{_result(to)} needs {own} (OpenVINO, which is installed, writes an "
                                      f"OpenVINO IR: drop --to for that): {exc}") from exc
        if not fallback_ok:
            raise
        return _fallback(path, fmt, name, input_shape, extra, signature, python, exc,
                         f"fallback: {own} is not installed in the frameworks Python (for an ONNX result: "
                         f"pip install {fw.PIP[own]} in a frameworks venv, make frameworks-venv)")
    why = "asked for (--converter)" if converter else "first choice: gives ONNX"
    try:
        return via_onnx(path, fmt, to or "onnx", name, input_shape, extra, signature, py, why)
    except (ConfigError, ParityError) as exc:
        if not fallback_ok:
            raise
        why = f"fallback: {own} failed ({str(exc).replace(py, 'the frameworks Python')})"  # no local path
        return _fallback(path, fmt, name, input_shape, extra, signature, python, exc, why)


def _fallback(path: Path, fmt: str, name: str | None, input_shape: tuple[int, ...] | None, extra: dict[str, Any],
              signature: str | None, python: str | None, first: LaserError, why: str) -> Artifact:
    """OpenVINO after ``first`` (the ONNX converter's error); both failing raise ``first``'s kind with both."""
    try:
        return via_openvino(path, fmt, name, input_shape, extra, signature, python, why)
    except LaserError as exc:
        raise type(first)(f"{path.name}: OpenVINO, the fallback converter, failed too ({exc}); {first}") from first


def via_openvino(path: Path, fmt: str, name: str | None, input_shape: tuple[int, ...] | None,
                 extra: dict[str, Any], signature: str | None, python: str | None, why: str) -> Artifact:
    """SavedModel / TFLite / .pdmodel -> OpenVINO IR bundle, checked against the source framework if installed."""
    from laser.artifact import tool_versions, workspace
    from laser.importer import _fixed_spec, probe_dims
    from laser.loader import _guess_task

    if signature not in (None, "serving_default"):
        raise ConfigError(f"OpenVINO reads a SavedModel's default signature only, not {signature!r}; "
                          f"--signature needs {fw.CONVERTERS[fmt]}: `python -m pip install {fw.PIP[fw.CONVERTERS[fmt]]}`")
    model, files = ovir.convert(fmt, path, workspace("import"))
    spec = _fixed_spec(ovir.spec_of(model), input_shape)
    run = ovir.runner(model)
    probed = probe_dims(path, spec, run) if spec.named_dims else spec
    py = ovir.framework_python(fmt, python)
    results = {"parity_vs_source": ovir.parity(py, fmt, path, probed, run)}
    src = results["parity_vs_source"]["vs_source"]
    if src.get("max_abs_diff", 0.0) > PARITY_ATOL:
        raise ParityError(f"OpenVINO's conversion of {path.name} differs from the source framework by up to "
                          f"{src['max_abs_diff']:.3g} (> {PARITY_ATOL}) on example inputs")
    inputs, outputs = ovir.describe_io(ovir.spec_of(model))
    params = {"source": path.name, "framework": fmt, "converter": "openvino", "converter_reason": why,
              "signature": signature, "source_inputs": inputs, "source_outputs": outputs, "to": "openvino"}
    step = Step("import", params=params, results=results, versions=tool_versions())
    return Artifact.from_files(files, name=name or path.stem, task=_guess_task(spec), format="openvino", spec=spec,
                               step=step, **extra)
