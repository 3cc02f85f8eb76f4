"""The LASER report: what ``laser.measure`` returns, as JSON, a Markdown table and an HTML page.

JSON shape (other tools read it)::

    {"laser_report": 1, "created": ISO time, "settings": {...}, "hardware": {...}, "skipped": [...],
     "artifacts": [{"name", "backend", "format", "task",
                    "latency": {"p50_ms", "p90_ms", "p99_ms", "throughput_per_s", "batch_size", ...},
                    "accuracy": {metric: value},
                    "size": {"params", "nonzero_params", "macs", "flops", "bytes", ...},
                    "energy": {"joules_per_inference", "gops_per_joule", "method", "source", ...},
                    "robustness": {"clean", "fgsm": {eps: acc}, "pgd": {eps: acc}, "corruptions": {name: acc}},
                    "efficiency": {...}, "figures": {"group.figure": {"unit", "method", "kind"}}}]}

``figures`` labels every number: its unit, how it was obtained, and whether it was ``measured``,
``counted`` (exact, from the model) or ``estimated``. NaN and infinities are written as null.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from laser.artifact import json_safe
from laser.errors import ArtifactError

SCHEMA = 1


@dataclass
class Report:
    artifacts: list[dict[str, Any]]
    hardware: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))

    # -- access ------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> dict[str, Any]:
        """The first entry for an artifact name, or for ``"name@backend"``."""
        for a in self.artifacts:
            if name in (a["name"], f"{a['name']}@{a['backend']}", a.get("label")):
                return a
        raise KeyError(f"no artifact {name!r} in this report; it has {[self.label(a) for a in self.artifacts]}")

    @staticmethod
    def label(entry: dict[str, Any]) -> str:
        return entry.get("label") or f"{entry['name']}@{entry['backend']}"

    # -- JSON --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return json_safe({"laser_report": SCHEMA, "created": self.created, "settings": self.settings,
                       "hardware": self.hardware, "skipped": self.skipped, "artifacts": self.artifacts})

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        if d.get("laser_report") != SCHEMA or "artifacts" not in d:
            raise ArtifactError(f"not a laser report (laser_report={d.get('laser_report')!r}, expected {SCHEMA}); "
                                "give a report.json written by `laser bench --json` or Report.to_json()")
        return cls(artifacts=list(d["artifacts"]), hardware=dict(d.get("hardware") or {}),
                   settings=dict(d.get("settings") or {}), skipped=list(d.get("skipped") or []),
                   created=d.get("created", ""))

    @classmethod
    def from_json(cls, source: str | os.PathLike[str]) -> Report:
        """From JSON text or a path to a report.json."""
        text = os.fspath(source)
        if not text.lstrip().startswith("{"):
            path = Path(text)
            if not path.is_file():
                raise ArtifactError(f"report file {path} does not exist")
            text = path.read_text()
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"report JSON is invalid ({exc}); re-create it with `laser bench --json`") from exc

    # -- human -------------------------------------------------------------------------------
    def rows(self) -> list[tuple[str, str, list[str]]]:
        """(figure, unit, one cell per artifact) — the LASER table, artifacts side by side."""
        from laser.measure.table import rows

        return rows(self)

    def to_markdown(self) -> str:
        """The LASER table (artifacts as columns) and a hardware line, as GitHub Markdown."""
        from laser.measure.table import markdown

        return markdown(self)

    def write_html(self, directory: str | os.PathLike[str]) -> Path:
        """Write report.html (self-contained: plots inlined), report.json and the plots as PNG."""
        from laser.measure.html import write_html

        return write_html(self, Path(directory))
