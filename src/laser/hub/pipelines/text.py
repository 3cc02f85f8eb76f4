"""Text classification: WordPiece tokenizer (transformers, vocabulary from the manifest) -> label + score.

The artifact's preprocessing carries the vocabulary itself (``"vocab": [tokens in id order]``), so an
exported or quantized artifact keeps it (derived artifacts copy preprocessing, not extra files). The
tokenizer is built from a local vocabulary folder written once per process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from laser.errors import ConfigError, InputError
from laser.hub.pipelines import Pipeline, write_json
from laser.preprocess import top_k as topk_labels
from laser.runtime.base import Runner
from laser.spec import ModelSpec, TensorSpec

MAX_TEXT_BYTES = 100_000  # longer inputs are refused (they would be truncated to max_length tokens anyway)


def tokenizer(pre: dict[str, Any]) -> Any:
    """A transformers BERT tokenizer for a text preprocessing dict (its "vocab" written to a local folder)."""
    from laser.artifact import workspace
    from laser.models.text import transformers

    vocab = pre.get("vocab")
    if not vocab:
        raise ConfigError("this text model's preprocessing has no 'vocab' (tokens in id order); load it with "
                          "laser.hub.load(name) or add the vocabulary when creating the artifact")
    text = "\n".join(vocab) + "\n"
    key = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    if key not in _TOKENIZERS:
        folder = workspace(f"vocab-{key}")
        (folder / "vocab.txt").write_text(text, encoding="utf-8")
        _TOKENIZERS[key] = transformers().BertTokenizerFast.from_pretrained(
            str(folder), do_lower_case=bool(pre.get("lowercase", True)))
    return _TOKENIZERS[key]


_TOKENIZERS: dict[str, Any] = {}


def encode(pre: dict[str, Any], texts: Sequence[str], names: Sequence[str]) -> dict[str, np.ndarray]:
    """Token ids etc. as int64 (len(texts), max_length), padded/truncated to the model's fixed length."""
    length = int(pre.get("max_length", 128))
    enc = tokenizer(pre)(list(texts), padding="max_length", truncation=True, max_length=length, return_tensors="np")
    missing = [n for n in names if n not in enc]
    if missing:
        raise ConfigError(f"the tokenizer gives {sorted(enc)}, the model takes {list(names)}; {missing} missing")
    return {n: np.ascontiguousarray(enc[n], dtype=np.int64) for n in names}


def as_text(source: Any) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        try:
            source = bytes(source).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"text input is not valid UTF-8 ({exc}); send UTF-8 encoded text") from exc
    if not isinstance(source, str):
        raise InputError(f"a text pipeline takes a str or UTF-8 bytes, got {type(source).__name__}")
    if len(source.encode("utf-8")) > MAX_TEXT_BYTES:
        raise InputError(f"text input is {len(source)} characters; the limit is {MAX_TEXT_BYTES} bytes")
    if not source.strip():
        raise InputError("text input is empty; give the sentence or title to classify")
    return source


