"""Candidates: compression recipes × artifact formats × runtime backends.

A recipe is a named list of stages (``prune-50`` = Prune(0.5) then Distill from the base model). The
stages of a recipe end either in the torch domain (the result can still be exported to ONNX or
TorchScript, or run eagerly) or in the ONNX domain (quantization: the result is an ONNX file). A
candidate adds the export to one format and the backend it is measured (and would ship) on.

Recipe names (``--recipes``):

    none             the base model as it is
    int8-static      post-training INT8, calibrated, QDQ (ONNX Runtime quantization)
    int8-mixed       int8-static, then accuracy-aware: the layers that cost the most accuracy on --data stay FP32
                     until the run's accuracy_drop budget holds (measured on the data's val split)
    int8-dynamic     dynamic INT8 (weights only; slow for convolutions on CPU: the doctor explains why)
    fp16             FP16 weights and activations (ONNX)
    int8-nncf        post-training INT8 with NNCF (QDQ placed for OpenVINO; runs on openvino and onnxruntime)
    int8-nncf-ac     the same with NNCF's accuracy control (top-1 drop <= 1 point on --data; needs --data)
    bf16             the FP32 ONNX model run in bfloat16 on OpenVINO (only where the CPU has bf16 kernels)
    fp16-openvino    the same in float16 (CPUs with AMX-FP16 / AVX512-FP16 kernels in OpenVINO)
    int8-pt2e        post-training INT8 with PT2E and ExecuTorch's XNNPACK quantizer: an INT8 .pte (executorch format)
    prune-N          structured pruning of N % of the channels + distillation from the base model
    prune-N+int8     the same, then int8-static
    search           latency-aware width search for a latency budget on ONNX Runtime
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from laser.artifact import FORMATS
from laser.errors import ConfigError, LaserError
from laser.stages import Stage, stage_class

DEFAULT_RECIPES = ("none", "int8-static", "int8-nncf", "fp16", "bf16", "prune-30", "prune-50", "prune-70",
                   "prune-50+int8", "search")
# an ONNX base (a hub card such as pp-ocrv4-rec, an imported .onnx): what applies to an ONNX graph
ONNX_DEFAULT_RECIPES = ("none", "int8-static", "int8-mixed", "int8-nncf", "fp16", "bf16")
DEFAULT_FORMATS = ("torch", "onnx", "torchscript")
TORCH_FORMATS = ("torch", "onnx", "torchscript", "aoti", "ort", "executorch")  # where a torch-domain result can go
ONNX_FORMATS = ("onnx", "ort")  # where an ONNX-domain result (quantized ONNX) can go
# backend -> the module it needs (a backend whose runtime is not installed is left out, with a note)
BACKEND_NEEDS: dict[str, str] = {"torch": "torch", "torchscript": "torch", "onnxruntime": "onnxruntime",
                                 "openvino": "openvino", "aoti": "torch", "compiled": "torch",
                                 "executorch": "executorch", "browser": "playwright"}
# Measured only when named in --backends: torch.compile spends seconds to minutes per candidate compiling.
# (The aoti format is opt-in the same way: it is not in DEFAULT_FORMATS; --formats ...,aoti adds it.)
# (browser starts headless Chromium per candidate: asked for by name, or by --target browser)
OPT_IN_BACKENDS = ("compiled", "browser")
_PRUNE = re.compile(r"^prune-(\d{1,2})(\+int8)?$")


class Unavailable(LaserError):
    """A recipe cannot be built here (a stage is missing, or the model/data does not allow it)."""


@dataclass(frozen=True)
class Context:
    """What recipes need to know about the run."""

    source: str  # how the base model is loaded again (catalog name, bundle path): teacher of distillation
    base_format: str
    data: str | None  # labelled dataset name, or None (synthetic inputs)
    distill_epochs: int = 8
    search_budget_ms: float | None = None  # latency budget of the width search
    inputs: str | None = None  # unlabelled samples (folder, .npy/.npz): calibration when there is no dataset
    calibration_samples: int | None = None  # INT8 calibration samples (None: the quantize stage's default)
    search_epochs: int | None = None  # fine-tuning epochs of the width search (None: distill_epochs)
    accuracy_drop_pts: float | None = None  # the run's accuracy budget, percentage points (int8-mixed)

    def calibration(self) -> dict[str, Any]:
        return {} if self.calibration_samples is None else {"samples": self.calibration_samples}


@dataclass(frozen=True)
class Recipe:
    name: str
    stages: tuple[Stage, ...]
    domain: str  # "torch" (result can be exported) or "onnx"
    note: str = ""
    verified: bool = True  # False: changes the function with no data to recover it; never the winner

    def stage_dicts(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.stages]


@dataclass(frozen=True)
class Candidate:
    recipe: str
    format: str
    backend: str
    order: int = field(default=0, compare=False)

    @property
    def name(self) -> str:
        return f"{self.recipe} · {self.format} · {self.backend}"

    @property
    def short(self) -> str:
        return f"{self.recipe}/{self.format}/{self.backend}"


BASELINE = Candidate("none", "torch", "torch")  # PyTorch eager: every speed-up is quoted against it


def make_stage(op: str, **kwargs: Any) -> Stage:
    """An instance of the stage class for ``op``; Unavailable when that stage is not in this install."""
    try:
        cls = stage_class(op)
    except (ImportError, AttributeError) as exc:
        raise Unavailable(f"the {op!r} stage is not available in this install ({exc})") from exc
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise Unavailable(f"the {op!r} stage takes no option(s) {unknown} (it takes {sorted(names)})")
    return cls(**kwargs)


def _optional(op: str, **kwargs: Any) -> dict[str, Any]:
    """The subset of optional settings the stage class has (e.g. progress bars off)."""
    try:
        names = {f.name for f in dataclasses.fields(stage_class(op))}
    except (ImportError, AttributeError, LaserError):
        return {}
    return {k: v for k, v in kwargs.items() if k in names}


def _int8(ctx: Context) -> Stage:
    # without labelled data, calibrate on the user's unlabelled samples, else on random inputs drawn from the
    # spec (the quantize stage's 'random')
    return make_stage("quantize", method="int8-static", calibration=ctx.data or ctx.inputs or "random",
                      **ctx.calibration(),
                      **_optional("quantize", progress=False))


MIXED_SPLIT = "val"  # int8-mixed searches on this split; optimize measures every candidate on test


def _int8_mixed(ctx: Context) -> Stage:
    """int8-static keeping the most accuracy-sensitive layers in float until the budget holds on the val split
    (laser.compress.mixed_precision), so the test split that judges the candidate was not used to choose it."""
    if ctx.data is None:
        raise Unavailable("int8-mixed measures the accuracy drop and needs a labelled dataset (--data)")
    if ctx.accuracy_drop_pts is None:
        raise Unavailable("int8-mixed needs an accuracy budget in points (accuracy_drop<=N% or --max-accuracy-drop)")
    return make_stage("quantize", method="int8-static", calibration=ctx.data, **ctx.calibration(),
                      max_accuracy_drop=ctx.accuracy_drop_pts, data=f"{ctx.data}:{MIXED_SPLIT}",
                      **_optional("quantize", progress=False, check_speed=False))


def _prune(ratio: float, ctx: Context) -> tuple[Stage, ...]:
    if ctx.base_format != "torch":
        raise Unavailable(f"pruning needs a torch model; the base is {ctx.base_format}")
    prune = make_stage("prune", ratio=ratio, data=ctx.data, **_optional("prune", progress=False))
    if ctx.data is None:
        return (prune,)  # nothing to fine-tune on: pruned weights as they are (the note says so)
    distill = make_stage("distill", teacher=ctx.source, data=ctx.data, epochs=ctx.distill_epochs,
                         **_optional("distill", progress=False))
    return prune, distill


def _search(ctx: Context) -> tuple[Stage, ...]:
    if ctx.base_format != "torch":
        raise Unavailable(f"width search needs a torch model; the base is {ctx.base_format}")
    if ctx.search_budget_ms is None:
        raise Unavailable("width search needs a latency budget: give p50<=... in --budget")
    if ctx.data is None:
        raise Unavailable("width search ranks layers by measured accuracy and needs a labelled dataset (--data)")
    # a coarse table (2 widths per layer, short timings) keeps the search to ~a minute on 2 cores
    epochs = ctx.distill_epochs if ctx.search_epochs is None else ctx.search_epochs
    return (make_stage("search", latency_budget_ms=round(ctx.search_budget_ms, 4), backend="onnxruntime",
                       data=ctx.data, finetune_epochs=epochs,
                       **_optional("search", ratios=(0.4, 0.75), max_seconds=0.1, progress=False)),)


NNCF_AC_DROP_POINTS = 1.0  # int8-nncf-ac: the top-1 (task metric) budget, percentage points


def _int8_nncf(ctx: Context, accuracy_control: bool = False) -> Stage:
    """Quantize(method='int8-nncf') on the same calibration data as int8-static; with accuracy control, the
    labelled dataset's test split bounds the drop."""
    if importlib.util.find_spec("nncf") is None:
        raise Unavailable("int8-nncf needs NNCF: pip install 'laser[openvino]' (or pip install nncf)")
    extra = ctx.calibration()
    if accuracy_control:
        if ctx.data is None:
            raise Unavailable("int8-nncf-ac measures the accuracy drop and needs a labelled dataset (--data)")
        extra.update(max_accuracy_drop=NNCF_AC_DROP_POINTS, data=ctx.data)
    return make_stage("quantize", method="int8-nncf", calibration=ctx.data or "random", **extra,
                      **_optional("quantize", progress=False))


