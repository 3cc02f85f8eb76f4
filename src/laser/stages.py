"""Stages and recipes.

A Stage is a frozen, typed config object that is callable ``Artifact -> Artifact``
(``Export("onnx")``, ``Quantize("int8-static")``, ``Prune(ratio=0.5)``). Stages validate their fields at
construction with a fix-it message. A recipe is a list of stages; it round-trips to a small TOML file::

    [[stage]]
    op = "prune"
    ratio = 0.5

    [[stage]]
    op = "quantize"
    method = "int8-static"

STAGES maps each ``op`` to the class that implements it (imported on use).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from laser.artifact import Artifact
from laser.errors import ConfigError, NotFoundError

STAGES: dict[str, str] = {
    "export": "laser.export:Export",
    "quantize": "laser.compress.quantize:Quantize",
    "qat": "laser.compress.qat:QAT",
    "prune": "laser.compress.prune:Prune",
    "distill": "laser.compress.distill:Distill",
    "search": "laser.compress.nas:WidthSearch",
    "precision": "laser.runtime.precision:Precision",
}


@dataclasses.dataclass(frozen=True)
class Stage:
    """Base of every stage. Subclasses are frozen dataclasses that set ``op`` and implement ``apply``."""

    op: ClassVar[str] = "?"

    def __call__(self, artifact: Artifact) -> Artifact:
        return self.apply(artifact)

    def apply(self, artifact: Artifact) -> Artifact:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The stage's fields as plain data (what goes into lineage steps and recipe files).
        Fields whose value is not plain data (a dataset object, a teacher artifact) are recorded by name."""
        out = {}
        for f in dataclasses.fields(self):
            if not f.repr:
                continue
            out[f.name] = _plain(getattr(self, f.name))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, **{k: v for k, v in self.params().items() if v is not None}}


def _plain(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, Artifact):
        return str(v.location) if v.location else v.name
    return getattr(v, "name", type(v).__name__)


def stage_class(op: str) -> type[Stage]:
    if op not in STAGES:
        raise NotFoundError(f"unknown stage {op!r}; known: {sorted(STAGES)}")
    mod, _, cls = STAGES[op].partition(":")
    return getattr(importlib.import_module(mod), cls)


def stage_from_dict(d: Mapping[str, Any]) -> Stage:
    d = dict(d)
    op = d.pop("op", None)
    if not op:
        raise ConfigError(f"a recipe stage needs an 'op' (one of {sorted(STAGES)}), got {d}")
    cls = stage_class(op)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"stage {op!r} has no option(s) {unknown}; it takes {sorted(names)}")
    return cls(**d)


def apply(stages: Iterable[Stage], artifact: Artifact) -> Artifact:
    for stage in stages:
        artifact = stage(artifact)
    return artifact


def dumps_recipe(stages: Sequence[Stage], meta: Mapping[str, Any] | None = None) -> str:
    """A recipe as TOML (a small writer: recipe values are scalars, lists and flat tables)."""
    lines = []
    if meta:
        lines += ["[meta]", *(f"{k} = {_toml(v)}" for k, v in meta.items()), ""]
    for s in stages:
        lines.append("[[stage]]")
        lines += [f"{k} = {_toml(v)}" for k, v in s.to_dict().items()]
        lines.append("")
    return "\n".join(lines)


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(x)}" for k, x in v.items()) + "}"
    raise ConfigError(f"cannot write {type(v).__name__} value {v!r} to a recipe")


def save_recipe(path: str | Path, stages: Sequence[Stage], meta: Mapping[str, Any] | None = None) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps_recipe(stages, meta))
    tmp.replace(path)
    return path


def load_recipe(path: str | Path) -> tuple[list[Stage], dict[str, Any]]:
    """(stages, meta) from a recipe file (.toml, or .json with the same structure)."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"recipe {path} does not exist")
    try:
        doc = json.loads(path.read_text()) if path.suffix == ".json" else tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"recipe {path} is not valid TOML/JSON: {exc}") from exc
    return [stage_from_dict(s) for s in doc.get("stage", [])], dict(doc.get("meta", {}))
