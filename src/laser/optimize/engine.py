"""The optimize loop: build and measure every candidate, then pick the winner under the budget.

Order of work: the plan (candidates.plan: the eager base model first, the reference every speed-up is
quoted against, then the recipes in the order given); each recipe is built once and exported once per
format (build.py), and measured on every backend that runs that format. Everything measured is appended to the cache as soon as it is
known, so Ctrl-C, a crash or the time budget lose at most the candidate in flight; re-running with the
same output directory skips what was measured.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from laser.artifact import Artifact
from laser.data import Dataset
from laser.errors import LaserError
from laser.measure.figures import Figures
from laser.optimize import candidates as cands
from laser.optimize import device as on_device
from laser.optimize.budget import Budget
from laser.optimize.build import Builder
from laser.optimize.cache import Cache, artifact_digest, make_key
from laser.optimize.candidates import Candidate, Context, Recipe, Unavailable
from laser.optimize.device import Device
from laser.optimize.diagnose import diagnose
from laser.optimize.evaluate import (
    REL_L2_PER_POINT,
    Reference,
    Settings,
    figures,
    measure_candidate,
    reference,
)
from laser.optimize.finals import Timer, run_finals, side_by_side_timer
from laser.optimize.result import OptimizeResult, Outcome, triple
from laser.stages import Stage

log = logging.getLogger("laser.optimize")


def precision_detail(art: Artifact) -> dict[str, Any] | None:
    """What a quantize stage chose, from its lineage: the share of the compute layers' MACs in INT8 and,
    after an accuracy-aware search, the layers kept FP32 and the drops it measured (None for other stages)."""
    step = art.lineage[-1] if art.lineage else None
    if step is None or step.op != "quantize":
        return None
    r, out = step.results, {}
    if "int8_macs" in r:
        out.update({k: r["int8_macs"][k] for k in ("fraction", "int8_layers", "layers")})
    search = r.get("accuracy_aware")
    if search:
        out.update(kept_fp32=[k["layer"] for k in search.get("kept_in_float", [])],
                   quantized_only=search.get("quantized_only"), search_data=step.params.get("data"),
                   search_samples=search.get("samples"), metric=search.get("metric"),
                   all_layers_drop_points=search.get("all_layers_drop_points"),
                   search_drop_points=search.get("drop_points"))
    return out or None


class Search:
    """One optimize run. ``evaluate`` (artifact, backend, reference, settings, parent) -> report entry
    can be replaced (tests use fakes); by default it is ``laser.measure`` through ``measure_candidate``."""

    def __init__(self, base: Artifact, source: str, *, data: Dataset | str | None, budget: Budget,
                 recipes: Sequence[str | Recipe], formats: Sequence[str], backends: Sequence[str] | None,
                 settings: Settings, output: Path | None, resume: bool = True, time_budget_s: float | None = None,
                 progress: bool = True, evaluate: Callable[..., dict[str, Any]] | None = None,
                 inputs: str | None = None, timer: Timer | None = None, target: str = "server",
                 device: Device | None = None):
        self.base, self.source, self.budget, self.settings = base, source, budget, settings
        self.requested_budget = budget.text  # as given, before the fidelity mapping of a run without labels
        self.output, self.time_budget_s, self.progress = output, time_budget_s, progress
        self.device = device  # --on: every candidate is measured there (optimize/device.py)
        self.evaluate = evaluate or (device.evaluate() if device else measure_candidate)
        self.timer = timer or (device.timer() if device else side_by_side_timer)
        self.inputs = inputs
        self.target = target
        self.data_name = data if isinstance(data, str) else (data.name if data is not None else None)
        self.data = data
        self.cache = Cache(output / "cache" if output is not None and resume else None)
        if output is not None and not resume:
            self.cache = Cache(None)
        self.base_digest = artifact_digest(base)
        self.ctx = Context(source=source, base_format=base.format, data=self.data_name,
                           distill_epochs=settings.distill_epochs, inputs=inputs,
                           calibration_samples=settings.calibration_samples,
                           search_epochs=settings.search_epochs, accuracy_drop_pts=budget.allowed_drop_pts())
        self.skipped: dict[Candidate, str] = {}  # --on: candidates in formats the device cannot run -> why
        if device is not None:
            self.plan, self.skipped = on_device.plan(device, recipes, formats, backends, base.format)
        else:
            self.plan = cands.plan(recipes, formats, backends, base.format)
        self.recipes: dict[str, Recipe | Exception] = {r.name: r for r in recipes if isinstance(r, Recipe)}
        self.builder = Builder(base, self.base_digest, self.cache, settings.exporter)
        self.notes: list[str] = []
        self.started = 0.0

    # -- the loop ----------------------------------------------------------------------------
    def run(self, winner_from: Sequence[str] | None = None) -> OptimizeResult:
        """Measure the plan; ``winner_from``: recipe names the winner must come from (recipe replay)."""
        from tqdm.auto import tqdm

        self.started = time.monotonic()
        ref = reference(self.base, self.data, self.settings, inputs=self.inputs)
        if ref.warning:
            self.notes.append(ref.warning)
        if ref.proxy:
            self.budget = self.budget.for_fidelity(REL_L2_PER_POINT, ref.samples if ref.agreement_meaningful else None)
            if self.budget.mapping:
                self.notes.append(self.budget.mapping)
        outcomes = {c: Outcome(c, "skipped", error="not reached") for c in self.plan}
        outcomes |= {c: Outcome(c, "skipped", error=why) for c, why in self.skipped.items()}
        interrupted = timed_out = False
        bar = tqdm(total=len(self.plan), desc="optimize", unit="candidate", disable=not self.progress,
                   dynamic_ncols=True)
        try:
            for c in self.plan:
                if self.out_of_time():
                    timed_out = True
                    break
                best = min((o for o in outcomes.values() if o.measured and not self.budget.check(o.metrics)),
                           default=None, key=lambda o: self.budget.objective.score(o.metrics))
                bar.set_postfix_str(f"{c.short}" + (f" | best so far {best.candidate.short}" if best else ""))
                outcomes[c] = self._one(c, ref, outcomes)
                bar.update(1)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
        for o in outcomes.values():
            if o.status == "skipped" and o.error == "not reached":
                o.error = ("interrupted (Ctrl-C) before it was measured" if interrupted else
                           "time budget spent before it was measured" if timed_out else o.error)
        self._load_note(outcomes.values())
        result = OptimizeResult(self.base, self.source, self.budget, ref, self.settings, list(outcomes.values()),
                                interrupted=interrupted, timed_out=timed_out, notes=self.notes,
                                output=self.output, winner_from=list(winner_from or []),
                                hardware=self.device.hardware if self.device else _hardware(),
                                inputs=self.inputs, requested_budget=self.requested_budget, target=self.target)
        if self.device is not None:
            result.baseline = self.plan[0]
            result.device = {"url": self.device.on, "label": self.device.label, "emulated": self.device.emulated,
                             "baseline": self.device.describe_baseline(), "runtimes": self.device.runtimes}
        from laser.optimize.analysis import analyse

        analyse(result)
        if not interrupted:
            try:
                self._finals(result)
            except KeyboardInterrupt:
                result.interrupted = interrupted = True
        if self.settings.doctor and not interrupted and self.device is not None:
            self.notes.append(f"doctor: skipped under --on: its probes ({', '.join(on_device.DOCTOR_PROBES)}) time and "
                              f"profile on this machine, not on {self.device.on}; run laser doctor PARENT CHILD on the "
                              "device itself for them")
        elif self.settings.doctor and not interrupted:
            try:
                diagnose(self, result)
            except KeyboardInterrupt:
                result.interrupted = True
        result.elapsed_s = time.monotonic() - self.started
        return result

    def _finals(self, result: OptimizeResult) -> None:
        """Re-time the contenders side by side (finals.py), then rank again on those figures."""
        from laser.optimize.analysis import analyse

        if self.progress:
            log.info("final round: re-timing the contenders side by side")
        try:
            result.finals = run_finals(result, self.artifact_for, self.settings, self.timer)
        except LaserError as exc:  # the screening figures still stand; say the ratios are not comparable
            self.notes.append(f"the final side-by-side round failed ({exc}); ratios between candidates are not "
                              "quoted, since screening figures were taken at different moments")
            return
        finally:
            close = getattr(self.timer, "close", None)  # the device timer's SSH sessions
            if close is not None:
                close()
        if result.finals is not None and self.device is not None:
            f = result.finals
            f["method"] = on_device.finals_method(self.device, f["rounds"], f["block"], f.get("switch", 2)) + (
                f"; {f['sets']} set(s) taken, the one with the narrowest worst spread kept "
                f"({f['worst_spread_pct']:.0f} %; limit {f['spread_limit_pct']:.0f} %)")
        if result.finals is not None:
            self.notes.append(f"final round: {len(result.finals['finalists'])} finalists re-timed side by side "
                              f"({result.finals['method']}); the winner and every ratio come from those figures")
            analyse(result)

    def _load_note(self, outcomes: Any) -> None:
        """Say so when the machine was busy: shared cores make multi-threaded runtimes (PyTorch eager above all)
        read many times slower than on an idle machine, so ratios measured then are not to be trusted."""
        from laser.runtime.base import default_threads

        if self.device is not None:  # this machine's load average says nothing about the device's
            return
        loads = [o.load_1m for o in outcomes if o.measured and o.load_1m is not None]
        cores = default_threads()
        # The measuring process alone keeps up to `cores` threads runnable: only a load above that is other work
        # (the same rule as laser.measure's noise note).
        if loads and max(loads) > cores:
            self.notes.append(f"the machine was busy while measuring (1-minute load average {min(loads):.1f}-"
                              f"{max(loads):.1f} on {cores} usable cores): multi-threaded runtimes, PyTorch eager "
                              "above all, can read many times slower than on an idle machine; re-run with --fresh "
                              "on a quiet machine before trusting the ratios")

    def out_of_time(self) -> bool:
        return self.time_budget_s is not None and time.monotonic() - self.started > self.time_budget_s

    def _one(self, c: Candidate, ref: Reference, outcomes: dict[Candidate, Outcome]) -> Outcome:
        t0 = time.monotonic()
        try:
            recipe = self._recipe(c.recipe, outcomes)
            stages = self.builder.stages(recipe, c.format)
        except (Unavailable, LaserError) as exc:
            return Outcome(c, "skipped" if isinstance(exc, Unavailable) else "failed", error=str(exc))
        dicts = [s.to_dict() for s in stages]
        settings_key = self.settings.key() | ({"device": self.device.key} if self.device else {})
        key = make_key(self.base_digest, dicts, c.format, c.backend, settings_key, self.data_name, self.inputs)
        art_key = make_key(self.base_digest, dicts)
        cached = self.cache.get(key)
        figures_cached = _stored_figures(cached)
        if cached and figures_cached is not None:
            return Outcome(c, "cached", stages=dicts, metrics=figures_cached, entry=cached.get("entry"),
                           seconds=cached.get("seconds", 0.0), key=key, artifact_key=art_key,
                           warnings=cached.get("warnings", []), load_1m=cached.get("load_1m"),
                           unverified=not recipe.verified, detail=cached.get("detail"))
        # Stages warn about choices that will not pay (dynamic INT8 on convolutions, FP16 on CPU): keep the
        # warnings with the candidate for the report instead of interleaving them with the progress bar.
        with warnings.catch_warnings(record=True) as caught, _StageLog() as logged:
            warnings.simplefilter("always")
            try:
                art = self.artifact(stages, art_key)
                entry = self.evaluate(art, c.backend, ref, self.settings, self.base)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # a candidate that cannot be built or run is reported, not fatal
                log.info("candidate %s failed", c.name, exc_info=True)
                msg = str(exc) if isinstance(exc, LaserError) else f"{type(exc).__name__}: {exc}"
                return Outcome(c, "failed", stages=dicts, error=msg[:600], seconds=time.monotonic() - t0, key=key,
                               artifact_key=art_key, warnings=_messages(caught) + logged.messages)
        out = Outcome(c, "measured", stages=dicts, metrics=figures(entry, ref), entry=entry,
                      seconds=time.monotonic() - t0, key=key, artifact_key=art_key,
                      warnings=_messages(caught) + logged.messages + _batch_label(art),
                      load_1m=os.getloadavg()[0], unverified=not recipe.verified, detail=precision_detail(art))
        self.cache.put(key, out.record())
        return out

    def _recipe(self, name: str, outcomes: dict[Candidate, Outcome]) -> Recipe:
        if name not in self.recipes:
            ctx = self.ctx
            if name == "search":
                ctx = dataclasses.replace(ctx, search_budget_ms=self._search_budget(outcomes))
            try:
                recipe = cands.build_recipe(name, ctx)
                if recipe.note:
                    self.notes.append(f"{name}: {recipe.note}")
                self.recipes[name] = recipe
            except LaserError as exc:
                self.recipes[name] = exc
        got = self.recipes[name]
        if isinstance(got, Exception):
            raise got
        return got

    def _search_budget(self, outcomes: dict[Candidate, Outcome]) -> float | None:
        """The p50 limit of the budget, else 0.8 × the base model's ONNX Runtime latency (measured)."""
        for c in self.budget.constraints:
            if c.metric in ("p50", "latency"):
                return c.limit
        for o in outcomes.values():
            if triple(o.candidate) == ("none", "onnx", "onnxruntime") and o.measured:
                return 0.8 * o.metrics["p50_ms"]
        return None

    def artifact(self, stages: Sequence[Stage], key: str | None = None) -> Artifact:
        return self.builder.artifact(stages, key)

    def stages_for(self, o: Outcome) -> list[Stage]:
        """The stage objects that make ``o``'s artifact from the base model (recipe + export)."""
        from laser.stages import stage_from_dict

        recipe = self.recipes.get(o.candidate.recipe)
        if isinstance(recipe, Recipe):
            return self.builder.stages(recipe, o.candidate.format)
        return [stage_from_dict(d) for d in o.stages]

    def artifact_for(self, o: Outcome) -> Artifact:
        return self.artifact(self.stages_for(o), o.artifact_key)

