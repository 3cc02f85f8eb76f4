"""Terminal output helpers: single-object JSON for --json, and the tables and human units of ``laser.text``."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from laser.artifact import json_safe
from laser.text import human_bytes, human_count, percent, table

__all__ = ["RANDOM_NOTE", "emit_json", "human_bytes", "human_count", "percent", "table"]

RANDOM_NOTE = "random weights — labels are meaningless (structure-only work; pass --weights FILE for real answers)"


def emit_json(obj: Mapping[str, Any]) -> None:
    """One JSON object on stdout, nothing else (scripts rely on it)."""
    json.dump(json_safe(obj, finite=False), sys.stdout, indent=2, default=_default)
    sys.stdout.write("\n")


def _default(obj: Any) -> Any:
    """What json_safe leaves as it is: objects with ``to_dict``, else their text."""
    return json_safe(obj.to_dict(), finite=False) if hasattr(obj, "to_dict") else str(obj)
