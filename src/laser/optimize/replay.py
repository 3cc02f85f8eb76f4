"""Recipe replay: a winner.toml written by an earlier optimize run, read back to rebuild and re-measure that
artifact — its stages become the only recipe, and its [meta] table supplies the model, format, backend, data,
inputs and budget the caller did not give."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from laser.errors import ConfigError
from laser.optimize.candidates import Recipe


@dataclass(frozen=True)
class Replay:
    path: Path
    recipe: Recipe
    meta: dict[str, Any]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Replay:
        from laser.stages import load_recipe

        stages, meta = load_recipe(Path(path))
        missing = [k for k in ("model", "format", "backend") if k not in meta]
        if missing:
            raise ConfigError(f"recipe {path} has no {missing} in its [meta] table; laser optimize --recipe reads "
                              "the winner.toml an optimize run writes (it names the base model, format and backend)")
        return cls(Path(path), Recipe(str(meta.get("recipe", "recipe")), tuple(stages), str(meta["format"])), meta)

    def fill(self, args: dict[str, Any], default_data: str, default_budget: str) -> dict[str, Any]:
        """``args`` (model, data, inputs, budget, objective, random_weights) with what the caller left at its
        default taken from the recipe."""
        m, out = self.meta, dict(args)
        out["model"] = args["model"] if args["model"] is not None else m.get("model")
        out["random_weights"] = args["random_weights"] or bool(m.get("random_weights"))
        if args["data"] == default_data:
            out["data"] = m.get("data") or None
        out["inputs"] = args["inputs"] if args["inputs"] is not None else m.get("inputs")
        if args["budget"] == default_budget and "budget" in m:
            out["budget"] = None if m["budget"] == "(no constraint)" else m["budget"]
            out["objective"] = str(m.get("objective", args["objective"]))
        return out

    def base_note(self, base_digest: str) -> str | None:
        """Said when the base model is not the one the recipe was made from."""
        theirs = self.meta.get("base_sha256")
        if not theirs or theirs == base_digest:
            return None
        return (f"the base model differs from the one {self.path} was made from (sha256 {base_digest[:12]} here, "
                f"{str(theirs)[:12]} in the recipe): the rebuilt artifact is not the same model")
