"""Ready models by name: ``laser.hub.load("digits-cnn")``."""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path

from laser.artifact import Artifact, Step
from laser.errors import NotFoundError
from laser.hub.catalog import CATALOG, Card


def card(name: str) -> Card:
    if name not in CATALOG:
        close = difflib.get_close_matches(name, CATALOG, n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise NotFoundError(f"no model named {name!r} in the catalog{hint} (see `laser hub list`)")
    return CATALOG[name]


def weights_path(c: Card) -> Path:
    """Local path of a card's weights."""
    if c.builtin:
        return Path(str(resources.files("laser") / "assets" / c.builtin))
    raise NotFoundError(f"{c.name!r} has no local weights; pass weights=PATH")


def load(name: str, weights: str | Path | None = None, random_weights: bool = False) -> Artifact:
    """The catalog model as a torch Artifact (weights from the card, a local file, or random)."""
    from laser.models.factory import build_architecture, load_weights

    c = card(name)
    module = build_architecture(c.architecture)
    if random_weights:
        source = "random"
    else:
        path = Path(weights) if weights else weights_path(c)
        load_weights(module, path)
        source = str(path) if weights else (f"builtin:{c.builtin}" if c.builtin else c.url or "")
    step = Step("load", params={"source": f"hub:{name}", "weights": source})
    return Artifact.from_module(module.eval(), name=name, task=c.task, spec=c.spec, architecture=c.architecture,
                                preprocessing=c.preprocessing, labels=c.labels, step=step)


__all__ = ["CATALOG", "Card", "card", "load"]