def _int8_pt2e(ctx: Context) -> tuple[Stage, ...]:
    """Export(to='executorch', quantize='int8'): PT2E calibrated on the data (else the user's samples, else
    spec examples), held to the spec's top-1 agreement with the parent."""
    if ctx.base_format != "torch":
        raise Unavailable(f"int8-pt2e quantizes a torch model with torch.export; the base is {ctx.base_format}")
    if importlib.util.find_spec("executorch") is None:
        raise Unavailable("int8-pt2e needs ExecuTorch: pip install 'laser[edge]'")
    return (make_stage("export", to="executorch", quantize="int8", data=ctx.data or ctx.inputs or "random"),)


def _runtime_precision(precision: str, ctx: Context) -> tuple[Stage, ...]:
    """The Precision stage (bf16/f16 at run time on OpenVINO), Unavailable where the CPU has no such kernels."""
    try:
        from laser.runtime.precision import unavailable_reason
    except ImportError as exc:
        raise Unavailable(f"the precision stage is not available in this install ({exc})") from exc
    reason = unavailable_reason(precision, "openvino")
    if reason:
        raise Unavailable(reason)
    return (make_stage("precision", precision=precision, data=ctx.data),)


# name -> (builder, domain, what it is)
RECIPES: dict[str, tuple[Callable[[Context], tuple[Stage, ...]], str, str]] = {
    "none": (lambda ctx: (), "torch", "the base model as it is"),
    "int8-static": (lambda ctx: (_int8(ctx),), "onnx", "post-training static INT8 (QDQ, calibrated)"),
    "int8-mixed": (lambda ctx: (_int8_mixed(ctx),), "onnx",
                   "accuracy-aware INT8: the most sensitive layers kept FP32 until the accuracy budget holds"),
    "int8-dynamic": (lambda ctx: (make_stage("quantize", method="int8-dynamic"),), "onnx",
                     "dynamic INT8 (weights quantized, activations at run time)"),
    "fp16": (lambda ctx: (make_stage("quantize", method="fp16"),), "onnx", "FP16 weights and activations"),
    "search": (_search, "torch", "latency-aware width search (ONNX Runtime lookup table)"),
    "int8-nncf": (lambda ctx: (_int8_nncf(ctx),), "onnx", "post-training INT8 with NNCF (QDQ for OpenVINO)"),
    "int8-nncf-ac": (lambda ctx: (_int8_nncf(ctx, accuracy_control=True),), "onnx",
                     f"NNCF INT8 with accuracy control (drop <= {NNCF_AC_DROP_POINTS:g} point on the data)"),
    "int8-pt2e": (_int8_pt2e, "executorch", "post-training INT8 with PT2E + XNNPACK quantizer (ExecuTorch .pte)"),
    "bf16": (lambda ctx: _runtime_precision("bf16", ctx), "onnx", "bfloat16 inference precision on OpenVINO"),
    "fp16-openvino": (lambda ctx: _runtime_precision("f16", ctx), "onnx", "float16 inference precision on OpenVINO"),
}