class _StageLog(logging.Handler):
    """While a candidate is built and measured, keep laser's own log warnings (e.g. 'TorchScript is deprecated')
    with the candidate for the report instead of printing them through the progress bar."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self._logger = logging.getLogger("laser")

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING or record.name.startswith("laser.optimize"):
            logging.getLogger().handle(record)  # details (-v) and optimize's own messages go out as usual
            return
        text = f"{record.name}: {record.getMessage()}"[:500]
        if text not in self.messages:
            self.messages.append(text)

    def __enter__(self) -> _StageLog:
        self._propagate = self._logger.propagate
        self._logger.addHandler(self)
        self._logger.propagate = False
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.propagate = self._propagate


def _batch_label(art: Artifact) -> list[str]:
    """Said of a fixed-batch program (an ExecuTorch .pte): what it can be timed and served at."""
    n = art.spec.fixed_batch
    if n is None:
        return []
    return [f"batch {n} only: the {art.format} program was exported at a fixed batch of {n}; timed at batch {n} "
            f"(as every candidate is), never at larger batches; laser serve admits {n} sample(s) per call"]


def _messages(caught: list[warnings.WarningMessage]) -> list[str]:
    """Distinct warning texts from laser's own stages (third-party deprecation chatter left out)."""
    out: list[str] = []
    for w in caught:
        text = f"{w.category.__name__}: {w.message}"
        if w.category.__module__.startswith("laser") and text not in out:
            out.append(text[:500])
    return out


def _stored_figures(record: dict[str, Any] | None) -> Figures | None:
    """The figures of a cached measurement; None when there is none, or it was written by a laser whose
    figures differ (then the candidate is measured again)."""
    if not record or record.get("status") not in ("measured", "cached"):
        return None
    try:
        return Figures.from_dict(record.get("metrics") or {})
    except (TypeError, ValueError):
        return None


def _hardware() -> dict[str, Any]:
    try:
        from laser.measure.hardware import fingerprint

        return fingerprint(peak=False)
    except Exception as exc:  # a report without a fingerprint beats no report
        return {"error": f"{type(exc).__name__}: {exc}"}