class TextClassificationPipeline(Pipeline):
    task = "text-classification"

    def __init__(self, artifact: Any, backend: str = "auto", **options: Any):
        super().__init__(artifact, backend, **options)
        if artifact.preprocessing.get("type") != "text":
            raise ConfigError(f"{artifact.name!r} records no text preprocessing (got "
                              f"{dict(artifact.preprocessing) or None}); expected {{'type': 'text', 'vocab': ...}}")
        tokenizer(artifact.preprocessing)  # fail now, not on the first request

    def preprocess(self, source: Any) -> tuple[list[str], dict[str, np.ndarray]]:
        """One text (str or UTF-8 bytes) -> (the text, the token arrays)."""
        texts = [as_text(source)]
        return texts, encode(self.artifact.preprocessing, texts, self.artifact.spec.input_names)

    def postprocess(self, context: list[str], outputs: Mapping[str, np.ndarray], top_k: int = 3,
                    output: str | Path | None = None) -> dict[str, Any]:
        """The label of one text; with ``output``, also write the answer as JSON there."""
        result = self._answers(context, outputs, top_k)[0]
        if output is not None:
            Path(output).mkdir(parents=True, exist_ok=True)
            result = {**result, "files": {"json": str(Path(output) / "result.json")}}
            write_json(result, Path(output), "result")
        return result

    def run_batch(self, sources: Sequence[Any], top_k: int = 3) -> list[dict[str, Any]]:
        """Classify several texts in one model call."""
        texts = [as_text(s) for s in sources]
        feeds = encode(self.artifact.preprocessing, texts, self.artifact.spec.input_names)
        return self._answers(texts, self.infer(feeds), top_k)

    def _answers(self, texts: Sequence[str], outputs: Mapping[str, np.ndarray], top_k: int) -> list[dict[str, Any]]:
        logits = next(iter(outputs.values()))
        out = []
        for text, best in zip(texts, topk_labels(logits, self.artifact.labels, top_k)):
            out.append({**self.header(), "text": text, "label": best[0]["label"], "score": best[0]["score"],
                        "top_k": best})
        return out


# -- served behind its tokenizer -----------------------------------------------------------------------
TEXT_INPUT, LABEL_OUTPUT, SCORE_OUTPUT = "TEXT", "LABEL", "SCORE"


def takes_text(artifact: Any) -> bool:
    """A text classifier whose manifest carries its tokenizer (vocabulary) and labels."""
    pre = artifact.preprocessing
    return (pre.get("type") == "text" and bool(pre.get("vocab")) and bool(artifact.labels)
            and len(artifact.spec.outputs) == 1)


class TextRunner(Runner):
    """A text classifier behind its own tokenizer: ``TEXT`` (UTF-8 strings, one a sample) in, ``LABEL``
    (the best class's name), ``SCORE`` (its softmax probability) and the model's logits out. The
    tokenizer comes from the artifact's manifest, so every artifact of the model (torch, ONNX, INT8)
    takes text; ``inner`` runs the model on the token ids."""

    def __init__(self, artifact: Any, inner: Runner):
        super().__init__(artifact, threads=inner.threads, device=inner.device)
        if not takes_text(artifact):
            raise ConfigError(f"{artifact.name!r} is not a text classifier with its vocabulary and labels in the "
                              "manifest; serve it on token ids")
        self.inner, self.backend = inner, inner.backend
        logits = artifact.spec.outputs[0]
        self.spec = ModelSpec(inputs=(TensorSpec(TEXT_INPUT, "string", ("batch", 1)),),
                              outputs=(TensorSpec(LABEL_OUTPUT, "string", ("batch", 1)),
                                       TensorSpec(SCORE_OUTPUT, "float32", ("batch", 1)), logits))

    def validate(self, inputs: Mapping[str, np.ndarray]) -> None:
        """One request's texts, before they join a batch: UTF-8, not empty, not over MAX_TEXT_BYTES."""
        for value in np.asarray(inputs[TEXT_INPUT]).ravel():
            as_text(value)

    def _run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [as_text(v) for v in np.asarray(inputs[TEXT_INPUT]).ravel()]
        feeds = encode(self.artifact.preprocessing, texts, self.artifact.spec.input_names)
        logits = np.asarray(self.inner(feeds)[self.artifact.spec.outputs[0].name])
        best = [b[0] for b in topk_labels(logits, self.artifact.labels, 1)]
        return {LABEL_OUTPUT: np.array([b["label"].encode() for b in best], dtype=object).reshape(-1, 1),
                SCORE_OUTPUT: np.array([b["score"] for b in best], dtype=np.float32).reshape(-1, 1),
                self.artifact.spec.outputs[0].name: logits}

    def describe(self) -> dict[str, object]:
        return {**self.inner.describe(), "tokenizer": "in the manifest (server-side)"}

    def close(self) -> None:
        self.inner.close()
