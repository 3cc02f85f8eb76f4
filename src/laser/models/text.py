"""BERT-style text classifiers (from the transformers library) with plain tensor in/out, and WordPiece
vocabularies built locally.

A classifier takes ``input_ids`` and ``attention_mask`` (both int64, (B, L)) and returns logits
(B, classes) as one tensor, so it exports and runs on every backend like an image model. Models are
built from a config (no network); weights come from the card or from training.

transformers imports torchvision on its own; ``vision_compat`` is called first so that import works
with the CPU build of torch.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from laser.errors import ConfigError, require
from laser.spec import ModelSpec, TensorSpec

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def transformers() -> ModuleType:
    from laser.vision_compat import torchvision

    torchvision()
    return require("transformers", "text")


class SequenceClassifier(nn.Module):
    """(input_ids, attention_mask) int64 (B, L) -> logits (B, classes), around a transformers model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def bert_classifier(classes: int, vocab_size: int, hidden: int = 64, layers: int = 2, heads: int = 2,
                    intermediate: int = 128, max_length: int = 64) -> SequenceClassifier:
    """A BERT encoder + classification head from a small config (random init)."""
    if hidden % heads:
        raise ConfigError(f"hidden ({hidden}) must be divisible by heads ({heads}); e.g. hidden=64, heads=2")
    tf = transformers()
    # Eager attention: plain MatMul/Softmax ops, which every exporter and ONNX quantizer handles.
    config = tf.BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                           num_attention_heads=heads, intermediate_size=intermediate,
                           max_position_embeddings=max_length, num_labels=classes, attn_implementation="eager")
    return SequenceClassifier(tf.BertForSequenceClassification(config))


def distilbert_classifier(classes: int = 2, vocab_size: int = 30522, dim: int = 768, layers: int = 6,
                          heads: int = 12, hidden_dim: int = 3072, max_position: int = 512) -> SequenceClassifier:
    """DistilBERT + classification head; the defaults are distilbert-base-uncased's architecture."""
    tf = transformers()
    config = tf.DistilBertConfig(vocab_size=vocab_size, dim=dim, n_layers=layers, n_heads=heads,
                                 hidden_dim=hidden_dim, max_position_embeddings=max_position, num_labels=classes,
                                 attn_implementation="eager")
    return SequenceClassifier(tf.DistilBertForSequenceClassification(config))


def text_spec(max_length: int, vocab_size: int, classes: int) -> ModelSpec:
    """Spec of a text classifier: token ids and mask (batch, max_length) -> logits (batch, classes).

    The length is fixed (the tokenizer pads to it), so exports, quantization and batching see one shape.
    """
    return ModelSpec(
        inputs=(TensorSpec("input_ids", "int64", ("batch", max_length), value_range=(0, vocab_size)),
                TensorSpec("attention_mask", "int64", ("batch", max_length), value_range=(1, 2))),
        outputs=(TensorSpec("logits", "float32", ("batch", classes)),),
    )


def build_wordpiece_vocab(texts: Iterable[str], directory: str | Path, vocab_size: int = 2000,
                          lowercase: bool = True) -> Path:
    """Train a WordPiece vocabulary on ``texts`` and write ``directory/vocab.txt`` (one token per line).

    Every ASCII letter, digit and punctuation mark is in the alphabet, so any word splits into known
    pieces instead of becoming [UNK].
    """
    tokenizers = require("tokenizers", "text")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    trainer = tokenizers.BertWordPieceTokenizer(lowercase=lowercase)
    alphabet = list(string.ascii_lowercase + string.digits + string.punctuation)
    if not lowercase:
        alphabet += list(string.ascii_uppercase)
    trainer.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=1, show_progress=False,
                                special_tokens=list(SPECIAL_TOKENS), initial_alphabet=alphabet)
    trainer.save_model(str(directory))
    return directory / "vocab.txt"


def read_vocab(path: str | Path) -> list[str]:
    """Tokens of a WordPiece vocab.txt, in id order."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"vocabulary file {path} does not exist; build one with build_wordpiece_vocab(...)")
    tokens = path.read_text(encoding="utf-8").splitlines()
    missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if t not in tokens]
    if missing:
        raise ConfigError(f"{path} lacks the special tokens {missing}; it is not a BERT WordPiece vocabulary")
    return tokens
