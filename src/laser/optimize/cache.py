"""The resumable cache of an optimize run: measured candidates and the artifacts built for them.

Layout under the output directory::

    cache/results.jsonl          one JSON line per measured (or failed) candidate, appended + fsynced
    cache/artifacts/<key>/       the bundle built for a (recipe, format), reused by every backend

A candidate's key is the sha256 of the base model's content, the recipe's stages as plain data, the
format, the backend and the measurement settings: change any of them and the candidate is measured
again; re-run with the same ones and it is skipped. A line cut short by Ctrl-C or a crash is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from laser.artifact import Artifact, json_safe
from laser.errors import LaserError


def artifact_digest(art: Artifact) -> str:
    """sha256 of what defines a model: its files' sha256 and, for torch, the architecture recipe."""
    m = art.manifest
    parts = {"format": m.format, "files": {k: v["sha256"] for k, v in sorted(m.files.items())},
             "architecture": m.architecture if m.format == "torch" else None}
    return hashlib.sha256(_canonical(parts).encode()).hexdigest()


def make_key(*parts: Any) -> str:
    return hashlib.sha256(_canonical(list(parts)).encode()).hexdigest()[:20]


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


class Cache:
    """Results and artifacts of earlier runs; ``directory=None`` keeps nothing between runs."""

    def __init__(self, directory: str | os.PathLike[str] | None):
        self.root = Path(directory) if directory is not None else None
        self._results: dict[str, dict[str, Any]] = {}
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._results = self._read(self.results_file)

    @property
    def results_file(self) -> Path:
        assert self.root is not None
        return self.root / "results.jsonl"

    @staticmethod
    def _read(path: Path) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if not path.is_file():
            return out
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interrupted write
            if isinstance(rec, dict) and "key" in rec:
                out[rec["key"]] = rec
        return out

    def __contains__(self, key: str) -> bool:
        return key in self._results

    def __len__(self) -> int:
        return len(self._results)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._results.get(key)

    def put(self, key: str, record: Mapping[str, Any]) -> None:
        rec = {**record, "key": key}
        self._results[key] = rec
        if self.root is None:
            return
        line = json.dumps(json_safe(rec, finite=False), default=str) + "\n"
        with open(self.results_file, "a") as f:  # one write per line: a crash loses at most this line
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def keys(self) -> Sequence[str]:
        return list(self._results)

    # -- artifacts -------------------------------------------------------------------------
    def artifact_path(self, key: str) -> Path | None:
        return None if self.root is None else self.root / "artifacts" / key

    def load_artifact(self, key: str) -> Artifact | None:
        path = self.artifact_path(key)
        if path is None or not (path / "laser.json").is_file():
            return None
        try:
            return Artifact.open(path)
        except LaserError:
            return None  # damaged: rebuild it

    def save_artifact(self, key: str, art: Artifact) -> Artifact:
        path = self.artifact_path(key)
        return art if path is None else art.save(path)


