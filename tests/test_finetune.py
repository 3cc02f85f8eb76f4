"""laser finetune: digits-cnn's backbone onto a generated image folder of letters, and its bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from laser.artifact import Artifact
from laser.cli.main import main
from laser.errors import ConfigError, InputError

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def letters(root: Path, classes: str = "ABC", n: int = 60, seed: int = 0) -> Path:
    """8x8 grey images of rendered letters, jittered by a pixel, with N(0, 25) pixel noise."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(FONT), 7) if FONT.exists() else ImageFont.load_default()
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            im = Image.new("L", (8, 8), 0)
            ImageDraw.Draw(im).text((int(rng.integers(0, 2)), int(rng.integers(-1, 1))), c, fill=255, font=font)
            a = np.clip(np.asarray(im, np.float32) + rng.normal(0, 25, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / c / f"{i}.png")
    return root


def test_finetune_digits_cnn_on_letters(tmp_path, capsys):
    data = letters(tmp_path / "imgs")
    assert main(["finetune", "digits-cnn", "--data", str(data), "-o", str(tmp_path / "ft"), "--epochs", "15"]) == 0
    assert "held-out top-1 (measured" in capsys.readouterr().out
    man = json.loads((tmp_path / "ft" / "laser.json").read_text())
    assert man["labels"] == ["A", "B", "C"] and man["outputs"][0]["shape"] == ["batch", 3]
    assert man["metrics"]["holdout_top1"] >= 0.9 and man["metrics"]["holdout_samples"] == 27
    step = man["lineage"][-1]
    assert step["op"] == "finetune" and step["results"]["trainable_params"] == 128 * 3 + 3  # only the new head
    base = Artifact.open(tmp_path / "ft")  # rebuilds: digits-cnn factory -> new head transform -> weights
    x = torch.zeros(2, 1, 8, 8)
    with torch.inference_mode():
        assert base.module(x).shape == (2, 3)
    assert not base.random_weights


def test_finetune_unfreeze_and_bad_folders(tmp_path, digits_artifact):
    from laser.finetune import Finetune

    data = letters(tmp_path / "imgs", classes="AB", n=12)
    out = Finetune(data=str(data), epochs=1, unfreeze=1, progress=False)(digits_artifact)
    assert out.lineage[-1].results["trainable_params"] > 128 * 2 + 2  # the last conv block trains too
    (data / "B" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"1 file\(s\) are not readable images: .*broken.png.*--skip-bad"):
        Finetune(data=str(data), epochs=1, progress=False)(digits_artifact)
    skipped = Finetune(data=str(data), epochs=1, progress=False, skip_bad=True)(digits_artifact)
    assert [Path(f).name for f in skipped.lineage[-1].results["skipped"]] == ["broken.png"]
    one = letters(tmp_path / "one", classes="A", n=5)
    with pytest.raises(ConfigError, match=r"1 class folder\(s\) \['A'\]; fine-tuning needs at least 2"):
        Finetune(data=str(one), epochs=1, progress=False)(digits_artifact)


def test_text_file_labels_name_the_line(tmp_path):
    from laser.data.folder import text_file

    f = tmp_path / "t.tsv"
    f.write_text("pos\tgreat film\nneg\tdull\nnope\n")
    with pytest.raises(InputError, match=r"t.tsv:3: expected 'label<TAB>text'"):
        text_file(f)
    f.write_text("pos\tgreat film\nneg\tdull\nmeh\tso so\n")
    with pytest.raises(InputError, match=r"t.tsv:3: label 'meh' is not one of \['neg', 'pos'\]"):
        text_file(f, labels=("neg", "pos"))
    texts, labels, classes = text_file(f)
    assert classes == ("meh", "neg", "pos") and labels.tolist() == [2, 1, 0] and texts[0] == "great film"


TOPICS = {"sport": ["goal", "match", "team", "score", "coach", "league", "player", "referee", "stadium", "win"],
          "food": ["bread", "soup", "cheese", "recipe", "oven", "spicy", "dinner", "salad", "sauce", "bake"],
          "weather": ["rain", "snow", "wind", "storm", "sunny", "cloud", "forecast", "cold", "thunder", "fog"]}
FILLER = ["the", "a", "today", "we", "it", "was", "very", "and", "really", "about", "this", "that", "some"]


def topic_lines(n: int = 40, seed: int = 0) -> list[str]:
    """label<TAB>text lines: two words of the topic among four filler words, shuffled."""
    rng = np.random.default_rng(seed)
    lines = []
    for label, words in TOPICS.items():
        for _ in range(n):
            ws = [*rng.choice(words, 2), *rng.choice(FILLER, 4)]
            rng.shuffle(ws)
            lines.append(f"{label}\t{' '.join(ws)}")
    return lines


def tiny_bert(root: Path, texts: list[str]) -> Path:
    """A 1-layer BERT classifier (hidden 32, 2 classes, 12 tokens); its vocabulary: the texts' words, sorted
    (a trained WordPiece vocabulary orders equally frequent pieces differently from run to run)."""
    from laser.models.text import SPECIAL_TOKENS, bert_classifier, text_spec

    vocab = [*SPECIAL_TOKENS, *sorted({w for t in texts for w in t.split()})]
    kw = {"classes": 2, "vocab_size": len(vocab), "hidden": 32, "layers": 1, "heads": 2, "intermediate": 64,
          "max_length": 12}
    torch.manual_seed(0)
    pre = {"type": "text", "tokenizer": "wordpiece", "lowercase": True, "max_length": 12, "vocab": vocab}
    art = Artifact.from_module(bert_classifier(**kw).eval(), name="tiny-bert", task="text-classification",
                               spec=text_spec(12, len(vocab), 2), preprocessing=pre,
                               architecture={"factory": "laser.models.text:bert_classifier", "kwargs": kw})
    return art.save(root / "bert").location or root / "bert"


def test_finetune_text_model_on_a_labelled_text_file(tmp_path, capsys):
    lines = topic_lines(n=40)
    (tmp_path / "topics.tsv").write_text("\n".join(lines) + "\n")
    model = tiny_bert(tmp_path, [ln.split("\t")[1] for ln in lines])
    assert main(["finetune", str(model), "--data", str(tmp_path / "topics.tsv"), "-o", str(tmp_path / "ft"),
                 "--full", "--epochs", "10", "--lr", "1e-2", "--patience", "4", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["holdout_samples"] == 18 and r["epochs_run"] <= 10, r
    man = json.loads((tmp_path / "ft" / "laser.json").read_text())
    assert man["labels"] == ["food", "sport", "weather"] and man["outputs"][0]["shape"] == ["batch", 3]
    assert man["metrics"]["holdout_top1"] >= 0.9, man["metrics"]
    from laser.hub.pipelines.text import encode

    art = Artifact.open(tmp_path / "ft")  # rebuilds: bert factory -> new head -> weights; classifies new texts
    feeds = encode(art.preprocessing, ["rain and cold fog today", "the cheese soup was spicy"], art.spec.input_names)
    with torch.inference_mode():
        pred = art.module(*(torch.from_numpy(feeds[n]) for n in art.spec.input_names)).argmax(-1).tolist()
    assert [art.labels[k] for k in pred] == ["weather", "food"]


def test_finetune_text_frozen_head_and_bad_lines(tmp_path, capsys):
    from laser.finetune import Finetune

    lines = topic_lines(n=6)
    (tmp_path / "t.tsv").write_text("\n".join(lines) + "\n")
    model = Artifact.open(tiny_bert(tmp_path, [ln.split("\t")[1] for ln in lines]))
    out = Finetune(data=str(tmp_path / "t.tsv"), epochs=1, progress=False)(model)
    assert out.lineage[-1].results["trainable_params"] == 32 * 3 + 3  # frozen backbone: only the new head
    (tmp_path / "bad.tsv").write_text("\n".join(lines[:4]) + "\nsport goal match\n")
    assert main(["finetune", str(tmp_path / "bert"), "--data", str(tmp_path / "bad.tsv"), "-o", str(tmp_path / "o")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.tsv:5: expected 'label<TAB>text'" in err, err
    assert main(["finetune", "digits-cnn", "--data", str(tmp_path / "t.tsv"), "-o", str(tmp_path / "o")]) == 2
    assert "need a text model" in capsys.readouterr().err and not (tmp_path / "o").exists()
