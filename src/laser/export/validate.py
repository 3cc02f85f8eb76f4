"""Parity of a derived artifact (an export, a compressed model) with its parent.

Both are run on the same inputs: Spec example inputs at two batch sizes (and two sizes of every other
named dynamic dim, so a graph that froze a dynamic dim is caught), their negation (a traced branch on
the input's sign is caught), plus real samples when a dataset is given. Examples cannot prove a traced
graph right for every input: pass real data (``data=``) when the exporter reported frozen control flow. Per output: the largest absolute error, the largest error relative to the output's largest
magnitude, and the fraction of elements outside the Spec's tolerance ``|child - parent| <= atol + rtol *
|parent|``. For classifiers, top-1 agreement; a sample whose parent logits tie within tolerance counts
as agreeing ("up to ties"), because then either class is a correct answer from the parent's view.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from laser.artifact import Artifact
from laser.errors import ConfigError, ParityError
from laser.spec import EXAMPLE_DIM_SIZE

# The backend a format is checked on when none is asked for: the reference runtime of each format.
REFERENCE_BACKEND = {"torch": "torch", "onnx": "onnxruntime", "ort": "onnxruntime", "torchscript": "torchscript",
                    "aoti": "aoti", "executorch": "executorch"}
MAX_DATA_SAMPLES = 64


def _batches(child: Artifact, data: Any, batch: int) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    spec = child.spec
    fixed = any(t.shape and t.shape[0] != "batch" and isinstance(t.shape[0], int) for t in spec.inputs)
    if fixed:  # batch dim not dynamic: feed the fixed size only
        batch = next(t.shape[0] for t in spec.inputs if isinstance(t.shape[0], int))
    first = spec.example_inputs(batch=batch, seed=0)
    yield f"spec examples (batch {batch})", first
    if any(a.dtype.kind == "f" for a in first.values()):
        # the mirror image: a graph that froze a branch on the input's sign (a traced `if x.sum() > 0`)
        # gets one of the two batches wrong
        yield (f"negated spec examples (batch {batch})",
               {k: -a if a.dtype.kind == "f" else a for k, a in first.items()})
    other = dict.fromkeys(spec.named_dims, EXAMPLE_DIM_SIZE - 5)
    if not fixed or other:
        b2 = batch if fixed else batch + 1
        dims = ", ".join(f"{k} {v}" for k, v in other.items())
        yield (f"spec examples (batch {b2}{', ' + dims if dims else ''})",
               spec.example_inputs(batch=b2, seed=1, dims=other))
    if data is None:
        return
    if isinstance(data, str):
        from laser import data as datasets

        data = datasets.load(data, "test")
    data = data.take(MAX_DATA_SAMPLES)
    step = batch if fixed else 16
    for feeds, _ in data.batches(spec.input_names, step):
        if fixed and len(next(iter(feeds.values()))) != batch:
            break
        yield f"{data.name}: {len(data)} samples", feeds  # one label for all batches of the dataset


def compare(parent: Artifact, child: Artifact, data: Any = None, batch: int = 2, *,
            backend: str | None = None, parent_backend: str | None = None, raise_on_failure: bool = True,
            ) -> dict[str, Any]:
    """Run ``parent`` and ``child`` on the same inputs and compare their outputs (see the module doc).

    ``backend``/``parent_backend``: where each runs (default: the reference runtime of its format).
    Returns the figures; raises ParityError naming the output and the error size when outside
    ``child.spec.tolerance`` (unless ``raise_on_failure=False``; then ``result["passed"]`` says).
    """
    from laser.runtime import run

    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    tol = child.spec.tolerance
    p_backend = parent_backend or REFERENCE_BACKEND[parent.format]
    c_backend = backend or REFERENCE_BACKEND[child.format]
    # Both sides on the CPU: an export is checked for what it computes, not for a GPU's numeric mode
    # (TF32 convolutions on CUDA drift ~1e-3 from FP32 and would fail a correct export).
    p_runner, c_runner = run(parent, backend=p_backend, device="cpu"), run(child, backend=c_backend, device="cpu")
    tally = _Tally(child)
    described = []
    try:
        for label, feeds in _batches(child, data, batch):
            if label not in described:
                described.append(label)
            tally.add(label, p_runner(feeds), c_runner(feeds))
    finally:
        p_runner.close()
        c_runner.close()
    outputs, failures = tally.outputs()
    result: dict[str, Any] = {
        "passed": True, "outputs": outputs, "inputs": described,
        "tolerance": {"atol": tol.atol, "rtol": tol.rtol, "top1_agreement": tol.top1_agreement},
        "parent_backend": p_backend, "child_backend": c_backend,
        "method": "measured: both artifacts run on the same inputs; max_rel_error = max |child - parent| / "
                  "max |parent|",
    }
    if tally.classifier and tally.samples:
        n, ties = tally.samples, tally.agree_ties
        result.update(top1_agreement=tally.agree / n, top1_agreement_up_to_ties=ties / n, top1_samples=n)
        if ties / n < tol.top1_agreement:
            failures.append(f"top-1 agreement is {ties / n:.3g} over {n} samples (ties "
                            f"within tolerance count as agreeing), below the required {tol.top1_agreement:g}")
    if failures:
        result["passed"] = False
        result["failures"] = failures
        if raise_on_failure:
            error = ParityError(f"{child.name!r} ({child.format}, on {c_backend}) does not match its parent "
                                f"({parent.format}, on {p_backend}): " + "; ".join(failures) +
                                ". Find the first diverging layer with `laser diff PARENT CHILD`, or loosen "
                                "spec.tolerance if this drift is expected")
            error.result = result  # type: ignore[attr-defined]
            raise error
    return result


class _Tally:
    """Errors per output, and top-1 agreement for classifiers, accumulated over the compared batches."""

    def __init__(self, child: Artifact):
        self.child = child
        self.tol = child.spec.tolerance
        self.stats: dict[str, dict[str, Any]] = {
            n: {"max_abs_error": 0.0, "ref_max_abs": 0.0, "elements": 0, "outside": 0, "worst_input": ""}
            for n in child.spec.output_names}
        self.first = child.spec.outputs[0]
        self.classifier = child.task.endswith("classification") and len(self.first.shape) == 2
        self.agree = self.agree_ties = self.samples = 0

    def add(self, label: str, ref: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray]) -> None:
        tol, child = self.tol, self.child
        for name, s in self.stats.items():
            a, b = np.asarray(got[name]), np.asarray(ref[name])
            if a.shape != b.shape:
                raise ParityError(f"output {name!r} of {child.name!r} ({child.format}) has shape {list(a.shape)} "
                                  f"but the parent's is {list(b.shape)} on {label}; the export fixed a dim "
                                  "that should be dynamic (check the Spec's named dims)")
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            err = np.abs(a64 - b64)
            err = np.where(np.isnan(a64) & np.isnan(b64), 0.0, err)  # NaN in both agrees
            err = np.where(np.isnan(err), np.inf, err)
            limit = tol.atol + tol.rtol * np.abs(b64)
            worst = float(err.max()) if err.size else 0.0
            if worst > s["max_abs_error"]:
                s["max_abs_error"], s["worst_input"] = worst, label
            s["ref_max_abs"] = max(s["ref_max_abs"], float(np.abs(b64[np.isfinite(b64)]).max(initial=0.0)))
            s["elements"] += err.size
            s["outside"] += int((err > limit).sum())
        if self.classifier:
            a, b = np.asarray(got[self.first.name], np.float64), np.asarray(ref[self.first.name], np.float64)
            pa, pb = a.argmax(1), b.argmax(1)
            rows = np.arange(len(b))
            tie = b.max(1) - b[rows, pa] <= tol.atol + tol.rtol * np.abs(b.max(1))
            self.agree += int((pa == pb).sum())
            self.agree_ties += int(((pa == pb) | tie).sum())
            self.samples += len(b)

    def outputs(self) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """(figures per output, failure messages)."""
        tol = self.tol
        outputs: dict[str, dict[str, Any]] = {}
        failures = []
        for name, s in self.stats.items():
            rel = s["max_abs_error"] / s["ref_max_abs"] if s["ref_max_abs"] > 0 else float(s["max_abs_error"] > 0)
            frac = s["outside"] / s["elements"] if s["elements"] else 0.0
            outputs[name] = {"max_abs_error": s["max_abs_error"], "max_rel_error": rel, "outside_tolerance": frac,
                             "within_tolerance": s["outside"] == 0, "parent_max_abs": s["ref_max_abs"]}
            if s["ref_max_abs"] < 10 * tol.atol:
                outputs[name]["note"] = (f"the parent's {name!r} is tiny (max |value| {s['ref_max_abs']:.3g} < 10 × "
                                         "atol): atol alone passes it, so read max_rel_error (e.g. random weights)")
            if s["outside"]:
                failures.append(f"output {name!r} differs from the parent by up to {s['max_abs_error']:.3g} (max "
                                f"abs; {rel:.3g} of its largest magnitude {s['ref_max_abs']:.3g}) on "
                                f"{s['worst_input']}; {100 * frac:.3g} % of its elements are outside "
                                f"atol={tol.atol:g} + rtol={tol.rtol:g}·|parent|")
        return outputs, failures


def summary(result: Mapping[str, Any]) -> str:
    """One line for terminals: worst error per output and top-1 agreement."""
    parts = [f"{n}: max abs {o['max_abs_error']:.2g}, max rel {o['max_rel_error']:.2g}"
             + (" (outputs tiny: atol hides errors)" if "note" in o else "") for n, o in result["outputs"].items()]
    if "top1_agreement" in result:
        parts.append(f"top-1 agreement {100 * result['top1_agreement']:.1f} % of {result['top1_samples']}")
    return ("passed" if result["passed"] else "FAILED") + " (" + "; ".join(parts) + ")"
