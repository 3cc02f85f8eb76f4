"""The model repository: which models and versions are served, loaded, warmed up and kept in sync.

Sources, each given as a path, ``NAME=path`` or an Artifact:

- a repository root ``<repo>/<model>/<version>/`` of laser bundles (versions are positive integers;
  an optional ``<repo>/<model>/config.json`` overrides serving settings for that model);
- one model directory ``<model>/<version>/``;
- one bundle directory (served as version 1), or anything ``laser.load`` reads (a catalog name...).

A version is READY only after its runner ran every batch size it can be given (warm-up). A model or
version that fails to load is FAILED with its reason while the others keep serving; polling reloads
versions whose ``laser.json`` changed, and a failed reload keeps the old version serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from laser.artifact import MANIFEST, Artifact
from laser.errors import ArtifactError, ConfigError, LaserError, NotFoundError
from laser.serve.batching import Batcher, Execution, Load, _check_batch
from laser.serve.codec import NAME, VERSION
from laser.serve.errors import ServeError, public_message
from laser.serve.metrics import Metrics
from laser.serve.sequence import Sequences
from laser.serve.settings import ModelSettings, parse_policy

log = logging.getLogger("laser.serve")

SETTINGS_FILE = "config.json"
__all__ = ["ModelSettings", "ModelVersion", "Repository", "load_version", "parse_policy"]


class ModelVersion:
    """One loaded, warmed-up version: artifact + runner + its batcher."""

    def __init__(self, name: str, version: str, artifact: Artifact, runner: Any, settings: ModelSettings,
                 fingerprint: str, metrics: Metrics | None, load: Load | None = None,
                 execution: Execution | None = None):
        self.name, self.version, self.artifact, self.runner = name, version, artifact, runner
        self.settings, self.fingerprint, self.metrics = settings, fingerprint, metrics
        self.spec = served_spec(artifact, runner)
        self.batchable = batchable(self.spec)
        self.decoupled = bool(getattr(runner, "decoupled", False))  # several responses to one request
        self.max_batch_size = max_batch_size(self.spec, settings)
        self.execution = execution or Execution.unmeasured()
        self.batcher = Batcher(runner, model=name, version=version, max_batch_size=max(1, self.max_batch_size),
                               max_queue_delay_ms=settings.max_queue_delay_ms,
                               preferred_batch_sizes=settings.preferred_batch_sizes,
                               max_queue_size=settings.max_queue_size, dynamic=settings.dynamic_batching,
                               batched=self.batchable, metrics=metrics, load=load, execution=self.execution)
        if metrics:
            metrics.execution.labels(name, version, self.execution.strategy).set(1)
        # State pairs from the settings, else those the artifact declares (e.g. silero-vad's card)
        pairs = dict(settings.sequence_state) or dict(artifact.preprocessing.get("state") or {})
        self.sequences = None if not pairs else Sequences(
            self.spec, pairs, max_sequences=settings.max_sequences,
            idle_s=settings.sequence_idle_s, batched=self.batchable)
        self.state = "READY"
        self.pipeline: Any = None  # the task pipeline of /pipeline requests, built on first use

    @property
    def backend(self) -> str:
        return str(getattr(self.runner, "backend", "custom"))

    async def close(self) -> None:
        self.state = "UNAVAILABLE"
        if self.metrics:
            self.metrics.forget(self.name, self.version, self.batcher.stats)
        await self.batcher.close()
        close = getattr(self.runner, "close", None)
        if close:
            close()


def served_spec(artifact: Artifact, runner: Any) -> Any:
    """What clients send and get: the artifact's spec, or the runner's when it serves the model behind its
    own pre/post-processing (a text classifier behind its tokenizer takes TEXT)."""
    from laser.runtime.base import Runner

    return runner.spec if isinstance(runner, Runner) else artifact.spec


def batchable(spec: Any) -> bool:
    """Every input starts with the same named dynamic dim (the batch)."""
    firsts = {t.shape[0] if t.shape else None for t in spec.inputs}
    return len(firsts) == 1 and isinstance(next(iter(firsts)), str)


def max_batch_size(spec: Any, settings: ModelSettings) -> int:
    """0 = the model has no batch dim (Triton's convention): requests pass through whole."""
    return settings.max_batch_size if batchable(spec) else 0


def fingerprint(location: Path | Artifact | str) -> str:
    if not isinstance(location, Path):
        return "static"
    try:
        return hashlib.sha256((location / MANIFEST).read_bytes()).hexdigest()
    except OSError:
        return "missing"


def load_version(name: str, version: str, location: Path | Artifact | str, settings: ModelSettings,
                 metrics: Metrics | None, server_load: Load | None = None) -> ModelVersion:
    """Open, build the runner, warm up every batch size, measure a batch-1 call to choose how the version
    runs its batches (Execution), all once (blocking: run it in a thread)."""
    from laser.runtime import run

    fp = fingerprint(location)
    if isinstance(location, Artifact):
        art = location
    elif isinstance(location, Path):
        art = Artifact.open(location)
    else:
        from laser.loader import load

        art = load(location, weights=settings.weights, random_weights=settings.random_weights)
    options = {"threads": settings.threads} if settings.threads else {}
    backend: Callable[..., Any] | str = settings.backend
    runner = backend(art, **options) if callable(backend) else run(art, backend=backend, **options)
    if settings.text_input and art.preprocessing.get("type") == "text":
        from laser.hub.pipelines.text import TextRunner, takes_text

        if takes_text(art):  # its tokenizer runs here: clients send text
            runner = TextRunner(art, runner)
    spec = served_spec(art, runner)
    execution = Execution.unmeasured()
    if settings.warmup:
        for b in range(1, max(1, max_batch_size(spec, settings)) + 1):
            out = runner.warmup(1, batch=b)
            if batchable(spec):
                _check_batch(out, b)
        execution = Execution.measure(runner, spec.example_inputs(batch=1))
    return ModelVersion(name, version, art, runner, settings, fp, metrics, server_load, execution)


@dataclass(eq=False)
class _Entry:
    name: str
    kind: str  # dir | bundle | artifact | source
    location: Any
    settings: ModelSettings
    versions: dict[str, ModelVersion]
    failed: dict[str, tuple[str, str]]  # version -> (fingerprint, reason)
    error: str = ""
    loading: bool = False
    unloaded: bool = False
    override: Mapping[str, Any] | None = None  # ModelSettings values of the last load request's config

    def scan(self, defaults: ModelSettings) -> dict[str, Path | Artifact | str]:
        """Versions to serve now, by the version policy (reads config.json of a model directory, then
        applies the configuration override of the last load request)."""
        self.settings = defaults
        if self.kind == "dir":
            cfg = self.location / SETTINGS_FILE
            if cfg.is_file():
                try:
                    values = json.loads(cfg.read_text())
                except (OSError, ValueError) as exc:
                    raise ConfigError(f"{SETTINGS_FILE} of model {self.name!r} is not valid JSON ({exc})") from None
                if not isinstance(values, dict):
                    raise ConfigError(f"{SETTINGS_FILE} of model {self.name!r} must hold a JSON object")
                self.settings = defaults.override(values, f"{SETTINGS_FILE} of model {self.name!r}")
        if self.override:
            self.settings = self.settings.override(self.override, f"the load request's config of {self.name!r}")
        if self.kind != "dir":
            return {"1": self.location}
        root: Path = self.location
        found = [d.name for d in root.iterdir() if d.is_dir() and VERSION.match(d.name)] if root.is_dir() else []
        if not found:
            raise ArtifactError(f"model {self.name!r} has no version directories (1/, 2/, ...)")
        return {v: root / v for v in self.settings.select(found)}


def _reason(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, (LaserError, ServeError)) else f"{type(exc).__name__}: {exc}"
    return public_message(text)[:500]


class Repository:
    """All served models by name. Lives on the server's event loop; loading runs in worker threads."""

    def __init__(self, sources: Sequence[str | Path | Artifact], settings: ModelSettings | None = None, *,
                 metrics: Metrics | None = None, load: Load | None = None):
        self.defaults = settings or ModelSettings()
        self.metrics = metrics
        self.load_now = load  # requests in the server now, read by every version's batcher
        self.roots: list[Path] = []
        self._entries: dict[str, _Entry] = {}
        self.loaded = False  # the initial load pass is done
        for source in sources:
            self._add_source(source)
        if not self._entries and not self.roots:
            raise ConfigError("no models to serve; give a bundle directory, a repository <repo>/<model>/<version>/ "
                              "or a catalog name such as digits-cnn")

    # -- sources --------------------------------------------------------------------------------
    def _add(self, name: str, kind: str, location: Any) -> None:
        if not NAME.match(name) or ".." in name:
            raise ConfigError(f"model name {name!r} is not usable in URLs; name it with NAME=SOURCE using letters, "
                              "digits, '_', '.', '-'")
        if name in self._entries:
            raise ConfigError(f"two models are named {name!r}; name one with NAME=SOURCE")
        self._entries[name] = _Entry(name, kind, location, self.defaults, {}, {})

    def _add_source(self, source: str | Path | Artifact) -> None:
        name = None
        if isinstance(source, str) and "=" in source and NAME.match(source.partition("=")[0]):
            name, _, source = source.partition("=")
        if isinstance(source, Artifact):
            self._add(name or source.name, "artifact", source)
            return
        path = Path(source)
        if path.is_dir() and (path / MANIFEST).is_file():
            self._add(name or _manifest_name(path), "bundle", path.resolve())
        elif path.is_dir() and any(VERSION.match(d.name) for d in path.iterdir() if d.is_dir()):
            self._add(name or path.resolve().name, "dir", path.resolve())
        elif path.is_dir():
            if name:
                raise ConfigError(f"{name}={source}: a repository root holds many models; drop the NAME=")
            self.roots.append(path.resolve())
            self._discover()
        else:
            text = str(source)
            if not path.exists() and ("/" in text or "\\" in text or text.startswith(".")):  # a path, not a catalog name
                raise NotFoundError(f"{text} does not exist (no bundle, model directory or repository there); a "
                                    "repository holds <repo>/<model>/<version>/ bundles, e.g. "
                                    f"`laser export digits-cnn --to onnx -o {text.rstrip('/')}/digits-cnn/1`")
            self._add(name or re.sub(r"[^A-Za-z0-9_.\-]", "_", Path(text.rpartition(":")[2]).stem or text), "source",
                      text)

    def _discover(self) -> list[_Entry]:
        """Model directories under the repository roots that are not known yet."""
        new = []
        for root in self.roots:
            for child in sorted(root.iterdir()) if root.is_dir() else ():
                if child.is_dir() and not child.name.startswith(".") and child.name not in self._entries:
                    if NAME.match(child.name) and ".." not in child.name:
                        self._add(child.name, "dir", child)
                        new.append(self._entries[child.name])
                    else:
                        log.warning("skipping model directory %r: not a usable model name", child.name)
        return new

    # -- loading --------------------------------------------------------------------------------
    async def start(self) -> None:
        """The initial load pass: every model, one after the other (each warms up on all cores)."""
        for entry in list(self._entries.values()):
            await self._sync(entry)
        self.loaded = True

    async def poll(self, interval_s: float) -> None:
        """Re-scan forever: new models and versions load, changed ones reload, removed ones unload."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                self._discover()
                for entry in list(self._entries.values()):
                    if entry.kind in ("dir", "bundle") and not entry.unloaded:
                        await self._sync(entry)
            except Exception as exc:  # keep polling whatever one pass hit
                log.error("repository poll failed", exc_info=exc)

    async def _sync(self, entry: _Entry, force: bool = False) -> None:
        entry.loading = True
        try:
            try:
                wanted = entry.scan(self.defaults)
                entry.error = ""
            except Exception as exc:
                entry.error = _reason(exc)
                log.error("model %s: %s", entry.name, entry.error)
                return
            check = dict(wanted)
            if entry.kind == "dir":  # versions kept serving as a fallback stay in sync with their files too
                check.update({v: entry.location / v for v in entry.versions
                              if v not in check and (entry.location / v).is_dir()})
            for version, location in check.items():
                fp = fingerprint(location)
                current = entry.versions.get(version)
                if not force and current is not None and current.fingerprint == fp:
                    continue
                if not force and current is None and entry.failed.get(version, ("",))[0] == fp:
                    continue  # same broken files as last time: do not retry every poll
                await self._load(entry, version, location, fp)
            if any(v in entry.versions for v in wanted):  # unload the rest only once a wanted one serves
                for version in [v for v in entry.versions if v not in wanted]:
                    await self._retire(entry, version)
                for version in [v for v in entry.failed if v not in wanted]:
                    del entry.failed[version]
        finally:
            entry.loading = False

    async def _load(self, entry: _Entry, version: str, location: Any, fp: str) -> None:
        log.info("loading model %s version %s", entry.name, version,
                 extra={"event": "model_loading", "model": entry.name, "version": version})
        try:
            new = await asyncio.to_thread(load_version, entry.name, version, location, entry.settings, self.metrics,
                                          self.load_now)
        except Exception as exc:
            reason = _reason(exc)
            entry.failed[version] = (fp, reason)
            kept = " (the previous files keep serving)" if version in entry.versions else ""
            log.error("model %s version %s failed to load: %s%s", entry.name, version, reason, kept,
                      extra={"event": "model_failed", "model": entry.name, "version": version})
            return
        new.batcher.start()
        old = entry.versions.get(version)
        entry.versions[version] = new
        entry.failed.pop(version, None)
        if self.metrics:
            self.metrics.model_ready.labels(entry.name, version).set(1)
        log.info("model %s version %s READY (backend %s, max_batch_size %d)", entry.name, version, new.backend,
                 new.max_batch_size, extra={"event": "model_ready", "model": entry.name, "version": version})
        if old is not None:
            await old.close()

    async def _retire(self, entry: _Entry, version: str) -> None:
        mv = entry.versions.pop(version)
        log.info("unloading model %s version %s", entry.name, version,
                 extra={"event": "model_unloaded", "model": entry.name, "version": version})
        await mv.close()

    # -- control plane --------------------------------------------------------------------------
    async def load(self, name: str, override: Mapping[str, Any] | None = None) -> None:
        """(Re)load a model from disk: a known one, or a new directory under a repository root. ``override``:
        ModelSettings values that replace the model's settings from now on (validated first: a bad one
        changes nothing). A load that fails is an error even when the previous version keeps serving."""
        if name not in self._entries:
            self._discover()
        entry = self._entries.get(name)
        if entry is None:
            raise ServeError(404, f"no model {name!r} in the repository")
        previous = entry.override
        if override is not None:
            entry.settings.override(override, f"the load request's config of {name!r}")  # ConfigError -> 400
            entry.override = dict(override)
        entry.unloaded = False
        await self._sync(entry, force=True)
        if entry.error or entry.failed or not entry.versions:
            entry.override = previous
            reasons = "; ".join(r for _, r in entry.failed.values()) or entry.error or "no version loaded"
            kept = " (the previous version keeps serving)" if entry.versions else ""
            raise ServeError(400, f"model {name!r} failed to load: {reasons}{kept}")

    async def unload(self, name: str) -> None:
        entry = self._entries.get(name)
        if entry is None:
            raise ServeError(404, f"no model {name!r} in the repository")
        entry.unloaded = True
        for version in list(entry.versions):
            await self._retire(entry, version)

    async def close(self) -> None:
        for entry in self._entries.values():
            for version in list(entry.versions):
                await self._retire(entry, version)

    # -- lookups --------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._entries)

    def versions(self, name: str) -> list[ModelVersion]:
        entry = self._entry(name)
        return [entry.versions[v] for v in sorted(entry.versions, key=int)]

    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            shown = ", ".join(self.names()[:20])
            raise ServeError(404, f"Request for unknown model: {name!r} is not found; this server serves: {shown}")
        return entry

    def get(self, name: str, version: str = "") -> ModelVersion:
        """The version to run: the given one, or the highest READY version."""
        entry = self._entry(name)
        if version:
            mv = entry.versions.get(version)
            if mv is not None:
                return mv
            if version in entry.failed:
                raise ServeError(503, f"model {name!r} version {version} failed to load: {entry.failed[version][1]}")
            raise ServeError(404, f"model {name!r} has no version {version}; serving: {sorted(entry.versions, key=int)}")
        if entry.versions:
            return entry.versions[max(entry.versions, key=int)]
        if entry.unloaded:
            raise ServeError(503, f"model {name!r} is unloaded", retry_after=5)
        if entry.loading or not self.loaded:
            raise ServeError(503, f"model {name!r} is loading", retry_after=1)
        reasons = "; ".join(r for _, r in entry.failed.values()) or entry.error or "no version loaded"
        raise ServeError(503, f"model {name!r} is not available: {reasons}")

    def index(self, ready: bool = False) -> list[dict[str, str]]:
        """Triton's repository index: every model/version with state and reason (``ready``: READY ones only)."""
        rows = []
        for name in self.names():
            entry = self._entries[name]
            versions = sorted(set(entry.versions) | set(entry.failed), key=int)
            if not versions:
                state = "UNAVAILABLE" if entry.unloaded else ("LOADING" if entry.loading else "FAILED")
                rows.append({"name": name, "version": "", "state": state,
                             "reason": "unloaded" if entry.unloaded else entry.error})
            for v in versions:
                mv, failed = entry.versions.get(v), entry.failed.get(v)
                reason = f"reload failed, previous files keep serving: {failed[1]}" if mv and failed else (
                    failed[1] if failed else "")
                rows.append({"name": name, "version": v, "state": mv.state if mv else "FAILED", "reason": reason})
        return [r for r in rows if r["state"] == "READY"] if ready else rows


def _manifest_name(path: Path) -> str:
    try:
        name = json.loads((path / MANIFEST).read_text()).get("name", "")
    except (OSError, ValueError, AttributeError):
        name = ""
    return name if isinstance(name, str) and NAME.match(name) else path.resolve().name
