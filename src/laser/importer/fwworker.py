"""Runs inside the frameworks Python (the one with tensorflow / paddlepaddle and their ONNX converters), not
in laser's: ``python fwworker.py REQUEST.json``. It imports nothing from laser, only the standard library,
numpy and the frameworks, so it works in a venv without torch or laser (``make frameworks-venv``).

Requests (JSON): ``{"op": "convert", "format", "source", "signature", "output", "opset"}`` converts the
source to ONNX with tf2onnx (SavedModel, Keras via a SavedModel export, TFLite) or paddle2onnx (Paddle)
and describes the source's inputs and outputs; ``{"op": "reference", "format", "source", "signature",
"inputs", "output"}`` runs the source framework itself on the arrays of the ``inputs`` .npz (in the
model's input order) and writes its outputs to the ``output`` .npz. The answer is one JSON line on
stdout: the result, or ``{"error": KIND, "message": ONE_LINE, "ops": [...]}`` with exit code 3.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GLOG_minloglevel", "3")
TF_FORMATS = ("savedmodel", "keras", "tflite")
# how each converter names the ops it cannot convert
NOT_SUPPORTED = re.compile(r"not supported|unsupported", re.I)
UNSUPPORTED = (re.compile(r"(?:Tensorflow|TFLite) op \[[^\]]*?: ?([A-Za-z0-9_]+)\] is not supported"),
               re.compile(r"Unsupported ops: Counter\(\{(.*?)\}\)"),
               re.compile(r"(?:ops|operators) not supported yet, including ([A-Za-z0-9_., ]+)"))


class Failure(Exception):
    def __init__(self, kind: str, message: str, ops: list[str] | None = None):
        super().__init__(message)
        self.kind, self.ops = kind, ops or []


def _versions(*pkgs: str) -> dict[str, str]:
    out = {}
    for p in pkgs:
        with contextlib.suppress(PackageNotFoundError):
            out[p] = version(p)
    return out


def _one_line(text: str, about: re.Pattern[str] | None = None) -> str:
    """The converter's line about ``about`` (else its last line), without the logger's time stamp."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    hits = [ln for ln in lines if about is not None and about.search(ln)]
    line = (hits or lines or [""])[-1 if not hits else 0]
    return re.sub(r"^\S+ \S+ - [A-Z]+ - ", "", line)[:300]


def unsupported_ops(text: str) -> list[str]:
    """Op names a converter's log says it cannot convert."""
    ops: list[str] = []
    for pattern in UNSUPPORTED:
        for m in pattern.finditer(text):
            ops += [o.strip(" '\"").split("'")[0] for o in re.split(r",\s*", m.group(1)) if o.strip(" '\"")]
    return sorted({o.split(":")[0] for o in ops if o and not o.isdigit()})


def _tensor(name: str, dtype: Any, shape: Any) -> dict[str, Any]:
    dims = [d if isinstance(d, int) and d >= 0 else None for d in (list(shape) if shape is not None else [])]
    return {"name": name, "dtype": str(np.dtype(dtype)), "shape": dims}


def _signature(model: Any, wanted: str | None) -> tuple[str, Any]:
    """The SavedModel signature to use: ``wanted``, or the only distinct one (aliases such as Keras'
    'serve' / 'serving_default', same inputs and outputs, count once)."""
    sigs = dict(model.signatures)
    if not sigs:
        raise Failure("signature", "the SavedModel has no signatures; export it with a serving signature "
                                   "(model.export(DIR) in Keras, tf.saved_model.save(m, DIR, signatures=...))")
    if wanted is not None:
        if wanted not in sigs:
            raise Failure("signature", f"the SavedModel has no signature {wanted!r}; it has {sorted(sigs)}")
        return wanted, sigs[wanted]
    distinct: dict[str, str] = {}
    for name in sorted(sigs, key=lambda n: (n != "serving_default", n)):
        f = sigs[name]
        distinct.setdefault(repr((f.structured_input_signature, f.structured_outputs)), name)
    if len(distinct) > 1:
        raise Failure("signature", f"the SavedModel has {len(distinct)} signatures {sorted(distinct.values())}; "
                                   "choose one with --signature NAME")
    name = next(iter(distinct.values()))
    return name, sigs[name]


def _load_tf(fmt: str, source: str, signature: str | None) -> tuple[Any, str | None, list[dict], list[dict]]:
    """(callable taking the inputs in order -> list of outputs, signature, inputs, outputs)."""
    import tensorflow as tf

    if fmt == "savedmodel":
        name, fn = _signature(tf.saved_model.load(source), signature)
        specs = fn.structured_input_signature[1]
        order = sorted(specs)
        outs = sorted(fn.structured_outputs)
        inputs = [_tensor(k, specs[k].dtype.as_numpy_dtype, specs[k].shape.as_list()) for k in order]
        outputs = [_tensor(k, fn.structured_outputs[k].dtype.as_numpy_dtype,
                           fn.structured_outputs[k].shape.as_list()) for k in outs]
        return (lambda *xs: [fn(**dict(zip(order, xs, strict=True)))[k].numpy() for k in outs]), name, inputs, outputs
    if fmt == "keras":
        import keras

        model = keras.models.load_model(source, compile=False)
        inputs = [_tensor(t.name.split(":")[0], t.dtype, t.shape) for t in model.inputs]
        outputs = [_tensor(t.name.split(":")[0], t.dtype, t.shape) for t in model.outputs]

        def run(*xs: np.ndarray) -> list[np.ndarray]:
            y = model(list(xs) if len(xs) > 1 else xs[0], training=False)
            return [np.asarray(v) for v in (y if isinstance(y, (list, tuple)) else [y])]
        return run, None, inputs, outputs
    interp = tf.lite.Interpreter(model_path=source)
    ins, outs_d = interp.get_input_details(), interp.get_output_details()
    inputs = [_tensor(d["name"], d["dtype"], d["shape_signature"]) for d in ins]
    outputs = [_tensor(d["name"], d["dtype"], d["shape_signature"]) for d in outs_d]

    def run_tflite(*xs: np.ndarray) -> list[np.ndarray]:
        for d, x in zip(ins, xs, strict=True):
            interp.resize_tensor_input(d["index"], list(x.shape))
        interp.allocate_tensors()
        for d, x in zip(ins, xs, strict=True):
            interp.set_tensor(d["index"], x)
        interp.invoke()
        return [interp.get_tensor(d["index"]).copy() for d in outs_d]
    return run_tflite, None, inputs, outputs


