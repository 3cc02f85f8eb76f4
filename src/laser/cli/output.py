"""Terminal output helpers: single-object JSON for --json, and the tables and human units of ``laser.text``."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from laser.text import human_bytes, human_count, percent, table

__all__ = ["emit_json", "human_bytes", "human_count", "percent", "table"]


def emit_json(obj: Mapping[str, Any]) -> None:
    """One JSON object on stdout, nothing else (scripts rely on it)."""
    json.dump(obj, sys.stdout, indent=2, default=_default)
    sys.stdout.write("\n")


def _default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return str(obj)
