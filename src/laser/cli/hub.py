"""``laser hub list | info | run | bench``: the catalog from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from laser.cli.common import add_backend, add_json, add_weight_args
from laser.cli.output import RANDOM_NOTE, emit_json, table
from laser.errors import ConfigError, InputError


def register(sub: argparse._SubParsersAction) -> None:
    hub = sub.add_parser("hub", help="ready models by name: list, info, run a task pipeline, bench")
    hsub = hub.add_subparsers(dest="hub_command", metavar="HUB_COMMAND")
    hub.set_defaults(func=lambda args: _help(hub))

    p = hsub.add_parser("list", help="the catalog")
    p.add_argument("--task", help="only this task (classification, segmentation, detection, text-classification)")
    add_json(p)
    p.set_defaults(func=cmd_list)

    p = hsub.add_parser("info", help="one card: task, spec, preprocessing, labels, weights URL + sha256, license")
    p.add_argument("name")
    add_json(p)
    p.set_defaults(func=cmd_info)

    p = hsub.add_parser("run", help="run a model's task pipeline on an image or text file")
    _model_args(p)
    p.add_argument("--input", required=True, help="image file (PNG/JPEG), a WAV file (vad), or a UTF-8 text file "
                                                  "(one text per line)")
    p.add_argument("--top-k", type=int, default=5, help="labels to show (classification, text; default 5)")
    p.add_argument("--output", help="directory for the answer's files (mask, overlay, drawn boxes, JSON)")
    p.add_argument("--score-threshold", type=float, default=0.5, help="detection: minimum score (default 0.5)")
    p.add_argument("--iou-threshold", type=float, default=0.5, help="detection: NMS IoU threshold (default 0.5)")
    add_backend(p)
    add_json(p)
    p.set_defaults(func=cmd_run)

    p = hsub.add_parser("fetch", help="fetch cards' weights into the cache now (e.g. before going offline)")
    p.add_argument("names", nargs="+", help="catalog names (pp-ocr, mtcnn = their three models)")
    p.set_defaults(func=cmd_fetch)

    p = hsub.add_parser("bench", help="the model's LASER card measured on this machine")
    _model_args(p)
    p.add_argument("--backends", help="comma-separated backends, e.g. torch,onnxruntime (default: the first that "
                                      "runs the model; a torch model is exported for onnxruntime)")
    p.add_argument("--data", help="labelled dataset for accuracy, e.g. digits (default: none)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=1.0, help="time budget per latency run")
    p.add_argument("--no-peak", action="store_true", help="skip the FP32/INT8 peak micro-benchmarks")
    add_json(p)
    p.set_defaults(func=cmd_bench)


def _help(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="catalog name, or a bundle directory / .onnx file with a task")
    add_weight_args(p)


def _load(args: argparse.Namespace) -> Any:
    from laser.loader import load

    return load(args.name, weights=args.weights, random_weights=args.random_weights)


def cmd_list(args: argparse.Namespace) -> int:
    from laser import hub

    rows = []
    for c in hub.cards(args.task):
        cached = c.weights is not None and (hub.card_cache(c) / c.weights.filename).is_file()
        weights = "built in" if c.builtin else ("cached" if cached else "download")
        rows.append({"name": c.name, "task": c.task, "input": _inputs(c.spec), "weights": weights,
                     "description": c.description})
    if args.json:
        emit_json({"models": rows})
        return 0
    print(table([(r["name"], r["task"], r["input"], r["weights"], _first_sentence(r["description"])) for r in rows],
                ("name", "task", "input", "weights", "description")))
    return 0


def _inputs(spec: Any) -> str:
    return " ".join(f"{t.name}{t.describe()}" for t in spec.inputs)


def _first_sentence(text: str, limit: int = 60) -> str:
    first = text.split(". ")[0].split(", ImageNet")[0]
    return first if len(first) <= limit else first[: limit - 3] + "..."


def card_dict(name: str) -> dict[str, Any]:
    from laser import hub

    c = hub.card(name)
    labels = c.all_labels()
    weights: dict[str, Any]
    if c.builtin:
        weights = {"builtin": c.builtin}
    elif c.weights is not None:
        path = hub.card_cache(c) / c.weights.filename
        weights = {"url": c.weights.url, "sha256": c.weights.sha256, "checked": c.weights.hash_note,
                   "cache": str(path), "cached": path.is_file()}
    else:
        weights = {}
    measured = _measured_card(c.name) or (dict(c.laser_card) if c.laser_card else None)
    return {
        "name": c.name, "task": c.task, "description": c.description, "license": c.license, "source": c.source,
        "factory": c.factory, "kwargs": dict(c.kwargs), "inputs": [t.to_dict() for t in c.spec.inputs],
        "outputs": [t.to_dict() for t in c.spec.outputs], "preprocessing": dict(c.preprocessing),
        "labels": {"count": len(labels), "first": list(labels[:10])}, "weights": weights,
        "assets": {k: {"url": r.url, "checked": r.hash_note} for k, r in c.assets.items()},
        "laser_card": measured,
    }


def cmd_info(args: argparse.Namespace) -> int:
    members = _aliases().get(args.name)
    if members:  # a pipeline of several cards: each of them
        if args.json:
            emit_json({"pipeline": args.name, "models": [card_dict(n) for n in members]})
            return 0
        print(f"{args.name}: a pipeline of {len(members)} models ({', '.join(members)}; `laser hub run {args.name}`)")
        for name in members:
            print(f"\n{'=' * 72}")
            _print_info(card_dict(name))
        return 0
    d = card_dict(args.name)
    if args.json:
        emit_json(d)
        return 0
    _print_info(d)
    return 0


def _print_info(d: dict[str, Any]) -> None:
    print(f"{d['name']}  ({d['task']})\n{d['description']}\n")
    rows = [("input", t["name"], t["dtype"], t["shape"]) for t in d["inputs"]]
    rows += [("output", t["name"], t["dtype"], t["shape"]) for t in d["outputs"]]
    print(table(rows, ("", "name", "dtype", "shape")))
    print(f"\nfactory:       {d['factory']} {json.dumps(d['kwargs'])}")
    print(f"preprocessing: {json.dumps(d['preprocessing'])}")
    print(f"labels:        {d['labels']['count']} ({', '.join(d['labels']['first'][:5])}, ...)")
    w = d["weights"]
    if "url" in w:
        print(f"weights:       {w['url']}\n               {w['checked']}\n               cache: {w['cache']} "
              f"({'cached' if w['cached'] else 'not cached'})")
    elif "builtin" in w:
        print(f"weights:       built in ({w['builtin']})")
    for k, a in d["assets"].items():
        print(f"{k + ':':<15}{a['url']} ({a['checked']})")
    print(f"license:       {d['license']}\nsource:        {d['source']}")
    card = d["laser_card"]
    if card:
        print(f"\nLASER card (measured {card.get('created', '?')} on {card.get('hardware', '?')}):")
        print(card.get("markdown", json.dumps(card.get("figures", {}))))
    else:
        print(f"\nLASER card: not measured yet; run `laser hub bench {d['name']}`")


def _aliases() -> dict[str, tuple[str, ...]]:
    """Names of multi-model pipelines -> their catalog models."""
    from laser.hub.pipelines.ocr import OCR_MODELS
    from laser.hub.real import MTCNN_MODELS

    return {"pp-ocr": OCR_MODELS, "mtcnn": MTCNN_MODELS}


def cmd_fetch(args: argparse.Namespace) -> int:
    from laser import hub

    aliases = _aliases()
    names = [m for n in args.names for m in aliases.get(n, (n,))]
    for name in names:
        print(f"{name}: {hub.weights_path(hub.card(name))}")
    return 0


def _run_ocr(args: argparse.Namespace) -> int:
    from laser.hub.pipelines.ocr import ocr_pipeline

    if args.weights or args.random_weights:
        raise ConfigError("pp-ocr runs the catalog's three PP-OCRv4 models; --weights/--random-weights do not apply")
    result = ocr_pipeline(backend=args.backend).run(Path(args.input), output=args.output)
    if args.json:
        emit_json(result)
        return 0
    print(f"{' + '.join(result['models'])} ({result['backend']}): {len(result['lines'])} line(s)")
    if result["lines"]:
        print(table([(ln["text"], f"{ln['score']:.3f}", " ".join(f"{x:.0f},{y:.0f}" for x, y in ln["box"]))
                     for ln in result["lines"]], ("text", "score", "box corners x,y (pixels)")))
    for key, path in result.get("files", {}).items():
        print(f"{key}: {path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from laser.hub.pipelines import pipeline_for
    from laser.hub.pipelines.text import TextClassificationPipeline

    if args.name == "pp-ocr":
        return _run_ocr(args)
    if args.name == "mtcnn":  # the cascade starts at P-Net; its card names R-Net and O-Net
        args.name = "mtcnn-pnet"
    art = _load(args)
    pipe = pipeline_for(art, backend=args.backend)
    path = Path(args.input)
    if not path.is_file():
        raise ConfigError(f"--input {path} does not exist; give an image file (or a text file for text models)")
    if isinstance(pipe, TextClassificationPipeline):
        try:
            texts = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise InputError(f"--input {path} is not UTF-8 text; {art.name} is a text model: give a text file "
                             "with one text per line") from None
        if not texts:
            raise ConfigError(f"{path} holds no text; put one text per line")
        results = pipe.run_batch(texts, top_k=args.top_k)
        if args.output:
            out = Path(args.output)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{path.stem}.json").write_text(json.dumps({"results": results}, indent=2) + "\n")
        if args.json:
            emit_json({"results": results, "random_weights": art.random_weights})
        else:
            if art.random_weights:
                print(RANDOM_NOTE)
            for r in results:
                print(f"{r['label']:<12} {r['score']:.3f}  {r['text']}")
        return 0
    options: dict[str, Any] = {"output": args.output}
    if art.task == "classification":
        options["top_k"] = args.top_k
    elif art.task == "detection":
        options.update(score_threshold=args.score_threshold, iou_threshold=args.iou_threshold)
    result = pipe.run(path, **options)
    if args.json:
        emit_json(result)
        return 0
    _print_result(result)
    return 0


def _print_result(r: dict[str, Any]) -> None:
    print(f"{r['model']} ({r['task']}, {r['format']} on {r['backend']})")
    if r.get("random_weights"):
        print(RANDOM_NOTE)
    if r["task"] == "classification":
        print(table([(i + 1, t["label"], f"{100 * t['score']:.2f} %") for i, t in enumerate(r["top_k"])],
                    ("rank", "label", "probability")))
    elif r["task"] == "segmentation":
        print(table([(c["label"], f"{c['pixels']:,}", f"{100 * c['fraction']:.1f} %") for c in r["classes"]],
                    ("class", "pixels", "share of image")))
    elif r["task"] == "detection":
        dets = r["detections"]
        print(f"{len(dets)} detection(s) with score > {r['score_threshold']}:")
        if dets:
            print(table([(d["label"], f"{d['score']:.3f}", ", ".join(f"{v:.0f}" for v in d["box"])) for d in dets],
                        ("label", "score", "box x1, y1, x2, y2 (pixels)")))
    elif r["task"] == "vad":
        for note in r["notes"]:
            print(f"note: {note}")
        print(f"{len(r['segments'])} speech segment(s) in {r['duration_s']:.2f} s at {r['sample_rate']} Hz:")
        if r["segments"]:
            print(table([(f"{s['start']:.3f}", f"{s['end']:.3f}") for s in r["segments"]], ("start (s)", "end (s)")))
    elif r["task"] == "face-detection":
        print(f"{len(r['faces'])} face(s) ({' + '.join(r['models'])}):")
        if r["faces"]:
            print(table([(f"{f['score']:.3f}", ", ".join(f"{v:.0f}" for v in f["box"]),
                          " ".join(f"{x:.0f},{y:.0f}" for x, y in f["landmarks"])) for f in r["faces"]],
                        ("score", "box x1, y1, x2, y2 (pixels)", "landmarks x,y: eyes, nose, mouth corners")))
    elif r["task"] == "ocr-recognition":
        print(f"text: {r['text']!r}  (score {r['score']:.3f})")
    elif r["task"] == "ocr-direction":
        print(f"angle: {r['angle']} degrees  (score {r['score']:.3f})")
    elif r["task"] == "ocr-detection":
        print(table([(f"{b['score']:.3f}", " ".join(f"{x:.0f},{y:.0f}" for x, y in b["box"])) for b in r["boxes"]],
                    ("score", "box corners x,y (pixels)")) if r["boxes"] else "no text found")
    for key, path in r.get("files", {}).items():
        print(f"{key}: {path}")


def _cards_dir() -> Path:
    from laser.hub.download import cache_dir

    return cache_dir() / "laser-cards"


def _measured_card(name: str) -> dict[str, Any] | None:
    path = _cards_dir() / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def cmd_bench(args: argparse.Namespace) -> int:
    from laser.measure import measure
    from laser.measure.table import hardware_line

    art = _load(args)
    report = measure(art, backends=args.backends, data=args.data, repeats=args.repeats, max_seconds=args.seconds,
                     peak=not args.no_peak)
    data = report.to_dict()
    card = {"created": data["created"], "hardware": hardware_line(report.hardware), "weights":
            art.lineage[0].params.get("weights") if art.lineage else None, "markdown": report.to_markdown(),
            "report": data}
    from laser import hub

    if args.name in hub.CATALOG:  # remember it: `laser hub info NAME` shows the last measured card
        _cards_dir().mkdir(parents=True, exist_ok=True)
        (_cards_dir() / f"{args.name}.json").write_text(json.dumps(card, indent=2) + "\n")
    if args.json:
        emit_json(data)
    else:
        print(report.to_markdown())
    return 0
