"""The device catalog: data in ``devices.toml`` (next to this file), read into frozen records.

Every figure carries its value, its kind (``vendor peak`` / ``vendor spec`` from a spec sheet,
``measured`` / ``estimated`` for the machine laser runs on) and its source; a figure the vendor does not
state is absent, never guessed. ``load`` refuses a catalog with a figure that has no source.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from laser.errors import ConfigError, NotFoundError

CATALOG_FILE = Path(__file__).with_name("devices.toml")
PRECISIONS = ("fp32", "fp16", "int8")
# figure key -> (unit, what it is)
FIGURES: dict[str, tuple[str, str]] = {
    "fp32_tflops": ("TFLOP/s", "peak FP32 throughput"),
    "fp16_tflops": ("TFLOP/s", "peak FP16 throughput"),
    "int8_tops": ("TOP/s", "peak INT8 throughput"),
    "bandwidth_gbs": ("GB/s", "memory bandwidth"),
    "memory_gb": ("GB", "memory capacity"),
    "storage_gb": ("GB", "weight storage (flash)"),
    "tdp_w": ("W", "power (TDP or typical)"),
    "price_usd": ("US$", "typical price"),
}
PEAK_KEY = {"fp32": "fp32_tflops", "fp16": "fp16_tflops", "int8": "int8_tops"}
KINDS = ("vendor peak", "vendor spec", "measured", "estimated")


@dataclass(frozen=True)
class Figure:
    value: float
    kind: str  # one of KINDS
    source: str  # a URL, or for measured/estimated figures the method in words
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "kind": self.kind, "source": self.source, **({"note": self.note} if self.note else {})}


@dataclass(frozen=True)
class Device:
    id: str
    name: str
    kind: str
    runtime: str
    formats: tuple[str, ...]
    precisions: tuple[str, ...]
    figures: dict[str, Figure] = field(default_factory=dict)
    supported_ops: frozenset[str] | None = None  # None: the runtime runs any ONNX op
    supported_ops_source: str = ""
    measured: bool = False  # the machine laser runs on (its figures measured here)

    def value(self, key: str) -> float | None:
        f = self.figures.get(key)
        return f.value if f is not None else None

    def peak_ops(self, precision: str) -> float | None:
        """Peak operations per second (1 op = 1 FLOP; a MAC is 2) at ``precision``, or None if unstated."""
        v = self.value(PEAK_KEY[precision])
        return v * 1e12 if v is not None else None

    @property
    def sources(self) -> list[str]:
        urls = {f.source for f in self.figures.values() if f.source.startswith("http")}
        if self.supported_ops_source:
            urls.add(self.supported_ops_source)
        return sorted(urls)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "kind": self.kind, "runtime": self.runtime,
                "formats": list(self.formats), "precisions": list(self.precisions), "measured": self.measured,
                "figures": {k: f.to_dict() | {"unit": FIGURES[k][0]} for k, f in self.figures.items()},
                "supported_ops": sorted(self.supported_ops) if self.supported_ops is not None else None,
                "sources": self.sources}


def _figure(device: str, key: str, raw: Any) -> Figure:
    where = f"device {device!r}, figure {key!r}"
    if not isinstance(raw, dict) or "value" not in raw:
        raise ConfigError(f"{where}: write {{ value = ..., kind = \"vendor peak\", source = \"https://...\" }}")
    if not isinstance(raw["value"], (int, float)) or raw["value"] <= 0:
        raise ConfigError(f"{where}: value must be a positive number, got {raw['value']!r}")
    if raw.get("kind") not in KINDS:
        raise ConfigError(f"{where}: kind must be one of {KINDS}, got {raw.get('kind')!r}")
    source = str(raw.get("source") or "")
    if not source.startswith("https://") and raw["kind"].startswith("vendor"):
        raise ConfigError(f"{where} has no source: every vendor figure needs the https:// URL of its spec sheet")
    if not source:
        raise ConfigError(f"{where} has no source: say how it was measured or estimated")
    return Figure(float(raw["value"]), raw["kind"], source, str(raw.get("note") or ""))


def device_from_dict(d: dict[str, Any]) -> Device:
    """One ``[[device]]`` table, checked: known keys, known precisions, every figure sourced."""
    name = d.get("id") or "?"
    missing = [k for k in ("id", "name", "kind", "runtime", "formats", "precisions") if k not in d]
    if missing:
        raise ConfigError(f"device {name!r} lacks {missing}; see the header of {CATALOG_FILE.name}")
    known = {"id", "name", "kind", "runtime", "formats", "precisions", "supported_ops", "supported_ops_source",
             "measured", *FIGURES}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"device {name!r}: unknown keys {unknown}; known: {sorted(known)}")
    bad = [p for p in d["precisions"] if p not in PRECISIONS]
    if bad:
        raise ConfigError(f"device {name!r}: unknown precisions {bad}; use {PRECISIONS}")
    ops = d.get("supported_ops")
    if ops is not None and not str(d.get("supported_ops_source", "")).startswith("https://"):
        raise ConfigError(f"device {name!r}: supported_ops needs supported_ops_source (the URL of the op list)")
    figures = {k: v if isinstance(v, Figure) else _figure(name, k, v) for k, v in d.items() if k in FIGURES}
    return Device(id=d["id"], name=d["name"], kind=d["kind"], runtime=d["runtime"], formats=tuple(d["formats"]),
                  precisions=tuple(d["precisions"]), figures=figures,
                  supported_ops=frozenset(ops) if ops is not None else None,
                  supported_ops_source=str(d.get("supported_ops_source", "")), measured=bool(d.get("measured")))


def load(path: str | Path | None = None) -> list[Device]:
    """The devices of a catalog file (default: the one shipped with laser)."""
    path = Path(path) if path is not None else CATALOG_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise NotFoundError(f"device catalog {str(path)!r} does not exist; pass a TOML file with [[device]] "
                            f"tables (see {CATALOG_FILE.name} in laser.advise)") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"device catalog {path.name!r} is not valid TOML: {exc}") from exc
    devices = [device_from_dict(d) for d in data.get("device", [])]
    if not devices:
        raise ConfigError(f"device catalog {path.name!r} has no [[device]] table")
    ids = [d.id for d in devices]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"device catalog {path.name!r} repeats ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    return devices
