"""Structured pruning side by side in one run: digits-cnn and ResNet-18, original vs 30 % / 50 % of the
channels removed, each exported to ONNX and run on onnxruntime.

    .venv/bin/python bench/prune.py [--models digits-cnn resnet18] [--ratios 0.3 0.5] [--batches 1 8] [--rounds 12]

- digits-cnn: the built-in trained model; pruned in 2 steps with fine-tuning between them, then
  distilled from the original (``Prune(steps=2, finetune_epochs=3)`` then ``Distill(teacher=original)``).
  top-1 is measured on the digits test split, on onnxruntime, for every variant.
- ResNet-18: random weights at 3x224x224 (BatchNorm statistics re-estimated on one random batch so the
  L1 ranking and the timings see realistic activations); ``Prune(ratio)`` with the default L1 criterion.

MACs are counted (torch.utils.flop_counter, batch 1, MACs = FLOPs / 2). Latency: calls interleaved in
rounds (per round and variant: one untimed call, then 3 timed ones), so load from other processes hits
every variant alike; the ratio is original median / pruned median, measured in the same rounds.

Targets (2-core CPU): 50 % pruning gives >= 1.6x lower latency at batch 8 for ResNet-18; digits-cnn within
1 point of its original top-1.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch

import laser
from laser.artifact import Artifact
from laser.compress.common import summary
from laser.compress.distill import Distill
from laser.compress.prune import Prune
from laser.export import export
from laser.measure.latency import side_by_side
from laser.models.factory import with_batchnorm_statistics
from laser.runtime import default_threads


def realistic(name: str) -> Artifact:
    """Random weights with BatchNorm statistics from one random batch (see reestimate_batchnorm)."""
    art = laser.load(f"torchvision.models:{name}", random_weights=True, input_shape=(3, 224, 224))
    return with_batchnorm_statistics(art)


def variants(name: str, ratios: list[float]) -> dict[str, Artifact]:
    """The original and one pruned variant per ratio (torch artifacts)."""
    if name == "digits-cnn":
        original = laser.load("digits-cnn")
        out = {"original": original}
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # training a tiny CNN: spin-waiting OpenMP threads on a busy CPU cost 10x+
        try:
            for r in ratios:
                t0 = time.perf_counter()
                pruned = Prune(ratio=r, steps=2, finetune_epochs=3)(original)
                out[f"{r:.0%} pruned"] = Distill(teacher=original, epochs=5)(pruned)
                print(f"  {name} {r:.0%}: pruned + fine-tuned + distilled in {time.perf_counter() - t0:.1f} s")
        finally:
            torch.set_num_threads(threads)
        return out
    original = realistic(name)
    out = {"original": original}
    for r in ratios:
        out[f"{r:.0%} pruned"] = Prune(ratio=r, data=None)(original)
    return out


def bench_model(name: str, ratios: list[float], batches: list[int], rounds: int, threads: int,
                exporter: str) -> list[dict[str, Any]]:
    from laser import data
    from laser.measure.accuracy import classification

    print(f"\n{name}:")
    torch_arts = variants(name, ratios)
    macs = {k: summary(a.module, a.spec)["macs"] for k, a in torch_arts.items()}
    t0 = time.perf_counter()
    onnx_arts = {k: export(a, to="onnx", exporter=exporter) for k, a in torch_arts.items()}
    used = {a.lineage[-1].results["exporter_used"] for a in onnx_arts.values()}
    print(f"  exported {len(onnx_arts)} variants ({', '.join(sorted(used))} exporter) in "
          f"{time.perf_counter() - t0:.1f} s, each validated against its torch model")
    runners = {k: laser.run(a, backend="onnxruntime", threads=threads) for k, a in onnx_arts.items()}
    top1 = {}
    if name == "digits-cnn":
        test = data.load("digits", "test")
        top1 = {k: classification(r, test)["top1"] for k, r in runners.items()}
    rows = []
    for batch in batches:
        feeds = onnx_arts["original"].spec.example_inputs(batch=batch, seed=1)
        calls = {k: (lambda r=r, f=feeds: r(f)) for k, r in runners.items()}
        times = side_by_side(calls, rounds=rounds, block=3, switch=1, warmup=3)
        base = float(np.median(times["original"]))
        for label, t in times.items():
            med = float(np.median(t))
            rows.append({"model": name, "batch": batch, "variant": label, "macs": macs[label],
                         "macs_ratio": macs[label] / macs["original"], "median_ms": med,
                         "p90_ms": float(np.percentile(t, 90)), "speedup": base / med,
                         "top1": top1.get(label), "calls": len(t)})
    for r in runners.values():
        r.close()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["digits-cnn", "resnet18"])
    p.add_argument("--ratios", nargs="+", type=float, default=[0.3, 0.5])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--rounds", type=int, default=12, help="rounds of 3 timed calls per variant and batch size")
    p.add_argument("--threads", type=int, default=default_threads())
    p.add_argument("--exporter", default="auto", choices=("auto", "dynamo", "legacy"))
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows = [r for m in args.models for r in bench_model(m, args.ratios, args.batches, args.rounds, args.threads,
                                                         args.exporter)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"\nMACs counted (batch 1, MACs = FLOPs / 2); latency measured: onnxruntime CPU, {args.threads} threads, "
          "wall time per call, median and p90 over interleaved rounds; shared CPU, expect noise; top-1 measured "
          "on onnxruntime (digits test split)")
    print(f"{'model':<12}{'batch':>6}  {'variant':<12}{'MACs':>12}{'x MACs':>8}{'median ms':>11}{'p90 ms':>9}"
          f"{'speed-up':>10}{'top-1':>9}")
    for r in rows:
        acc = f"{100 * r['top1']:.2f} %" if r["top1"] is not None else "-"
        print(f"{r['model']:<12}{r['batch']:>6}  {r['variant']:<12}{r['macs']:>12,}{r['macs_ratio']:>8.2f}"
              f"{r['median_ms']:>11.3f}{r['p90_ms']:>9.3f}{r['speedup']:>9.2f}x{acc:>9}")
    target = next((r for r in rows if r["model"] == "resnet18" and r["batch"] == 8 and r["variant"] == "50% pruned"),
                  None)
    if target:
        print(f"\ntarget ResNet-18 50 % pruned >= 1.6x lower latency at batch 8: {target['speedup']:.2f}x -> "
              f"{'met' if target['speedup'] >= 1.6 else 'NOT met'}")
    digits = [r for r in rows if r["model"] == "digits-cnn" and r["batch"] == rows[0]["batch"]]
    if digits:
        base = next(r["top1"] for r in digits if r["variant"] == "original")
        worst = min(r["top1"] for r in digits if r["variant"] != "original")
        print(f"target digits-cnn within 1 point of its original top-1 ({100 * base:.2f} %): worst pruned "
              f"{100 * worst:.2f} % -> {'met' if worst >= base - 0.01 else 'NOT met'}")


if __name__ == "__main__":
    main()
