"""Building candidates: a recipe's stages plus the export to the candidate's format, applied to the base model.

Artifacts are keyed by the stages that make them, and every prefix is kept, so a recipe is built once and
exported once per format; a stage that failed fails every candidate built on it at once, with the same
error. Built artifacts are saved to the run's cache, so a resumed run loads them instead of building again.
"""

from __future__ import annotations

from collections.abc import Sequence

from laser.artifact import Artifact
from laser.errors import LaserError
from laser.optimize import candidates as cands
from laser.optimize.cache import Cache, make_key
from laser.optimize.candidates import Recipe
from laser.stages import Stage


class Builder:
    def __init__(self, base: Artifact, base_digest: str, cache: Cache, exporter: str = "auto"):
        self.base, self.base_digest, self.cache, self.exporter = base, base_digest, cache, exporter
        self.built: dict[str, Artifact] = {}
        self.failed: dict[str, LaserError] = {}

    def stages(self, recipe: Recipe, fmt: str) -> list[Stage]:
        """The recipe's stages, then the export to ``fmt`` when the recipe does not end there."""
        built_format = self.base.format if recipe.domain == "torch" else recipe.domain
        return [*recipe.stages, *cands.export_stage(fmt, built_format, self.exporter)]

    def key(self, stages: Sequence[Stage]) -> str:
        return make_key(self.base_digest, [s.to_dict() for s in stages])

    def artifact(self, stages: Sequence[Stage], key: str | None = None) -> Artifact:
        """The artifact the stages make from the base model: from this run, the cache, or built now."""
        key = key or self.key(stages)
        if key in self.built:
            return self.built[key]
        if key in self.failed:  # a stage that failed fails every candidate built on it: say so once, fast
            raise self.failed[key]
        cached = self.cache.load_artifact(key)
        if cached is not None:
            self.built[key] = cached
            return cached
        art = self.artifact(stages[:-1]) if stages else self.base
        if stages:
            try:
                art = stages[-1](art)
            except LaserError as exc:
                self.failed[key] = exc
                raise
            art = self.cache.save_artifact(key, art)
        self.built[key] = art
        return art
