"""Arguments shared by subcommands that take a model."""

from __future__ import annotations

import argparse

from laser.artifact import Artifact
from laser.errors import ConfigError


def add_model_args(p: argparse.ArgumentParser, name: str = "model") -> None:
    p.add_argument(name, help="catalog name, bundle directory, .onnx file, TorchScript .pt, or package.module:factory")
    p.add_argument("--weights", help="local weights file (.safetensors or a state-dict checkpoint)")
    p.add_argument("--random-weights", action="store_true", help="random weights, for structure-only work")
    p.add_argument("--input-shape", help="per-sample input shape for a factory, e.g. 3,224,224")


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
