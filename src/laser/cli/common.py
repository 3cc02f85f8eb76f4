"""The options every subcommand shares, defined once: one spelling, one meaning, one help text.

Old spellings stay as hidden aliases for one release (``--batch`` for ``--batch-size``, ``--port`` for
``--http-port``, ``--shape`` for ``--input-shape``, ``perf --warmup`` for ``--warmup-seconds``).
"""

from __future__ import annotations

import argparse
import re

from laser.artifact import Artifact
from laser.errors import ConfigError

MODEL_HELP = "catalog name, bundle directory, .onnx file, TorchScript .pt, or package.module:factory"


def alias(p: argparse.ArgumentParser, old: str, dest: str, **kwargs: object) -> None:
    """A hidden old spelling of an option: parses into the same ``dest``, shown nowhere."""
    p.add_argument(old, dest=dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kwargs)  # type: ignore[arg-type]


def add_weight_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", help="local weights file (.safetensors or a state-dict checkpoint; for text models "
                                     "a folder with vocab.txt)")
    p.add_argument("--random-weights", action="store_true",
                   help="random weights, for structure-only work (answers are meaningless)")


def add_input_shape(p: argparse.ArgumentParser, help: str = "per-sample input shape for a factory, e.g. 3,224,224") -> None:
    p.add_argument("--input-shape", help=help)
    alias(p, "--shape", "input_shape")


def add_model_args(p: argparse.ArgumentParser, name: str = "model", nargs: str | None = None,
                   default: str | None = None, help: str = MODEL_HELP) -> None:
    """The model positional with --weights, --random-weights and --input-shape."""
    if nargs:
        p.add_argument(name, nargs=nargs, default=default, help=help)
    else:
        p.add_argument(name, help=help)
    add_weight_args(p)
    add_input_shape(p)


def add_json(p: argparse.ArgumentParser, help: str = "one JSON object on stdout") -> None:
    p.add_argument("--json", action="store_true", help=help)


def add_backend(p: argparse.ArgumentParser, default: str | None = "auto",
                help: str = "runtime backend: torch, torchscript, onnxruntime, openvino, aoti, compiled, echo or auto") -> None:
    p.add_argument("--backend", default=default, help=f"{help} (default: {default})" if default else help)


def add_on(p: argparse.ArgumentParser) -> None:
    """``--on ssh://...`` and ``--identity``: run on another machine over SSH (laser.runtime.ssh)."""
    p.add_argument("--on", metavar="ssh://USER@HOST[:PORT]",
                   help="run on this device over SSH with its own python3 and runtime (onnxruntime, OpenVINO or "
                        "ExecuTorch; the backend options then pick among those); ~/.ssh/config and LASER_SSH_OPTS apply")
    p.add_argument("--identity", metavar="KEYFILE", help="private key for --on (default: ssh's own choice)")


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, help="intra-op threads (default: all usable cores)")


def add_batch_size(p: argparse.ArgumentParser, default: int, help: str) -> None:
    p.add_argument("--batch-size", type=int, default=default, help=f"{help} (default: {default})")
    alias(p, "--batch", "batch_size", type=int)


def add_http_port(p: argparse.ArgumentParser, default: int = 8000, help: str = "HTTP port (0: a free one)") -> None:
    p.add_argument("--http-port", type=int, default=default, help=f"{help}; binds 127.0.0.1 (default: {default})")
    alias(p, "--port", "http_port", type=int)


def check_output_path(args: argparse.Namespace) -> None:
    """Refuse ``-o``/``--output``/``--report`` under an existing file before any work is done."""
    from pathlib import Path

    for flag, attr in (("-o/--output", "output"), ("--report", "report")):
        value = getattr(args, attr, None)
        if not isinstance(value, str) or not value:
            continue
        for parent in Path(value).parents:
            if parent.exists():
                if not parent.is_dir():
                    raise ConfigError(f"{flag} {value}: {parent} is a file, not a directory; choose another path")
                break


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError as exc:
        raise ConfigError(f"--input-shape must be comma-separated integers like 3,224,224, got {text!r}") from exc
    if not dims or min(dims) < 1:
        raise ConfigError(f"--input-shape must be positive integers, got {text!r}")
    return dims


def load_model(args: argparse.Namespace, attr: str = "model") -> Artifact:
    from laser.loader import load

    return load(getattr(args, attr), weights=getattr(args, "weights", None),
                random_weights=getattr(args, "random_weights", False),
                input_shape=parse_shape(getattr(args, "input_shape", None)))


# Library messages name Python parameters (``pass data='digits'``); on the command line they name flags.
_PARAMS = ("data", "calibration", "weights", "random_weights", "input_shape", "export", "model_control",
           "backend", "backends", "max_accuracy_drop", "inputs", "teacher", "reference")
_KEYWORD = re.compile(r"(?<!\()(?<!, )\b(" + "|".join(_PARAMS) + r")=(True\b|'[^']*'|\"[^\"]*\"|\([^)]*\)|[A-Z_]+\b|\.\.\.)?")


def cli_words(message: str) -> str:
    """``calibration='digits'`` -> ``--calibration digits``; ``random_weights=True`` -> ``--random-weights``."""

    def flag(m: re.Match[str]) -> str:
        name, value = "--" + m.group(1).replace("_", "-"), m.group(2) or ""
        if value == "True":
            return name
        if value.startswith("("):
            value = ",".join(v.strip() for v in value[1:-1].split(","))
        return f"{name} {value.strip(chr(39) + chr(34))}".rstrip()

    return _KEYWORD.sub(flag, message)
