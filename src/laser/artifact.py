"""Artifact: a model at one point in its life, and its bundle directory on disk.

A bundle is a directory holding the model file(s) and ``laser.json`` (the manifest): schema version,
name, task, format, files with sha256, spec, preprocessing, labels, architecture (how to rebuild a
torch module), lineage (the ordered steps that made it) and metrics measured on it.

Artifacts are never mutated: ``derive`` returns a new one whose lineage is one step longer. Files of an
artifact that was not saved yet live in a private temporary workspace; ``save`` copies them into a
staging directory beside the target and swaps it in atomically.
"""

from __future__ import annotations

import atexit
import ctypes
import datetime as _dt
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from laser.errors import ArtifactError, ConfigError
from laser.spec import ModelSpec

if TYPE_CHECKING:
    import torch

SCHEMA_VERSION = 1
MANIFEST = "laser.json"
# every artifact format (the one list of them); "openvino" is an OpenVINO IR (model.xml + model.bin) that
# ``laser import`` writes when only OpenVINO's frontends can convert the source
FORMATS = ("torch", "onnx", "torchscript", "ort", "aoti", "executorch", "openvino")
EXPORT_TARGETS = tuple(f for f in FORMATS if f not in ("torch", "openvino"))  # what a torch artifact exports to


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tool_versions() -> dict[str, str]:
    """Versions of the tools that can change a model's numbers; recorded in every lineage step."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("laser", "torch", "onnx", "onnxruntime", "torch-pruning", "openvino", "executorch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


@dataclass(frozen=True)
class Step:
    """One entry of an artifact's lineage."""

    op: str
    params: Mapping[str, Any] = field(default_factory=dict)
    results: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=tool_versions)
    time: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "params": dict(self.params), "results": dict(self.results),
                "versions": dict(self.versions), "time": self.time}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Step:
        return cls(op=d["op"], params=d.get("params", {}), results=d.get("results", {}),
                   versions=d.get("versions", {}), time=d.get("time", ""))


TRAINING_OPS = ("train", "distill", "qat", "finetune")  # steps after which random weights are learned ones


