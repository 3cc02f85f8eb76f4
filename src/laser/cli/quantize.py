"""``laser quantize MODEL --method M -o DIR``: INT8 static/dynamic, FP16, BF16, or QAT."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

from laser.cli.common import add_json, add_model_args, load_model
from laser.cli.output import emit_json, human_bytes, percent, table
from laser.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    from laser.compress.calibration import CALIBRATION_METHODS
    from laser.compress.quantize import METHODS

    p = sub.add_parser("quantize", help="quantize a model to INT8 / FP16 ONNX (post-training or QAT)")
    add_model_args(p)
    p.add_argument("--method", default="int8-static", choices=(*METHODS, "qat"),
                   help="int8-static (calibrated QDQ, the fast one on CPU), int8-dynamic, fp16, bf16, or qat "
                        "(fine-tune with fake quantization, then int8-static); default int8-static")
    p.add_argument("-o", "--output", required=True, help="bundle directory to write")
    p.add_argument("--to", default="onnx", choices=("onnx", "executorch"),
                   help="onnx (QDQ model, default) or executorch (PT2E with the XNNPACK quantizer: a .pte with "
                        "quantized XNNPACK kernels; int8-static only, calibrated on a dataset name)")
    p.add_argument("--calibration", help="calibration data: dataset name (train split), folder of images or "
                                         ".npy files, a .npy/.npz file, or 'random' (latency work only)")
    p.add_argument("--samples", type=int, default=256, help="calibration samples (default 256)")
    p.add_argument("--calibration-method", default="minmax", choices=CALIBRATION_METHODS)
    p.add_argument("--per-tensor", action="store_true", help="per-tensor weights (default: per-channel)")
    p.add_argument("--activation-type", choices=("uint8", "int8"), help="default: chosen for this CPU")
    p.add_argument("--weight-type", choices=("uint8", "int8"), help="default: chosen for this CPU")
    p.add_argument("--exclude", action="append", default=[], metavar="NODE", help="ONNX node kept in float "
                   "(repeatable)")
    p.add_argument("--max-accuracy-drop", type=float, metavar="POINTS",
                   help="top-1 budget in percentage points on --data: keep the most sensitive layers in float "
                        "until it holds")
    p.add_argument("--data", help="labelled dataset name; its test split measures the accuracy delta (for qat "
                                  "its train/val splits fine-tune; default digits)")
    p.add_argument("--epochs", type=int, default=3, help="qat: fine-tuning epochs (default 3)")
    p.add_argument("--lr", type=float, default=1e-4, help="qat: learning rate (default 1e-4)")
    add_json(p)
    p.set_defaults(func=cmd_quantize)


def cmd_quantize(args: argparse.Namespace) -> int:
    from laser.compress.qat import QAT
    from laser.compress.quantize import Quantize, QuantizeWarning

    if args.method == "qat":
        ignored = [flag for flag, value in (("--max-accuracy-drop", args.max_accuracy_drop), ("--exclude", args.exclude),
                                            ("--activation-type", args.activation_type),
                                            ("--weight-type", args.weight_type), ("--per-tensor", args.per_tensor))
                   if value]
        if ignored:
            raise ConfigError(f"{', '.join(ignored)} apply to post-training methods, not --method qat (QAT learns "
                              "its ranges and quantizes every layer); drop them or use --method int8-static")
        stage: Any = QAT(epochs=args.epochs, lr=args.lr, data=args.data or "digits", calibration=args.calibration,
                         calibration_method=args.calibration_method, samples=args.samples)
    elif args.to == "executorch":
        if args.method != "int8-static":
            raise ConfigError(f"--to executorch takes --method int8-static (PT2E + XNNPACK), not {args.method}")
        from laser.export import Export

        stage = Export(to="executorch", quantize="int8", data=args.calibration or args.data or "digits")
    else:
        stage = Quantize(method=args.method, calibration=args.calibration, samples=args.samples,
                         calibration_method=args.calibration_method, per_channel=not args.per_tensor,
                         activation_type=args.activation_type, weight_type=args.weight_type,
                         exclude=tuple(args.exclude), max_accuracy_drop=args.max_accuracy_drop, data=args.data)
    art = load_model(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", QuantizeWarning)
        result = stage(art).save(args.output)
    for w in caught:
        if issubclass(w.category, QuantizeWarning):
            print(f"laser quantize: warning: {w.message}", file=sys.stderr)
    step = result.lineage[-1].results
    if args.to == "executorch":
        return _executorch_summary(result, step, args.json)
    summary = {"output": str(result.location), "method": args.method, "format": result.format,
               "bytes": step.get("bytes"), "accuracy": step.get("qat_accuracy") or step.get("accuracy"),
               "accuracy_aware": step.get("accuracy_aware"), "excluded": step.get("excluded", []),
               "types": {k: step.get(k) for k in ("activation_type", "weight_type", "reduce_range", "per_channel",
                                                  "defaults_from") if k in step},
               "calibration": step.get("calibration"), "speed": step.get("speed"), "notes": step.get("notes", [])}
    if args.json:
        emit_json(summary)
        return 0
    _print_human(summary)
    return 0


def _executorch_summary(result: Any, step: Any, as_json: bool) -> int:
    from laser.export.executorch import report_line

    v = step["validation"]
    summary = {"output": str(result.location), "method": "int8-static", "format": "executorch",
               "bytes": result.model_file.stat().st_size, "quantization": step.get("quantization"),
               "delegation": step["delegation"], "validation": v}
    if as_json:
        emit_json(summary)
        return 0
    print(f"int8-static (PT2E, XNNPACK quantizer): {human_bytes(summary['bytes'])} .pte; bundle {summary['output']}")
    print(f"  delegation: {report_line(step['delegation'])}")
    print(f"  top-1 agreement with the parent on {v['data']} ({v['samples']} samples, executorch): "
          f"{percent(v['top1_agreement'])}; accuracy FP32 {v['parent_accuracy']:.2f} %, INT8 {v['accuracy']:.2f} % "
          f"(measured)")
    return 0


def _print_human(s: dict[str, Any]) -> None:
    b = s["bytes"]
    print(f"{s['method']}: {human_bytes(b['fp32'])} -> {human_bytes(b['quantized'])} "
          f"({b['ratio']:.2f} x the FP32 file); bundle {s['output']}")
    if s["types"]:
        t = s["types"]
        print(f"  types: activations {t.get('activation_type')}, weights {t.get('weight_type')}, "
              f"per-channel {t.get('per_channel')}, reduce_range {t.get('reduce_range')} ({t.get('defaults_from')})")
    if s["calibration"]:
        c = s["calibration"]
        print(f"  calibration: {c['source']}, {c['samples']} samples, {c['method']}")
    sp = s["speed"]
    if sp:
        print(f"  latency (measured, batch 1, {sp.get('backend', 'onnxruntime')}, shared CPU): FP32 {sp['fp32_p50_ms']:.3f} ms, quantized "
              f"{sp['quantized_p50_ms']:.3f} ms ({sp['ratio']:.2f} x)")
    acc = s["accuracy_aware"] or s["accuracy"]
    if acc and acc.get("fp32_top1") is not None:
        q = acc.get("final_top1", acc.get("quantized_top1", acc.get("int8_top1")))
        where = "openvino" if "openvino" in acc.get("method", "") else "onnxruntime"
        print(f"  top-1 on {acc['data']} ({acc['samples']} samples, {where}): FP32 {percent(acc['fp32_top1'])}, "
              f"quantized {percent(q)}, drop {acc['drop_points']:.2f} points (measured)")
    aa = s["accuracy_aware"]
    if aa:
        if "all_layers_drop_points" in aa:
            print(f"  all layers quantized: drop {aa['all_layers_drop_points']:.2f} points; budget {aa['budget_points']}")
        if aa["kept_in_float"]:
            rows = [(k["node"], k["layer"], f"{k['nmse']:.3g}" if "nmse" in k else "-") for k in aa["kept_in_float"]]
            print("  kept in float (most sensitive first):")
            print("    " + table(rows, ("node", "layer", "sensitivity (output NMSE)")).replace("\n", "\n    "))
        cost = aa.get("cost")
        if cost:
            rows = [(k, f"{v['p50_ms']:.3f}", human_bytes(v["bytes"])) for k, v in cost.items() if k != "method"]
            print("  cost (measured, batch 1, onnxruntime; shared CPU: noisy):")
            print("    " + table(rows, ("model", "p50 ms", "file")).replace("\n", "\n    "))
