"""News-title classification with a small BERT (after PaddleNLP's news-title example).

Writes a small CSV of generated news titles in four topics, builds a WordPiece vocabulary from it
locally, trains a 2-layer BERT (transformers) with laser's training loop, classifies new titles through
the text pipeline, then exports, quantizes (INT8 dynamic: the MatMuls), measures and serves it.

    python examples/text_news_titles.py [--fast] [--out out/examples/news_titles]
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

import laser
from laser.architecture import build_architecture
from laser.artifact import Step
from laser.compress.train import TrainConfig, fit
from laser.data import Dataset
from laser.hub.pipelines.text import encode
from laser.models.text import build_wordpiece_vocab, read_vocab, text_spec

TOPICS = ("world", "sports", "business", "technology")
MAX_LENGTH = 24  # tokens per title, padded: one fixed shape for export, quantization and batching
WORDS = {
    "world": {"who": ["The prime minister", "The president", "Foreign ministers", "Rebel leaders", "The UN envoy"],
              "act": ["meets", "visits", "warns", "condemns", "calls for talks with"],
              "what": ["neighbouring states", "border officials", "the parliament", "refugee agencies",
                       "the coalition"],
              "tail": ["amid ceasefire hopes", "after election dispute", "as sanctions tighten", "over water rights"]},
    "sports": {"who": ["United", "The home side", "The champions", "City's striker", "The national team"],
               "act": ["beat", "draw with", "thrash", "edge past", "knock out"],
               "what": ["their rivals", "the league leaders", "the visitors", "last year's finalists"],
               "tail": ["in the cup final", "with a late goal", "after extra time", "to top the table"]},
    "business": {"who": ["Shares in the bank", "The retailer", "Oil prices", "The central bank", "Investors"],
                 "act": ["fall after", "rise on", "slump on", "rally after", "cut forecasts on"],
                 "what": ["quarterly earnings", "the merger deal", "weak demand", "the rate decision"],
                 "tail": ["as markets close", "in early trading", "despite profit warning", "for the third week"]},
    "technology": {"who": ["The chipmaker", "A startup", "The smartphone maker", "Researchers", "The software giant"],
                   "act": ["unveils", "launches", "patches", "open-sources", "delays"],
                   "what": ["a new processor", "its cloud platform", "a security flaw", "an AI model",
                            "the operating system update"],
                   "tail": ["for developers", "with faster batteries", "after data breach", "at the annual conference"]},
}


def titles(n: int, seed: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        w = WORDS[topic]
        parts = [rng.choice(w["who"]), rng.choice(w["act"]), rng.choice(w["what"])]
        if rng.random() < 0.7:
            parts.append(rng.choice(w["tail"]))
        out.append((" ".join(parts), topic))
    return out


def write_csv(rows: list[tuple[str, str]], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("title", "topic"), *rows])


def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["title"] for r in rows], np.array([TOPICS.index(r["topic"]) for r in rows], np.int64)


def main() -> dict:
    from deploy import deploy, example_args

    args = example_args("news_titles", __doc__.splitlines()[0])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(titles(400 if args.fast else 2000, args.seed), out / "train.csv")
    write_csv(titles(80 if args.fast else 400, args.seed + 1), out / "val.csv")
    train_titles, train_labels = read_csv(out / "train.csv")
    val_titles, val_labels = read_csv(out / "val.csv")
    vocab = read_vocab(build_wordpiece_vocab(train_titles, out / "vocab", vocab_size=600))
    pre = {"type": "text", "tokenizer": "wordpiece", "lowercase": True, "max_length": MAX_LENGTH, "vocab": vocab}
    spec = text_spec(MAX_LENGTH, len(vocab), len(TOPICS))

    def as_dataset(texts: list[str], labels: np.ndarray, name: str) -> Dataset:
        feeds = encode(pre, texts, spec.input_names)  # the pipeline's own tokenizer: train and serve alike
        return Dataset(name, (feeds["input_ids"], feeds["attention_mask"]), labels)

    train, val = as_dataset(train_titles, train_labels, "news-train"), as_dataset(val_titles, val_labels, "news-val")
    arch = {"factory": "laser.models.text:bert_classifier",
            "kwargs": {"classes": len(TOPICS), "vocab_size": len(vocab), "hidden": 32, "layers": 2, "heads": 2,
                       "intermediate": 64, "max_length": MAX_LENGTH}}
    torch.manual_seed(args.seed)
    module = build_architecture(arch)
    config = TrainConfig(epochs=4 if args.fast else 10, batch_size=32, lr=3e-3, seed=args.seed, patience=3,
                         progress=not args.fast)
    result = fit(module, train, val, config)
    print(f"trained: best validation accuracy {100 * (result.best_val_top1 or 0):.1f} % at epoch {result.best_epoch}")
    art = laser.Artifact.from_module(
        module.eval(), name="news-title-bert", task="text-classification", spec=spec, architecture=arch,
        preprocessing=pre, labels=TOPICS,
        step=Step("train", params={"data": str(out / "train.csv"), "samples": len(train), "epochs": config.epochs},
                  results={"best_val_top1": result.best_val_top1}))
    pipe = laser.pipeline("text-classification", model=art)
    for title in ("Striker scores twice as United win the derby", "Chipmaker unveils a faster processor for laptops"):
        r = pipe.run(title)
        print(f"{r['label']:<11} {r['score']:.2f}  {title}")
    summary = deploy(art, sample="Central bank holds rates as shares rally", calibration=None, data=val, out=out,
                     quantize="int8-dynamic", fast=args.fast)
    accuracy = summary["report"].artifacts[0]["accuracy"]["accuracy"]
    print(f"validation accuracy (torch, measured on {len(val)} titles): {100 * accuracy:.1f} %")
    return {"accuracy": accuracy, **summary}


if __name__ == "__main__":
    main()