def _paddle_files(source: str) -> tuple[Path, Path]:
    path = Path(source)
    if path.is_dir():
        found = sorted(path.glob("*.pdmodel")) or sorted(path.glob("*.json"))
        if not found:
            raise Failure("corrupt", f"{path} holds no .pdmodel or .json program")
        path = found[0]
    params = path.with_suffix(".pdiparams")
    if not params.is_file():
        raise Failure("corrupt", f"{params.name} (the weights) is missing next to {path.name}")
    return path, params


def _load_paddle(source: str) -> tuple[Any, list[dict], list[dict]]:
    import paddle.inference as pi

    program, params = _paddle_files(source)
    config = pi.Config(str(program), str(params))
    config.disable_gpu()
    with contextlib.suppress(AttributeError):
        config.disable_glog_info()
    predictor = pi.create_predictor(config)
    names, out_names = predictor.get_input_names(), predictor.get_output_names()
    # the predictor knows names only (its shapes read [0] before a run): dtypes and dims come from the ONNX
    inputs = [{"name": n, "dtype": None, "shape": None} for n in names]
    outputs = [{"name": n, "dtype": None, "shape": None} for n in out_names]

    def run(*xs: np.ndarray) -> list[np.ndarray]:
        for n, x in zip(names, xs, strict=True):
            predictor.get_input_handle(n).copy_from_cpu(np.ascontiguousarray(x))
        predictor.run()
        return [predictor.get_output_handle(n).copy_to_cpu() for n in out_names]
    return run, inputs, outputs


def _run_converter(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    log = done.stdout + done.stderr
    ops = unsupported_ops(log)
    if ops:
        raise Failure("unsupported", f"{what}: {_one_line(log, NOT_SUPPORTED)}", ops)
    if done.returncode:
        raise Failure("convert", f"{what} failed: {_one_line(done.stderr or done.stdout)}")


def convert(req: dict[str, Any]) -> dict[str, Any]:
    fmt, source, out = req["format"], req["source"], req["output"]
    opset = str(req.get("opset", 17))
    if fmt == "paddle":
        _, inputs, outputs = _load_paddle(source)
        program, params = _paddle_files(source)
        _run_converter([sys.executable, "-m", "paddle2onnx.command", "--model_dir", str(program.parent),
                        "--model_filename", program.name, "--params_filename", params.name, "--save_file", out,
                        "--opset_version", opset, "--enable_onnx_checker", "True"], "paddle2onnx")
        return {"converter": "paddle2onnx", "signature": None, "inputs": inputs, "outputs": outputs,
                "versions": _versions("paddlepaddle", "paddle2onnx")}
    _, signature, inputs, outputs = _load_tf(fmt, source, req.get("signature"))
    base = [sys.executable, "-m", "tf2onnx.convert", "--output", out, "--opset", opset]
    with tempfile.TemporaryDirectory() as tmp:
        if fmt == "tflite":
            cmd = [*base, "--tflite", source]
        elif fmt == "keras":  # tf2onnx's Keras path predates Keras 3: convert Keras' own SavedModel export
            import keras

            with contextlib.redirect_stdout(io.StringIO()):
                keras.models.load_model(source, compile=False).export(str(Path(tmp) / "sm"))
            cmd = [*base, "--saved-model", str(Path(tmp) / "sm")]
        else:
            cmd = [*base, "--saved-model", source, "--signature_def", str(signature)]
        _run_converter(cmd, "tf2onnx")
    return {"converter": "tf2onnx", "signature": signature, "inputs": inputs, "outputs": outputs,
            "versions": _versions("tensorflow-cpu", "tensorflow", "keras", "tf2onnx")}


def reference(req: dict[str, Any]) -> dict[str, Any]:
    with np.load(req["inputs"], allow_pickle=False) as z:
        xs = [z[f"arr_{i}"] for i in range(len(z.files))]
    if req["format"] == "paddle":
        run = _load_paddle(req["source"])[0]
        framework = _versions("paddlepaddle")
    else:
        run = _load_tf(req["format"], req["source"], req.get("signature"))[0]
        framework = _versions("tensorflow-cpu", "tensorflow", "keras")
    np.savez(req["output"], *run(*xs))
    return {"framework": framework}


def main(argv: list[str]) -> int:
    req = json.loads(Path(argv[1]).read_text())
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = convert(req) if req["op"] == "convert" else reference(req)
    except Failure as exc:
        print(json.dumps({"error": exc.kind, "message": str(exc), "ops": exc.ops}))
        return 3
    except ImportError as exc:
        print(json.dumps({"error": "missing", "message": f"{type(exc).__name__}: {exc}", "ops": []}))
        return 3
    except Exception as exc:  # the frameworks raise their own types for unreadable files
        print(json.dumps({"error": "corrupt", "message": f"{type(exc).__name__}: {_one_line(str(exc))}", "ops": []}))
        return 3
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