# recipe -> the only backends its artifact means something on (a runtime precision recorded for OpenVINO)
ONLY_ON: dict[str, tuple[str, ...]] = {"bf16": ("openvino",), "fp16-openvino": ("openvino",)}


def recipe_domain(name: str, base_format: str) -> str:
    if base_format != "torch":
        return "onnx" if base_format == "onnx" else base_format
    m = _PRUNE.match(name)
    if m:
        return "onnx" if m.group(2) else "torch"
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; use {', '.join(sorted(RECIPES))}, prune-N or prune-N+int8 "
                          "(N = percent of channels removed, e.g. prune-50)")
    return RECIPES[name][1]


def build_recipe(name: str, ctx: Context) -> Recipe:
    """The stages of a named recipe (Unavailable when it cannot be built here)."""
    domain = recipe_domain(name, ctx.base_format)
    m = _PRUNE.match(name)
    if m:
        ratio = int(m.group(1)) / 100
        if not 0 < ratio < 1:
            raise ConfigError(f"recipe {name!r}: the prune percentage must be 1-99")
        stages = _prune(ratio, ctx) + ((_int8(ctx),) if m.group(2) else ())
        note = "" if ctx.data else ("no labelled data: pruned without fine-tuning or distillation, so it is a "
                                    "different function; measured and listed as unverified, never the winner")
        return Recipe(name, stages, domain, note, verified=ctx.data is not None)
    builder, _, _ = RECIPES[name]
    ir_precision = ctx.base_format == "openvino" and name in ONLY_ON  # an OpenVINO IR takes bf16/f16 at run time
    if name != "none" and ctx.base_format not in ("torch", "onnx") and not ir_precision:
        raise Unavailable(f"recipe {name!r} needs a torch or onnx base model, got {ctx.base_format}")
    return Recipe(name, builder(ctx), domain)


