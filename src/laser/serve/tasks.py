"""Task endpoints, ``POST /v2/models/{m}/{task}``: an answer for people who do not want tensors.

``classify``: image bytes -> top-k labels, with the artifact's own preprocessing and labels.
``pipeline``: the artifact's task pipeline from ``laser.hub.pipelines`` (classification, segmentation,
detection, text classification) when that package is present. Both run the model through the model's
batcher, so task requests are dynamically batched with tensor requests.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from laser.serve.errors import ServeError
from laser.serve.repository import ModelVersion

# Query parameters a pipeline's run() may take, with their types (anything else is ignored).
PIPELINE_OPTIONS: dict[str, type] = {"top_k": int, "score_threshold": float, "iou_threshold": float,
                                     "max_detections": int, "alpha": float}


@functools.cache
def _preprocess_pool() -> ThreadPoolExecutor:
    # Image decoding and resizing run beside the model: as many at once as there are cores, not more
    # (more threads only time-slice the same cores and starve the model and the event loop).
    from laser.runtime.base import default_threads

    return ThreadPoolExecutor(default_threads(), thread_name_prefix="laser-preprocess")


def deadline(timeout_us: int | None) -> float | None:
    """time.monotonic() by which a request with this timeout (µs) must be done; None: no timeout."""
    return time.monotonic() + timeout_us / 1e6 if timeout_us else None


def _timeout(params: Mapping[str, str]) -> float | None:
    value = params.get("timeout", "")
    return deadline(int(value)) if value.isdigit() else None


async def classify(mv: ModelVersion, payload: bytes, params: Mapping[str, str]) -> dict[str, Any]:
    """An image (PNG/JPEG bytes) -> top-k labels, with the artifact's preprocessing and labels."""
    from laser.preprocess import image_to_array, top_k

    pre = mv.artifact.preprocessing
    if pre.get("type") != "image" or len(mv.spec.inputs) != 1:
        raise ServeError(400, f"model {mv.name!r} has no image preprocessing in its manifest; send tensors to "
                              f"/v2/models/{mv.name}/infer instead")
    try:
        k = int(params.get("k", 5))
    except ValueError:
        k = 0
    if not 1 <= k <= 1000:
        raise ServeError(400, f"k must be an integer in [1, 1000], got {params.get('k')!r}")
    if not payload:
        raise ServeError(400, "no image in the request; POST the image bytes or a multipart 'file' field")
    # Decoding and resizing cost milliseconds of CPU: keep them off the event loop.
    x = await asyncio.get_running_loop().run_in_executor(_preprocess_pool(), image_to_array, payload, pre)
    spec = mv.spec.inputs[0]
    feeds = {spec.name: x.astype(spec.np_dtype, copy=False)}
    mv.spec.check_inputs(feeds)
    out = await mv.batcher.submit(feeds, 1, _timeout(params))
    logits = out[mv.spec.output_names[0]]
    return {"predictions": top_k(logits, mv.artifact.labels, k)[0]}


class _BatchedRunner:
    """Stands in for a pipeline's Runner: each call goes through the model's batcher on the loop."""

    def __init__(self, mv: ModelVersion, loop: asyncio.AbstractEventLoop):
        self.mv, self.loop, self.backend = mv, loop, mv.backend

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.mv.spec.check_inputs(feeds)
        n = int(next(iter(feeds.values())).shape[0]) if self.mv.batchable else 1
        return asyncio.run_coroutine_threadsafe(self.mv.batcher.submit(dict(feeds), n), self.loop).result()

    def close(self) -> None:
        """The batcher and the real runner belong to the model version."""


async def pipeline(mv: ModelVersion, payload: bytes, params: Mapping[str, str]) -> dict[str, Any]:
    """The artifact's own task pipeline (laser.hub.pipelines), with its pre- and post-processing."""
    try:
        from laser.hub.pipelines import pipeline_for
    except ImportError:
        raise ServeError(404, "task pipelines (laser.hub.pipelines) are not available here; use /classify") from None
    pipe = getattr(mv, "pipeline", None)
    if pipe is None:
        # The echo backend builds nothing heavy; the real runner is the model version's, via its batcher.
        pipe = pipeline_for(mv.artifact, backend="echo")
        # A model served behind its own tokenizer batches TEXT; the pipeline calls the model on its tokens.
        inner = getattr(mv.runner, "inner", None)
        pipe.runner = inner if inner is not None else _BatchedRunner(mv, asyncio.get_running_loop())
        mv.pipeline = pipe
    accepted = inspect.signature(pipe.postprocess if pipe.staged else pipe.run).parameters
    options = {}
    for key, kind in PIPELINE_OPTIONS.items():
        if key in params and key in accepted:
            try:
                options[key] = kind(params[key])
            except ValueError:
                raise ServeError(400, f"{key} must be a {kind.__name__}, got {params[key][:20]!r}") from None
    if not payload:
        raise ServeError(400, "empty request body; POST the image (or the text) to run the pipeline on")
    source: Any = payload.decode("utf-8", errors="replace") if mv.artifact.task.startswith("text") else payload
    # pre (a pool thread) -> the model's batcher (on the loop) -> post (a pool thread)
    if pipe.staged and isinstance(pipe.runner, _BatchedRunner):
        loop = asyncio.get_running_loop()
        context, feeds = await loop.run_in_executor(_preprocess_pool(), pipe.preprocess, source)
        mv.spec.check_inputs(feeds)
        n = int(next(iter(feeds.values())).shape[0]) if mv.batchable else 1
        outputs = await mv.batcher.submit(feeds, n, _timeout(params))
        post = functools.partial(pipe.postprocess, context, outputs, **options)
        return await loop.run_in_executor(_preprocess_pool(), post)
    # A pipeline of several model calls: its thread waits for each batch. Not the preprocessing pool, which
    # must stay free to decode the other requests that would join that batch.
    run: Callable[..., dict[str, Any]] = functools.partial(pipe.run, source, **options)
    return await asyncio.to_thread(run)


# Task name -> coroutine(model version, request body, query parameters) -> JSON-able dict.
TASKS: dict[str, Callable[[ModelVersion, bytes, Mapping[str, str]], Awaitable[dict[str, Any]]]] = {
    "classify": classify,
    "pipeline": pipeline,
}
