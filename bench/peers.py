"""laser optimize's winner against the paths an engineer would try by hand, side by side in one process.

    .venv/bin/python bench/peers.py [--models resnet18 mobilenet_v3_small bert-small] [--rounds 8] [--block 5]
                                    [--time-budget 8m] [--no-compile]

For each model (random weights; BatchNorm statistics re-estimated on one batch so activations have a
realistic scale): run ``laser.optimize`` without labels (fidelity to the FP32 model decides, as a user would
run it on a model without data), then time its winner against the peers in interleaved rounds (each
path makes 2 untimed then ``--block`` timed calls per round after a 0.2 s pause, each round starting one
path later, batch 1): PyTorch eager, torch.compile,
ONNX Runtime FP32, OpenVINO FP32, OpenVINO bf16 (where the CPU has bf16 kernels) and NNCF INT8 on
OpenVINO (nncf.quantize on the OpenVINO model, calibrated on 64 spec example inputs). Fidelity of every
path: relative L2 of the logits against PyTorch eager on 64 spec example inputs (and top-1 agreement).

Targets: the winner is at least as fast as the best peer that meets the same fidelity threshold as the
optimize budget (relative L2 <= 5 %, the mapping of accuracy_drop<=1%): ratio winner / best peer <= 1.0;
and the p50 laser optimize reported for its winner is within 10 % of the one measured here.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import laser
from laser.artifact import Artifact
from laser.export import export
from laser.measure.fidelity import compare
from laser.measure.latency import side_by_side
from laser.models.factory import with_batchnorm_statistics
from laser.optimize.evaluate import REL_L2_PER_POINT
from laser.runtime import default_threads
from laser.spec import ModelSpec, TensorSpec

THRESHOLD = REL_L2_PER_POINT * 1.0  # accuracy_drop<=1% without labels
SAMPLES = 64
PAUSE_S = 0.2  # between blocks: the previous runtime's spinning threads (OpenVINO, ORT, OpenMP) go idle


def build(name: str) -> Artifact:
    import torch

    if name == "bert-small":
        return bert_small()
    torch.manual_seed(0)  # the same random weights in every run, so fidelity figures compare across runs
    art = laser.load(f"torchvision.models:{name}", random_weights=True, input_shape=(3, 224, 224))
    return with_batchnorm_statistics(art, batch=4)


def bert_small() -> Artifact:
    """A BERT classifier: hidden 256, 4 layers, 4 heads, sequence 128, random weights (no download)."""
    import torch

    from laser.models.text import SequenceClassifier, transformers

    tf = transformers()
    torch.manual_seed(0)
    config = tf.BertConfig(vocab_size=30522, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                           intermediate_size=1024, max_position_embeddings=512, num_labels=2)
    module = SequenceClassifier(tf.BertForSequenceClassification(config)).eval()
    spec = ModelSpec(inputs=(TensorSpec("input_ids", "int64", ("batch", 128), value_range=(0, 30522)),
                             TensorSpec("attention_mask", "int64", ("batch", 128), value_range=(1, 2))),
                     outputs=(TensorSpec("logits", "float32", ("batch", 2)),))
    return Artifact.from_module(module, name="bert-small", task="text-classification", spec=spec, architecture=None)


def nncf_int8(onnx_art: Artifact, threads: int) -> Callable[[dict[str, np.ndarray]], Any]:
    """The peer an OpenVINO user writes: nncf.quantize on the OpenVINO model, then compile it."""
    import nncf
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(onnx_art.model_file))
    calib = [onnx_art.spec.example_inputs(batch=1, seed=100 + i) for i in range(SAMPLES)]
    # NNCF's documented setting for transformer models (text inputs): keeps embeddings and softmax in float
    kind = nncf.ModelType.TRANSFORMER if onnx_art.spec.inputs[0].np_dtype.kind == "i" else None
    quantized = nncf.quantize(model, nncf.Dataset(calib), subset_size=SAMPLES, model_type=kind)
    compiled = core.compile_model(quantized, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                                     "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    out = compiled.outputs[0]
    name = onnx_art.spec.output_names[0]
    return lambda feeds: {name: request.infer(dict(feeds))[out]}


def compiled(art: Artifact) -> Callable[[dict[str, np.ndarray]], Any]:
    import torch

    module = torch.compile(art.module)
    names, out = art.spec.input_names, art.spec.output_names[0]

    def call(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            y = module(*(torch.from_numpy(feeds[n]) for n in names))
        return {out: (y[0] if isinstance(y, (tuple, list)) else y).numpy()}

    return call


def peers(art: Artifact, threads: int, with_compile: bool) -> dict[str, Callable[[dict[str, np.ndarray]], Any]]:
    onnx_art = export(art, to="onnx")
    out: dict[str, Callable[[dict[str, np.ndarray]], Any]] = {}
    makers: dict[str, Callable[[], Callable[[dict[str, np.ndarray]], Any]]] = {
        "PyTorch eager": lambda: laser.run(art, backend="torch", threads=threads),
        "torch.compile": lambda: compiled(art),
        "ORT FP32": lambda: laser.run(onnx_art, backend="onnxruntime", threads=threads),
        "OpenVINO FP32": lambda: laser.run(onnx_art, backend="openvino", threads=threads),
        "OpenVINO bf16": lambda: laser.run(onnx_art, backend="openvino", threads=threads, precision="bf16"),
        "NNCF INT8 on OpenVINO": lambda: nncf_int8(onnx_art, threads),
    }
    if not with_compile:
        makers.pop("torch.compile")
    for label, make in makers.items():
        if label == "OpenVINO bf16" and not _has_bf16():
            print(f"  {label}: skipped (OpenVINO's CPU plugin lists no BF16 capability on this CPU)")
            continue
        try:
            t0 = time.perf_counter()
            out[label] = make()
            print(f"  {label}: ready in {time.perf_counter() - t0:.1f} s")
        except Exception as exc:  # a peer that cannot be built is reported; the others are still measured
            print(f"  {label}: not available ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]})")
    return out


def _has_bf16() -> bool:
    try:
        import openvino as ov

        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:
        return False


def fidelity(call: Callable[[dict[str, np.ndarray]], Any], art: Artifact, feeds: list[dict[str, np.ndarray]],
             parent: dict[str, np.ndarray]) -> dict[str, Any]:
    name = art.spec.output_names[0]
    got = {name: np.concatenate([np.asarray(call(f)[name]) for f in feeds])}
    return compare(got, parent, [name], classifier=True)


def bench_model(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    print(f"\n== {name}")
    art = build(name)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = laser.optimize(art, data=None, output=Path(tmp) / "opt", time_budget=args.time_budget,
                                progress=False, formats="torch,onnx", settings=None)
        print(f"  laser optimize: {result.verdict()} ({time.perf_counter() - t0:.0f} s)")
        w = result.winner
        if w is None or result.winner_artifact is None:
            raise SystemExit(f"{name}: laser optimize found no winner")
        reported = float(w.metrics["p50_ms"])
        calls = {f"laser winner ({w.candidate.short})": laser.run(laser.load(Path(tmp) / "opt" / "winner"),
                                                                   backend=w.candidate.backend, threads=args.threads)}
    calls.update(peers(art, args.threads, not args.no_compile))
    feeds = [art.spec.example_inputs(batch=16, seed=1 + i) for i in range(SAMPLES // 16)]
    out = art.spec.output_names[0]
    with laser.run(art, backend="torch") as ref:
        parent = {out: np.concatenate([ref(f)[out] for f in feeds])}
    fid = {label: fidelity(c, art, feeds, parent) for label, c in calls.items()}
    one = art.spec.example_inputs(batch=1, seed=0)
    times = side_by_side({k: (lambda c=c: c(one)) for k, c in calls.items()}, rounds=args.rounds, block=args.block,
                         switch=2, warmup=3, pause_s=PAUSE_S)
    eager = float(np.median(times["PyTorch eager"]))
    rows = []
    for label, t in times.items():
        med = float(np.median(t))
        rows.append({"model": name, "path": label, "p50_ms": med, "p90_ms": float(np.percentile(t, 90)),
                     "vs_eager": eager / med, "rel_l2": fid[label]["rel_l2"], "agreement": fid[label]["top1_agreement"],
                     "meets": fid[label]["rel_l2"] <= THRESHOLD, "winner": label.startswith("laser winner"),
                     "reported_p50_ms": reported if label.startswith("laser winner") else None})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v3_small", "bert-small"])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--block", type=int, default=5)
    p.add_argument("--threads", type=int, default=default_threads())
    p.add_argument("--time-budget", default="8m", help="laser optimize's time budget per model (default: 8m)")
    p.add_argument("--no-compile", action="store_true", help="leave torch.compile out (12-28 s cold per model)")
    args = p.parse_args()
    for model in args.models:
        report(bench_model(model, args), args)


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """One model's table and targets, printed as soon as it is measured."""
    print(f"\nmeasured: ms per call at batch 1, side by side in one process ({args.rounds} interleaved rounds of "
          f"{args.block} timed calls per path); fidelity vs PyTorch eager on {SAMPLES} spec example inputs; "
          f"{args.threads} threads")
    print(f"{'model':<20}{'path':<44}{'p50 ms':>9}{'p90 ms':>9}{'× eager':>9}{'rel L2':>10}{'agree':>8}  meets")
    for r in rows:
        agree = "—" if r["agreement"] is None else f"{100 * r['agreement']:.1f}%"
        print(f"{r['model']:<20}{r['path']:<44}{r['p50_ms']:>9.3f}{r['p90_ms']:>9.3f}{r['vs_eager']:>9.2f}"
              f"{100 * r['rel_l2']:>9.3g}%{agree:>8}  {'yes' if r['meets'] else 'no'}")
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        win = next(r for r in mine if r["winner"])
        best = min((r for r in mine if not r["winner"] and r["meets"]), key=lambda r: r["p50_ms"], default=None)
        if best is not None:
            ratio = win["p50_ms"] / best["p50_ms"]
            print(f"\n{model}: winner / best peer meeting rel L2 <= {100 * THRESHOLD:g} % ({best['path']}) = "
                  f"{ratio:.2f} -> {'met' if ratio <= 1.0 else 'NOT met'} (target <= 1.0)")
        drift = abs(win["reported_p50_ms"] - win["p50_ms"]) / win["p50_ms"]
        print(f"{model}: optimize reported p50 {win['reported_p50_ms']:.3f} ms, measured here {win['p50_ms']:.3f} ms: "
              f"{100 * drift:.0f} % apart -> {'met' if drift <= 0.10 else 'NOT met'} (target within 10 %)")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