def needs_data(name: str) -> bool:
    """Recipes that change the function and need labelled data to recover (fine-tune, distil, rank widths)."""
    return bool(_PRUNE.match(name)) or name == "search"


def describe(name: str, data: bool = True) -> str:
    m = _PRUNE.match(name)
    if m:
        return (f"structured pruning of {m.group(1)} % of channels" + (" + distillation" if data else
                " (no fine-tuning: no labelled data)") + (", then INT8" if m.group(2) else ""))
    return RECIPES[name][2] if name in RECIPES else name


def formats_for(domain: str, wanted: Sequence[str]) -> list[str]:
    if domain == "torch":
        return [f for f in wanted if f in TORCH_FORMATS]
    if domain == "onnx":
        return [f for f in wanted if f in ONNX_FORMATS]
    return [f for f in wanted if f == domain]


def installed_backends() -> list[str]:
    return [b for b, mod in BACKEND_NEEDS.items() if importlib.util.find_spec(mod) is not None]


def backends_for_format(fmt: str, wanted: Sequence[str] | None) -> list[str]:
    """Backends that run ``fmt`` here, in BACKENDS order, restricted to ``wanted`` when given."""
    from laser.runtime import BACKENDS

    here = installed_backends()
    out = [b for b, (_, formats) in BACKENDS.items() if fmt in formats and b != "echo" and b in here]
    return [b for b in out if b in wanted] if wanted else [b for b in out if b not in OPT_IN_BACKENDS]


def plan(recipes: Sequence[str | Recipe], formats: Sequence[str], backends: Sequence[str] | None,
         base_format: str) -> list[Candidate]:
    """Every (recipe, format, backend) to measure: PyTorch eager first when the base is a torch model (every
    speed-up is quoted against it), then the recipes in the given order; ``Recipe`` objects (your own stages,
    or a replayed winner.toml) go to the formats their domain allows. Repeats are measured once."""
    from laser.runtime import BACKENDS

    unknown = [b for b in backends or () if b not in BACKENDS]
    if unknown:
        raise ConfigError(f"unknown backend(s) {unknown}; known: {sorted(b for b in BACKENDS if b != 'echo')}")
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ConfigError(f"unknown format(s) {bad}; use {', '.join(FORMATS)}")
    out: list[Candidate] = [BASELINE] if base_format == "torch" else []
    for r in recipes:
        name, domain = (r.name, r.domain) if isinstance(r, Recipe) else (r, recipe_domain(r, base_format))
        for f in formats_for(domain, formats):
            out += [Candidate(name, f, b) for b in backends_for_format(f, backends)
                    if isinstance(r, Recipe) or r not in ONLY_ON or b in ONLY_ON[r]]
            # (ONLY_ON: e.g. a bf16 inference precision means nothing to onnxruntime)
    planned = [Candidate(c.recipe, c.format, c.backend, order=i)
               for i, c in enumerate(dict.fromkeys(out))]  # keep order, drop repeats (order is not compared)
    if not planned:
        names = [r.name if isinstance(r, Recipe) else r for r in recipes]
        raise ConfigError(f"no candidate to measure: recipes {names}, formats {list(formats)} and backends "
                          f"{list(backends or [])} leave nothing that runs here; installed backends: "
                          f"{installed_backends()}")
    return planned


def export_stage(fmt: str, built_format: str, exporter: str = "auto") -> tuple[Stage, ...]:
    """The export that takes a recipe's result to ``fmt`` (none when it is already there)."""
    if fmt == built_format:
        return ()
    return (make_stage("export", to=fmt, **({"exporter": exporter} if fmt == "onnx" and exporter != "auto" else {})),)


def parse_list(text: str | Sequence[Any] | None, default: Sequence[str]) -> list[Any]:
    """Comma-separated text or a list; list items that are not strings (Recipe objects) pass through."""
    if text is None:
        return list(default)
    items = text.split(",") if isinstance(text, str) else list(text)
    out = [t.strip() if isinstance(t, str) else t for t in items]
    return [t for t in out if t != ""] or list(default)
