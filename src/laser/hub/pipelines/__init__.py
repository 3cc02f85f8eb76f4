"""Task pipelines: input (image file/bytes, or text) -> preprocessing -> any artifact through
``laser.run`` -> postprocessing -> a JSON-ready answer. One object serves the CLI, Python and the server::

    pipe = laser.pipeline("classification", model="resnet18")   # or an Artifact / bundle / .onnx
    pipe.run("cat.jpg")              # {"task": "classification", "label": ..., "score": ..., "top_k": [...]}
    pipeline_for(artifact).run(raw_bytes)                         # what the server's task endpoints call

Preprocessing comes from the artifact's ``preprocessing`` dict, so an exported (ONNX, INT8) artifact runs
through the same pipeline as its torch parent. ``run(..., output=DIR)`` also writes the pictures
(segmentation mask + overlay, detection drawing) and the JSON answer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from laser.artifact import Artifact
from laser.errors import ConfigError
from laser.runtime import run as make_runner

# Model used by laser.pipeline(task) when no model is named.
DEFAULT_MODELS = {
    "classification": "resnet18",
    "segmentation": "lraspp_mobilenet_v3_large",
    "detection": "ssdlite320_mobilenet_v3_large",
    "text-classification": "distilbert-sst2",
    "face-detection": "mtcnn-pnet",  # MTCNN: P-Net, then the R-Net and O-Net its card names
}


class Pipeline:
    """Base: holds the artifact and what computes its outputs. Subclasses implement ``run``.

    ``runner``: anything that maps input arrays to output arrays by name: by default a Runner on
    ``backend``; e.g. ``lambda feeds: client.infer(name, feeds)`` to run the model on a laser server
    while pre- and post-processing stay here.
    """

    task: ClassVar[str] = ""

    def __init__(self, artifact: Artifact, backend: str = "auto",
                 runner: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]] | None = None,
                 **runner_options: Any):
        if artifact.task != self.task:
            raise ConfigError(f"{artifact.name!r} is a {artifact.task!r} model, not {self.task!r}; "
                              f"use laser.pipeline({artifact.task!r}, model=...) or pipeline_for(artifact)")
        self.artifact = artifact
        self.runner = runner if runner is not None else make_runner(artifact, backend=backend, **runner_options)

    def run(self, source: Any, *args: Any, **options: Any) -> dict[str, Any]:
        """The answer for one input (picture file/bytes, or text), JSON-ready; ``options`` are those of
        ``postprocess`` (e.g. ``top_k``, ``output``). Pipelines of one model call are pre -> model -> post."""
        context, feeds = self.preprocess(source)
        return self.postprocess(context, self.infer(feeds), *args, **options)

    def preprocess(self, source: Any) -> tuple[Any, dict[str, np.ndarray]]:
        """(what post-processing needs to know of the input, the model's input arrays)."""
        raise NotImplementedError(f"{type(self).__name__} has no single pre-processing step")

    def postprocess(self, context: Any, outputs: Mapping[str, np.ndarray], *args: Any,
                    **options: Any) -> dict[str, Any]:
        """The JSON-ready answer from the model's outputs (and ``context`` from ``preprocess``)."""
        raise NotImplementedError(f"{type(self).__name__} has no single post-processing step")

    @property
    def staged(self) -> bool:
        """One model call between ``preprocess`` and ``postprocess`` (the server then runs that call through
        the model's batcher, with no thread waiting on it); pipelines of several calls override ``run``."""
        return type(self).preprocess is not Pipeline.preprocess

    __call__ = run

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(self.runner(feeds))

    @property
    def backend(self) -> str:
        return getattr(self.runner, "backend", "remote")

    def header(self) -> dict[str, Any]:
        return {"task": self.task, "model": self.artifact.name, "format": self.artifact.format,
                "backend": self.backend, "random_weights": self.artifact.random_weights}

    def close(self) -> None:
        close = getattr(self.runner, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.artifact.name!r}, backend={self.backend!r})"


def output_stem(source: Any) -> str:
    """File stem for written results: the input file's stem, else 'result'."""
    if isinstance(source, (str, os.PathLike)) and Path(source).is_file():
        return Path(source).stem
    return "result"


def write_json(result: Mapping[str, Any], directory: Path, stem: str) -> Path:
    path = directory / f"{stem}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def pipeline_class(task: str) -> type[Pipeline]:
    from laser.hub.pipelines.faces import FaceDetectionPipeline
    from laser.hub.pipelines.image import ClassificationPipeline, DetectionPipeline, SegmentationPipeline
    from laser.hub.pipelines.ocr import DirectionPipeline, RecognitionPipeline, TextDetectionPipeline
    from laser.hub.pipelines.text import TextClassificationPipeline
    from laser.hub.pipelines.vad import VADPipeline

    classes: dict[str, type[Pipeline]] = {
        "classification": ClassificationPipeline,
        "segmentation": SegmentationPipeline,
        "detection": DetectionPipeline,
        "text-classification": TextClassificationPipeline,
        "ocr-detection": TextDetectionPipeline,
        "ocr-direction": DirectionPipeline,
        "ocr-recognition": RecognitionPipeline,
        "vad": VADPipeline,
        "face-detection": FaceDetectionPipeline,
    }
    if task in ("face-refine", "face-landmarks"):  # MTCNN's R-Net / O-Net: stages, not detectors on their own
        raise ConfigError(f"{task!r} models are stages of MTCNN's cascade; run the whole detector: `laser hub run "
                          "mtcnn` (Python: laser.pipeline('face-detection', rnet=..., onet=...))")
    if task not in classes:
        raise ConfigError(f"no pipeline for task {task!r}; pipelines exist for {sorted(classes)}")
    return classes[task]


def pipeline_for(artifact: Artifact, backend: str = "auto", **options: Any) -> Pipeline:
    """The pipeline of the artifact's own task (``options``: ``runner=`` or Runner options)."""
    return pipeline_class(artifact.task)(artifact, backend=backend, **options)


def pipeline(task: str, model: str | os.PathLike[str] | Artifact | None = None, backend: str = "auto", *,
             weights: str | os.PathLike[str] | None = None, random_weights: bool = False,
             **runner_options: Any) -> Pipeline:
    """A ready pipeline for ``task``: ``model`` is a catalog name, bundle, .onnx file or an Artifact
    (default: the task's catalog model, see DEFAULT_MODELS)."""
    cls = pipeline_class(task)
    if model is None:
        model = DEFAULT_MODELS[task]
    if isinstance(model, Artifact):
        artifact = model
    else:
        from laser.loader import load

        artifact = load(model, weights=weights, random_weights=random_weights, task=task)
    return cls(artifact, backend=backend, **runner_options)


__all__ = ["DEFAULT_MODELS", "Pipeline", "pipeline", "pipeline_class", "pipeline_for"]
