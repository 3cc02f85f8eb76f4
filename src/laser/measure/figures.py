"""One candidate's figures, flat and typed: what budgets, the Pareto front, the doctor and the reports read.

A LASER report entry (``laser.measure``) is nested and carries everything measured; ``Figures`` is the flat
record taken from it, in canonical units (ms, B, J, fraction, percentage points). It is frozen: the final
side-by-side round makes a new record (``retimed``), it never edits one. It reads like a mapping
(``figures["p50_ms"]``, ``figures.get("accuracy")``) so budgets can name figures by key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Figures(Mapping[str, Any]):
    p50_ms: float | None = None  # batch 1, measured
    p90_ms: float | None = None
    p99_ms: float | None = None
    throughput_per_s: float | None = None
    spread_pct: float | None = None  # spread of the median over repeated runs (or rounds, when final)
    bytes: int | None = None  # on disk
    params: int | None = None
    macs: int | None = None  # multiply-accumulates per sample (FLOPs = 2 x MACs)
    energy_j: float | None = None  # joules per inference
    energy_method: str | None = None
    accuracy: float | None = None  # the task metric (fraction), or fidelity 1 - relative L2 without labels
    accuracy_drop_pts: float | None = None  # vs the parent, percentage points (labelled data only)
    rel_l2: float | None = None  # fidelity figures vs the FP32 parent (no labels)
    cosine: float | None = None
    kl: float | None = None
    agreement: float | None = None  # top-1 agreement, when the parent's predictions are diverse
    max_abs_error: float | None = None  # vs the parent, in output units
    robust_accuracy: float | None = None  # under FGSM, when robustness was measured
    screen_p50_ms: float | None = None  # the screening p50, kept when the final round re-timed it
    timing: str = "screen"  # "screen" (one candidate at a time) or "final" (side by side with the finalists)

    def __getitem__(self, key: str) -> Any:
        if key not in _FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_FIELDS)

    def __len__(self) -> int:
        return len(_FIELDS)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Figures:
        """From a stored record (the optimize cache); keys this version does not know are an error, so an
        old cache is never read as if it had figures it lacks."""
        unknown = sorted(set(d) - set(_FIELDS))
        if unknown:
            raise ValueError(f"unknown figure(s) {unknown}; known: {list(_FIELDS)}")
        return cls(**dict(d))

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any], *, metric: str | None, base_accuracy: float = 1.0,
                   agreement_meaningful: bool = False) -> Figures:
        """From a LASER report entry. ``metric``: the task metric accuracy means (with labelled data), or None
        for fidelity to the parent (the entry's ``fidelity`` block)."""
        lat, size, energy = entry.get("latency") or {}, entry.get("size") or {}, entry.get("energy") or {}
        out: dict[str, Any] = {
            "p50_ms": lat.get("p50_ms"), "p90_ms": lat.get("p90_ms"), "p99_ms": lat.get("p99_ms"),
            "throughput_per_s": lat.get("throughput_per_s"), "spread_pct": lat.get("spread_pct"),
            "bytes": size.get("bytes"), "params": size.get("params"), "macs": size.get("macs"),
            "energy_j": energy.get("joules_per_inference"), "energy_method": energy.get("method"),
        }
        if metric is None:
            fid = entry.get("fidelity") or {}
            rel = fid.get("rel_l2")
            out["accuracy"] = None if rel is None else max(0.0, 1.0 - float(rel))  # fidelity: 1 = identical
            out["rel_l2"], out["cosine"], out["kl"] = rel, fid.get("cosine"), fid.get("kl")
            out["agreement"] = fid.get("top1_agreement") if agreement_meaningful else None
            out["max_abs_error"] = fid.get("max_abs_error")
        else:
            acc = (entry.get("accuracy") or {}).get(metric)
            out["accuracy"] = acc
            out["accuracy_drop_pts"] = None if acc is None else round(100 * (base_accuracy - acc), 6)
            out["max_abs_error"] = (entry.get("accuracy") or {}).get("max_abs_error")
        fgsm = (entry.get("robustness") or {}).get("fgsm") or {}
        if fgsm:  # the classic example's epsilon when measured, else the largest one
            out["robust_accuracy"] = fgsm["0.007" if "0.007" in fgsm else max(fgsm, key=float)]
        return cls(**out)

    def retimed(self, p50_ms: float, p90_ms: float, p99_ms: float, spread_pct: float | None) -> Figures:
        """The same candidate re-timed in the final side-by-side round: its screening p50 kept beside."""
        return dataclasses.replace(self, screen_p50_ms=self.p50_ms, p50_ms=p50_ms, p90_ms=p90_ms, p99_ms=p99_ms,
                                   throughput_per_s=1e3 / p50_ms if p50_ms > 0 else None, spread_pct=spread_pct,
                                   timing="final")


_FIELDS = tuple(f.name for f in dataclasses.fields(Figures))