@dataclass(frozen=True)
class Manifest:
    name: str
    task: str
    format: str
    spec: ModelSpec
    files: Mapping[str, Mapping[str, Any]]  # relative file name -> {"sha256", "bytes", "role"}
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    architecture: Mapping[str, Any] | None = None  # {"factory": "pkg.mod:fn", "kwargs": {...}, ...}
    lineage: tuple[Step, ...] = ()
    metrics: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"unknown artifact format {self.format!r}; use one of {FORMATS}")
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "lineage", tuple(self.lineage))

    @property
    def random_weights(self) -> bool:
        """Loaded with ``random_weights=True`` and never trained since (outputs are meaningless)."""
        random = False
        for s in self.lineage:
            if s.op == "load":
                random = s.params.get("weights") == "random"
            elif s.op in TRAINING_OPS or s.results.get("epochs_run") or s.params.get("finetune_epochs"):
                random = False
        return random

    def to_dict(self) -> dict[str, Any]:
        flagged = {"random_weights": True} if self.random_weights else {}  # read back from the lineage
        return {
            "schema_version": self.schema_version, **flagged,
            "name": self.name,
            "task": self.task,
            "format": self.format,
            "files": {k: dict(v) for k, v in self.files.items()},
            "inputs": [t.to_dict() for t in self.spec.inputs],
            "outputs": [t.to_dict() for t in self.spec.outputs],
            "tolerance": self.spec.to_dict()["tolerance"],
            **({"fixed_batch": self.spec.fixed_batch} if self.spec.fixed_batch is not None else {}),
            **({"example_dims": dict(self.spec.example_dims)} if self.spec.example_dims else {}),
            "preprocessing": dict(self.preprocessing),
            "labels": list(self.labels),
            "architecture": dict(self.architecture) if self.architecture else None,
            "lineage": [s.to_dict() for s in self.lineage],
            "metrics": dict(self.metrics),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Manifest:
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ArtifactError(
                f"manifest schema_version is {version!r}, this laser reads {SCHEMA_VERSION}; "
                "re-create the bundle with this version of laser"
            )
        spec = ModelSpec.from_dict({"inputs": d["inputs"], "outputs": d["outputs"],
                                    "tolerance": d.get("tolerance", {}), "fixed_batch": d.get("fixed_batch"),
                                    "example_dims": d.get("example_dims", {})})
        return cls(
            name=d["name"], task=d["task"], format=d["format"], spec=spec, files=d["files"],
            preprocessing=d.get("preprocessing") or {}, labels=tuple(d.get("labels") or ()),
            architecture=d.get("architecture"), lineage=tuple(Step.from_dict(s) for s in d.get("lineage", ())),
            metrics=d.get("metrics") or {}, schema_version=version,
        )


_WORKSPACE: list[Path] = []


def workspace(prefix: str = "artifact") -> Path:
    """A fresh private directory for an unsaved artifact's files; removed when the process exits."""
    if not _WORKSPACE:
        _WORKSPACE.append(Path(tempfile.mkdtemp(prefix="laser-")))
        atexit.register(shutil.rmtree, _WORKSPACE[0], True)
    return Path(tempfile.mkdtemp(prefix=prefix + "-", dir=_WORKSPACE[0]))


class Artifact:
    """A model file (or files) + its manifest. Create with ``from_module``/``from_files``/``open``."""

    def __init__(self, manifest: Manifest, paths: Mapping[str, Path], location: Path | None = None,
                 module: torch.nn.Module | None = None):
        self.manifest = manifest
        self._paths = {k: Path(v) for k, v in paths.items()}  # relative name -> absolute path now
        self.location = location  # the bundle directory, if this artifact was saved or opened
        self._module = module

    # -- read-only views --------------------------------------------------------------------
    name = property(lambda self: self.manifest.name)
    task = property(lambda self: self.manifest.task)
    format = property(lambda self: self.manifest.format)
    spec = property(lambda self: self.manifest.spec)
    labels = property(lambda self: self.manifest.labels)
    lineage = property(lambda self: self.manifest.lineage)
    metrics = property(lambda self: self.manifest.metrics)
    preprocessing = property(lambda self: self.manifest.preprocessing)
    random_weights = property(lambda self: self.manifest.random_weights)

    def __repr__(self) -> str:
        where = f" at {self.location}" if self.location else " (unsaved)"
        return f"Artifact({self.name!r}, format={self.format!r}, steps={len(self.lineage)}{where})"

    def file(self, role: str = "model") -> Path:
        """Path of the (first) file with this role: 'model' (onnx/torchscript/ort/executorch) or 'weights' (torch)."""
        for rel, meta in self.manifest.files.items():
            if meta.get("role") == role:
                return self._paths[rel]
        roles = sorted({m.get("role", "?") for m in self.manifest.files.values()})
        raise ArtifactError(f"{self!r} has no file with role {role!r}; it has roles {roles}")

    @property
    def model_file(self) -> Path:
        return self.file("weights" if self.format == "torch" else "model")

    @property
    def files(self) -> dict[str, Path]:
        return dict(self._paths)

    @property
    def bytes(self) -> int:
        return sum(int(m["bytes"]) for m in self.manifest.files.values())

    @property
    def module(self) -> torch.nn.Module:
        """The torch module of a ``torch``-format artifact, rebuilt from its factory and weights."""
        if self.format != "torch":
            raise ArtifactError(f"{self!r} is a {self.format} artifact; only torch artifacts have a module. "
                                "Run it with laser.run(artifact) instead")
        if self._module is None:
            from laser.architecture import build_module

            self._module = build_module(self.manifest.architecture, self.file("weights"))
        return self._module

    # -- new artifacts ---------------------------------------------------------------------
    @classmethod
    def from_files(cls, files: Mapping[str, Path | tuple[Path, str]], *, name: str, task: str, format: str,
                   spec: ModelSpec, step: Step | None = None, **fields: Any) -> Artifact:
        """Wrap existing files. ``files`` maps a bundle-relative name to a path (role 'model') or
        (path, role). Files are hashed now and must not change afterwards."""
        entries, paths = {}, {}
        for rel, value in files.items():
            path, role = value if isinstance(value, tuple) else (value, "model")
            path = Path(path)
            if not path.is_file():
                raise ArtifactError(f"file {path} for {rel!r} does not exist")
            entries[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size, "role": role}
            paths[rel] = path.resolve()
        lineage = tuple(fields.pop("lineage", ())) + ((step,) if step else ())
        manifest = Manifest(name=name, task=task, format=format, spec=spec, files=entries, lineage=lineage,
                            **fields)
        return cls(manifest, paths)

    @classmethod
    def from_module(cls, module: torch.nn.Module, *, name: str, task: str, spec: ModelSpec,
                    architecture: Mapping[str, Any] | None, step: Step | None = None, **fields: Any) -> Artifact:
        """A torch artifact: weights as safetensors + the architecture recipe that rebuilds the module."""
        from laser.architecture import save_weights

        path = workspace(name) / "model.safetensors"
        save_weights(module, path)
        art = cls.from_files({"model.safetensors": (path, "weights")}, name=name, task=task, format="torch",
                             spec=spec, step=step, architecture=architecture, **fields)
        art._module = module.eval()
        return art

    def derive(self, step: Step, *, files: Mapping[str, Path | tuple[Path, str]] | None = None,
               module: torch.nn.Module | None = None, **changes: Any) -> Artifact:
        """A new artifact one step further in the lineage. Pass new ``files`` (or a new torch
        ``module``) to replace the model; ``changes`` override manifest fields (format, spec, name...)."""
        m = self.manifest
        base: dict[str, Any] = dict(name=m.name, task=m.task, format=m.format, spec=m.spec, preprocessing=m.preprocessing,
                    labels=m.labels, architecture=m.architecture, lineage=(*m.lineage, step), metrics={})
        base.update(changes)
        if module is not None:  # a new torch module: always a torch artifact
            lineage = base.pop("lineage")
            base.pop("format")
            return Artifact.from_module(module, lineage=lineage, **base)
        if files is None:  # same files, new manifest (e.g. metrics recorded)
            return Artifact(replace(m, **{k: v for k, v in base.items()}), self._paths, module=self._module)
        lineage = base.pop("lineage")
        return Artifact.from_files(files, lineage=lineage, **base)

    def with_metrics(self, metrics: Mapping[str, Any]) -> Artifact:
        """The same artifact with measured metrics merged into its manifest (files unchanged)."""
        new = replace(self.manifest, metrics={**self.manifest.metrics, **metrics})
        return Artifact(new, self._paths, location=None, module=self._module)

    # -- disk ------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> Artifact:
        """Write the bundle to ``directory`` atomically and return the artifact opened from there.

        Files are written to a staging directory beside the target, fsynced, then swapped in with
        one rename: a crash at any point leaves the earlier bundle at ``directory`` intact.
        """
        target = Path(directory).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and not (target / MANIFEST).is_file() and any(target.iterdir()):
            raise ArtifactError(f"{target} exists and is not a laser bundle (no {MANIFEST}); "
                                "choose an empty or new directory")
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
        try:
            for rel, src in self._paths.items():
                dst = staging / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                if sha256_file(dst) != self.manifest.files[rel]["sha256"]:
                    raise ArtifactError(f"{src} changed since the artifact was created; re-create the artifact")
                _fsync(dst)
            data = json.dumps(json_safe(self.manifest.to_dict(), finite=False), indent=2, sort_keys=False)
            (staging / MANIFEST).write_text(data + "\n")
            _fsync(staging / MANIFEST)
            _swap_in(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return Artifact.open(target)

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> Artifact:
        """Open a bundle, verifying every file's presence and sha256."""
        root = Path(directory)
        mpath = root / MANIFEST
        if not mpath.is_file():
            raise ArtifactError(f"{root} is not a laser bundle: {MANIFEST} is missing")
        try:
            manifest = Manifest.from_dict(json.loads(mpath.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{mpath} is not a valid manifest ({type(exc).__name__}: {exc}); "
                                "re-save the bundle") from exc
        paths = {}
        for rel, meta in manifest.files.items():
            path = (root / rel).resolve()
            if root.resolve() not in path.parents:
                raise ArtifactError(f"manifest of {root} names a file outside the bundle: {rel!r}")
            if not path.is_file():
                raise ArtifactError(f"bundle {root} is missing {rel!r}; restore it or re-export the model")
            if sha256_file(path) != meta["sha256"]:
                raise ArtifactError(f"bundle {root}: {rel!r} was altered (sha256 does not match the manifest); "
                                    "restore the original file or re-export the model")
            paths[rel] = path
        return cls(manifest, paths, location=root)


def json_safe(obj: Any, finite: bool = True) -> Any:
    """A copy of ``obj`` that ``json.dumps`` writes: mappings with str keys, lists for tuples, sets and
    other sequences, Python numbers for numpy/torch scalars (lists for arrays), str for paths. With
    ``finite`` NaN and infinities become None (strict JSON, as reports are written); without, they stay
    floats. Anything else is returned as it is (``json.dumps`` refuses it, or its ``default`` handles it).
    The one JSON converter: manifests, reports and the optimize cache all go through it."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v, finite) for k, v in obj.items()}
    if isinstance(obj, str):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        try:
            obj = obj.item()
        except (ValueError, RuntimeError):  # an array of several elements
            return json_safe(obj.tolist(), finite)
    if isinstance(obj, float):
        return None if finite and not math.isfinite(obj) else obj
    if isinstance(obj, Sequence | set | frozenset):
        return [json_safe(v, finite) for v in obj]
    return obj


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


_RENAME_EXCHANGE = 2


def _swap_in(staging: Path, target: Path) -> None:
    """Make ``staging`` become ``target``. With an existing target, exchange the two atomically
    (Linux renameat2 RENAME_EXCHANGE), so there is no instant without a complete bundle at target;
    the old bundle ends up at ``staging`` and is removed by the caller."""
    if not target.exists():
        os.rename(staging, target)
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        rc = libc.renameat2(-100, os.fsencode(staging), -100, os.fsencode(target), _RENAME_EXCHANGE)
        if rc == 0:
            return
    except (AttributeError, OSError):
        pass
    # Fallback (no renameat2): move the old bundle aside, move the new one in, then drop the old one.
    aside = staging.with_name(staging.name + ".old")
    os.rename(target, aside)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(aside, target)
        raise
    os.rename(aside, staging)  # the caller removes staging
