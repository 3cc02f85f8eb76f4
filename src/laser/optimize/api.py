"""``laser.optimize(...)``: one call from a PyTorch model to the best deployable artifact under a budget."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from laser.artifact import Artifact
from laser.data import Dataset
from laser.optimize import candidates as cands
from laser.optimize import device as on_device
from laser.optimize import targets
from laser.optimize.budget import Budget, parse_duration
from laser.optimize.candidates import Recipe
from laser.optimize.engine import Search
from laser.optimize.evaluate import Settings
from laser.optimize.finals import Timer
from laser.optimize.replay import Replay
from laser.optimize.result import OptimizeResult

DEFAULT_MODEL = "digits-cnn"
DEFAULT_DATA = "digits"
DEFAULT_BUDGET = "accuracy_drop<=1%"


def optimize(model: Artifact | str | os.PathLike[str] | None = None, *, data: Dataset | str | None = "default",
             budget: str | Budget | None = DEFAULT_BUDGET, objective: str = "p50",
             recipes: Sequence[str | Recipe] | str | None = None, formats: Sequence[str] | str | None = None,
             backends: Sequence[str] | str | None = None, output: str | os.PathLike[str] | None = None,
             time_budget: str | float | None = None, resume: bool = True, robustness: bool = False,
             recipe: str | os.PathLike[str] | None = None, settings: Settings | None = None,
             progress: bool = True, random_weights: bool = False, inputs: str | os.PathLike[str] | None = None,
             evaluate: Callable[..., dict[str, Any]] | None = None, timer: Timer | None = None,
             target: str | None = None, on: str | None = None, identity: str | None = None) -> OptimizeResult:
    """Build, measure and rank candidates (recipes × formats × backends); return the outcome.

    ``model``: a catalog name, bundle, file or Artifact (default: the built-in digits-cnn).
    ``data``: labelled dataset (name or Dataset) for accuracy; None = fidelity to the FP32 parent (relative
    L2 of the outputs, with top-1 agreement when the parent's predictions are diverse) on ``inputs``
    (unlabelled samples: an image folder or .npy/.npz files; default: spec example inputs). The default is
    the digits dataset for the built-in model, else None. Without data, recipes that change the function
    and need data to recover (pruning, width search) are left out of the default list; asked for by name
    they are measured and listed as unverified, never chosen.
    ``budget``: constraints such as ``"accuracy_drop<=1%,p50<=5ms,size<=2MB"``; ``accuracy_drop<=1%`` is
    kept unless the budget constrains accuracy itself or says ``accuracy_drop<=none``. ``objective``: what
    the winner minimises (``p50``) or maximises (``accuracy``, ``throughput``).
    ``evaluate`` / ``timer``: replace the measurement of one candidate / the final side-by-side timing
    (tests inject fakes).
    ``output``: directory for report.html, report.json, pareto.png, winner/, winner.toml and the
    resumable cache (re-running with the same directory skips measured candidates).
    ``time_budget``: e.g. "10m"; candidates not reached in time are reported as skipped.
    ``recipes``: names (see ``laser.optimize.candidates``) or ``Recipe`` objects with your own stages.
    ``recipe``: a winner.toml from an earlier run: rebuild that artifact from the base model and measure it.
    ``target``: where the winner is to run (``laser.optimize.targets``: server, mobile, browser); it sets the
    default formats, backends and recipes, refuses those that do not run there, and the winner is one that does.
    ``on``: ``ssh://USER@HOST[:PORT]`` (``identity``: its key): every candidate is measured on that device, in the
    formats its runtimes run, against the FP32 ONNX model there (``laser.optimize.device``); ``target="ssh://..."``
    is ``target="mobile", on="ssh://..."``.
    """
    settings = settings or Settings(robustness=robustness)
    if robustness and not settings.robustness:
        settings = Settings(**{**settings.to_dict(), "robustness": True})
    replay = Replay.load(recipe) if recipe is not None else None
    if replay is not None:
        given = dict(model=model, data=data, inputs=inputs, budget=budget, objective=objective,
                     random_weights=random_weights)
        filled = replay.fill(given, "default", DEFAULT_BUDGET)
        model, data, inputs, budget = filled["model"], filled["data"], filled["inputs"], filled["budget"]
        objective, random_weights = filled["objective"], filled["random_weights"]
        target = target or replay.meta.get("target")
        on = on or replay.meta.get("device")
    target, on = targets.split(target, on)
    where = targets.target(target)
    # formats/backends the target does not run are refused before anything is loaded or written
    chosen_formats = _formats(where, formats, on)
    chosen_backends = where.choose("backends", cands.parse_list(backends, [])) or None
    # an unreachable device, a refused key or a device without python3 fail here, in one line, before any write
    device = on_device.connect(on, identity) if on else None
    source, base = _base(model, random_weights, inputs)
    if base.format not in ("torch", "onnx") and not cands.parse_list(formats, []) and not where.restricted:
        chosen_formats = [base.format]  # e.g. an imported OpenVINO IR: measured as it is (and bf16/f16 on it)
    data = _data(data, source, base)
    b = budget if isinstance(budget, Budget) else Budget.parse(budget, objective)
    b = b.with_default_accuracy()
    out = Path(output) if output is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if replay is not None:
        names: list[str | Recipe] = [replay.recipe]
        early_notes: list[str] = []
        chosen_formats = [str(replay.meta["format"])]
        chosen_backends = [str(replay.meta["backend"])]
    else:
        names, early_notes = _recipe_names(recipes, data, base.format,
                                           where.recipes or (on_device.DEVICE_RECIPES if device else None))
    early_notes += _placement_notes(device, where, chosen_formats)
    search = Search(base, source, data=data, budget=b, recipes=names, formats=chosen_formats,
                    backends=chosen_backends,
                    settings=settings, output=out, resume=resume, time_budget_s=parse_duration(time_budget),
                    progress=progress, evaluate=evaluate, inputs=str(inputs) if inputs is not None else None,
                    timer=timer, target=where.name, device=device)
    search.notes[:0] = early_notes
    return _finish(search, replay, out, random_weights)


def _finish(search: Search, replay: Replay | None, out: Path | None, random_weights: bool) -> OptimizeResult:
    """Run the search, rebuild the winner's artifact and write the outputs."""
    result = search.run(winner_from=[replay.recipe.name] if replay is not None else None)
    note = replay.base_note(search.base_digest) if replay is not None else None
    if note:
        result.notes.append(note)
    stages: list[Any] = []
    if result.winner is not None:
        try:
            stages = search.stages_for(result.winner)
            result.winner_artifact = search.artifact_for(result.winner)
        except Exception as exc:  # the report still matters when the winner cannot be rebuilt
            result.notes.append(f"the winner's artifact could not be loaded or rebuilt: {exc}")
    if out is not None:
        write_outputs(result, out, stages, random_weights)
    return result


def _formats(where: targets.Target, formats: Sequence[str] | str | None, on: str | None) -> list[str]:
    """The formats asked for (refused when the target does not run them), else the target's or the device's."""
    given = cands.parse_list(formats, [])
    chosen = where.choose("formats", given) or list(cands.DEFAULT_FORMATS)
    return list(on_device.DEVICE_FORMATS) if on and not given and not where.restricted else chosen


def _data(data: Dataset | str | None, source: str, base: Artifact) -> Dataset | str | None:
    """The default dataset for the built-in model; an image folder read as the model reads."""
    if data == "default":
        return DEFAULT_DATA if source == DEFAULT_MODEL else None
    if isinstance(data, (str, os.PathLike)) and Path(data).is_dir():
        from laser.data.folder import register_folder

        return register_folder(Path(data), base.preprocessing, base.labels)
    return data


def _placement_notes(device: Any, where: targets.Target, chosen_formats: Sequence[str]) -> list[str]:
    """Where the candidates were measured, and what speed-ups are quoted against."""
    if device is not None:
        return [f"measured on {device.label}: candidates in {', '.join(chosen_formats)} on the runtimes that "
                f"import there ({', '.join(k for k, v in device.runtimes.items() if v) or 'none'}); PyTorch eager "
                f"does not run there, so speed-ups are vs {device.describe_baseline()}"]
    if where.restricted:
        return [f"target {where.name}: {where.description}; candidates in {', '.join(where.formats)} are measured "
                "on this machine with the runtime the target ships; PyTorch eager is measured as the reference "
                "speed-ups are quoted against, never the winner"]
    return []


def _base(model: Artifact | str | os.PathLike[str] | None, random_weights: bool,
          inputs: str | os.PathLike[str] | None) -> tuple[str, Artifact]:
    """(how the base is loaded again, the base artifact); random weights get BatchNorm statistics."""
    from laser.loader import load

    source = str(model) if isinstance(model, (str, os.PathLike)) else (
        str(model.location) if isinstance(model, Artifact) and model.location else
        (model.name if isinstance(model, Artifact) else DEFAULT_MODEL))
    if isinstance(model, Artifact):
        base = model
    else:
        if random_weights:  # seeded, so a winner.toml made on random weights rebuilds the same model
            import torch

            torch.manual_seed(0)
        base = load(model if model is not None else DEFAULT_MODEL, random_weights=random_weights)
    if random_weights and base.format == "torch" and not any(s.op == "reestimate-batchnorm" for s in base.lineage):
        base = _with_batchnorm_statistics(base, inputs)
    return source, base


def _recipe_names(recipes: Sequence[str | Recipe] | str | None, data: Dataset | str | None,
                  base_format: str = "torch", target_recipes: Sequence[str] | None = None
                  ) -> tuple[list[str | Recipe], list[str]]:
    """The recipes to try, and a note when the defaults leave some out (no data to recover them with).
    Defaults: the target's, else for an ONNX base the recipes that apply to an ONNX graph (no pruning or width
    search on torch modules), else optimize's own list."""
    defaults = target_recipes or (cands.ONNX_DEFAULT_RECIPES if base_format == "onnx" else cands.DEFAULT_RECIPES)
    if recipes is None and data is None:  # nothing to recover a function-changing recipe with, or check it on
        left = [r for r in defaults if cands.needs_data(r) or r == "int8-mixed"]
        return [r for r in defaults if r not in left], [
            f"no labelled data: {', '.join(left)} left out (they change the function and need data to fine-tune, "
            "distil, rank widths or measure the drop; asked for with --recipes they are measured and listed as "
            "unverified)"] if left else []
    return cands.parse_list(recipes, defaults), []


def _with_batchnorm_statistics(base: Artifact, inputs: str | os.PathLike[str] | None) -> Artifact:
    """Random weights keep BatchNorm's default statistics, which shrink activations layer after layer to
    denormals (random-weight MobileNetV3-small gives logits ~1e-9): timings and every fidelity figure would
    be meaningless. Re-estimate them from one batch (the user's inputs when given, else spec examples)."""
    from laser.compress.calibration import calibration_set
    from laser.models.factory import with_batchnorm_statistics

    if inputs is None:
        return with_batchnorm_statistics(base)
    feeds = calibration_set(inputs, base.spec, base.preprocessing, samples=16, seed=0).feeds[0]
    return with_batchnorm_statistics(base, feeds=feeds, source=Path(inputs).name)


def write_outputs(result: OptimizeResult, out: Path, stages: Sequence[Any] = (), random_weights: bool = False) -> None:
    """report.json, pareto.png, winner/ + winner.toml, then report.html (which shows all of them)."""
    from laser.optimize.html import write_html
    from laser.optimize.report import write_json, write_pareto
    from laser.stages import save_recipe

    out.mkdir(parents=True, exist_ok=True)
    (out / "pareto.png").unlink(missing_ok=True)  # never leave a plot of an earlier run beside this report
    if result.measured:
        try:
            write_pareto(result, out / "pareto.png")
        except ImportError as exc:  # the report and the winner matter more than the plot
            result.notes.append(f"pareto.png not drawn: matplotlib is not installed ({exc}); "
                                "pip install 'laser[report]' for the plot")
    w = result.winner
    if w is not None and result.winner_artifact is not None:
        result.winner_artifact = result.winner_artifact.save(out / "winner")
        meta = {"model": result.source, "random_weights": random_weights, "base_sha256": _digest(result), "recipe": w.candidate.recipe,
                "format": w.candidate.format, "backend": w.candidate.backend,
                "data": result.reference.data.name if result.reference.data is not None else "",
                "budget": result.requested_budget or result.budget.text, "objective": result.budget.objective.metric,
                "feasible": result.feasible, "measured_p50_ms": w.metrics.get("p50_ms"),
                "measured_accuracy": w.metrics.get("accuracy"), "inputs": result.inputs,
                "target": result.target if result.target != targets.DEFAULT_TARGET else None,
                "device": result.device["url"] if result.device else None}
        save_recipe(out / "winner.toml", stages, {k: v for k, v in meta.items() if v is not None})  # TOML has no null
    elif (out / "winner").exists() and w is None:
        shutil.rmtree(out / "winner", ignore_errors=True)
    write_json(result, out / "report.json")
    write_html(result, out / "report.html")


def _digest(result: OptimizeResult) -> str:
    from laser.optimize.cache import artifact_digest

    return artifact_digest(result.base)
