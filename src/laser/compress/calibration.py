"""Calibration data for static quantization, and the calibration pass over it.

A calibration source becomes a bounded list of model feeds (``{input name: array}``, batches whose
rows add up to at most ``samples``), checked against the model's spec before anything runs:

- a dataset name (``"digits"``): its *train* split (calibrating on the test split would leak it);
- ``"random"``: N(0, 1) inputs generated from the spec, for latency work on random-weight models only;
- a ``laser.data.Dataset``;
- a folder of images (preprocessed as the artifact's preprocessing says) or of ``.npy``/``.npz`` files;
- a list of ``.npy``/``.npz`` paths;
- any iterable of input dicts (each a batch, or one sample without its batch dim).

``calibrate`` runs ONNX Runtime's calibrator (MinMax, Entropy or Percentile) over the feeds in small
chunks, with a progress bar, and writes the tensor ranges to a JSON cache that ``quantize_static``
reads back: the accuracy-aware loop re-quantizes many times from one calibration pass.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from laser.data import Dataset
from laser.errors import ConfigError, InputError, NotFoundError
from laser.preprocess import read_arrays
from laser.spec import ModelSpec

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
ARRAY_SUFFIXES = (".npy", ".npz")
MAX_BATCH = 16  # rows per calibration run: large enough to amortise session overhead, small in memory
CHUNK = 8  # batches per calibrator.collect_data call: histogram calibrators hold every output until then


@dataclass(frozen=True)
class CalibrationSet:
    """Feeds ready for the calibrator. ``source`` says where they came from (recorded in lineage)."""

    feeds: tuple[dict[str, np.ndarray], ...]
    source: str
    samples: int

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "samples": self.samples, "batches": len(self.feeds)}


def calibration_set(source: Any, spec: ModelSpec, preprocessing: Mapping[str, Any] | None = None,
                    samples: int = 256, seed: int = 0) -> CalibrationSet:
    """At most ``samples`` rows from ``source`` as batched feeds that fit ``spec`` (see module doc)."""
    if samples < 1:
        raise ConfigError(f"calibration samples must be >= 1, got {samples}")
    chunks, what = _chunks(source, spec, preprocessing or {}, samples, seed)
    batch = _batch_size(spec)
    feeds: list[dict[str, np.ndarray]] = []
    pending: dict[str, list[np.ndarray]] = {n: [] for n in spec.input_names}
    taken = 0
    for i, chunk in enumerate(itertools.islice(chunks, samples)):  # every chunk holds >= 1 row
        chunk = _with_batch_dim(chunk, spec, f"{what}, item {i}")
        try:
            spec.check_inputs(chunk)
        except InputError as exc:
            raise InputError(f"calibration data {what}, item {i}: {exc}") from exc
        rows = min(len(next(iter(chunk.values()))), samples - taken)
        for name in spec.input_names:
            pending[name].append(chunk[name][:rows])
        taken += rows
        feeds += _drain(pending, batch, final=False)
        if taken >= samples:
            break
    feeds += _drain(pending, batch, final=True)
    if not feeds:
        raise ConfigError(f"calibration set {what} is empty; give a dataset name (e.g. 'digits'), a folder of "
                          "images or .npy files, or an iterable of input dicts with at least one sample")
    return CalibrationSet(tuple(feeds), what, taken)


def _batch_size(spec: ModelSpec) -> int:
    dims = [t.shape[0] for t in spec.inputs if t.shape]
    if dims and all(isinstance(d, int) for d in dims):
        return int(dims[0])  # a fixed batch dim: feed exactly that many rows
    return MAX_BATCH


def _drain(pending: dict[str, list[np.ndarray]], batch: int, final: bool) -> list[dict[str, np.ndarray]]:
    """Cut the rows gathered so far into feeds of ``batch`` rows (the remainder too when ``final``)."""
    first = next(iter(pending))
    have = sum(len(a) for a in pending[first])
    if have == 0 or (have < batch and not final):
        return []
    joined = {n: np.concatenate(parts) for n, parts in pending.items()}
    cut = have if final else have - have % batch
    out = [{n: np.ascontiguousarray(a[i:i + batch]) for n, a in joined.items()} for i in range(0, cut, batch)]
    for n, a in joined.items():
        pending[n] = [a[cut:]] if cut < have else []
    return out


def _with_batch_dim(chunk: Any, spec: ModelSpec, where: str) -> dict[str, np.ndarray]:
    if not isinstance(chunk, Mapping):
        raise InputError(f"calibration data {where} is a {type(chunk).__name__}; each item must be a dict "
                         f"{{input name: numpy array}} with names {spec.input_names}")
    out = {}
    for t in spec.inputs:
        if t.name not in chunk:
            raise InputError(f"calibration data {where} has inputs {sorted(chunk)}, the model takes "
                             f"{spec.input_names}")
        arr = np.asarray(chunk[t.name])
        if arr.ndim == len(t.shape) - 1:  # one sample without its batch dim
            arr = arr[None]
        out[t.name] = arr
    return out


def _chunks(source: Any, spec: ModelSpec, pre: Mapping[str, Any], samples: int,
            seed: int) -> tuple[Iterator[dict[str, np.ndarray]], str]:
    names = spec.input_names
    if isinstance(source, Dataset):
        return _from_dataset(source, names), f"dataset {source.name!r}"
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        path = Path(text)
        if path.is_dir():
            return _from_folder(path, spec, pre), f"folder {path}"
        if path.suffix in ARRAY_SUFFIXES:
            return _from_arrays([path], names), f"file {path}"
        if text == "random":
            rows = max(1, min(samples, MAX_BATCH))
            gen = (spec.example_inputs(batch=rows, seed=seed + i) for i in itertools.count())
            return gen, "random (N(0, 1) from the spec; only for latency work)"
        from laser import data

        if text in data.LOADERS:
            return _from_dataset(data.load(text, "train"), names), f"{text}/train"
        raise NotFoundError(f"calibration source {text!r} is neither a dataset ({sorted(data.LOADERS)}), "
                            "'random', a folder, nor a .npy/.npz file")
    if isinstance(source, Mapping):
        return iter([dict(source)]), "one input dict"
    if isinstance(source, Sequence) and source and all(isinstance(s, (str, os.PathLike)) for s in source):
        return _from_arrays([Path(s) for s in source], names), f"{len(source)} array files"
    if isinstance(source, Iterable):
        return iter(source), f"iterable {type(source).__name__}"
    raise ConfigError(f"cannot calibrate from a {type(source).__name__}; give a dataset name, a Dataset, a "
                      "folder, .npy paths or an iterable of input dicts")


def check_source(source: Any) -> None:
    """Refuse a calibration path that cannot work before any model is loaded or exported: a missing path,
    or a file that is not .npy/.npz (a single image, a text file)."""
    if not isinstance(source, (str, os.PathLike)):
        return
    text = os.fspath(source)
    path = Path(text)
    if path.is_dir() or text == "random":
        return
    if path.is_file() and path.suffix.lower() not in ARRAY_SUFFIXES:
        kind = "one image" if path.suffix.lower() in IMAGE_SUFFIXES else f"a {path.suffix or 'suffix-less'} file"
        raise ConfigError(f"calibration={text!r} is {kind}; calibrate on a folder of images, .npy/.npz files, "
                          "a dataset name such as 'digits', or 'random' (latency work only)")
    if not path.exists() and (path.suffix.lower() in ARRAY_SUFFIXES or "/" in text or os.sep in text):
        raise NotFoundError(f"calibration={text!r} does not exist; give a folder, .npy/.npz files, a dataset "
                            "name such as 'digits', or 'random'")


def _from_dataset(ds: Dataset, names: Sequence[str]) -> Iterator[dict[str, np.ndarray]]:
    for feeds, _ in ds.batches(list(names), MAX_BATCH):
        yield feeds


def _from_folder(folder: Path, spec: ModelSpec, pre: Mapping[str, Any]) -> Iterator[dict[str, np.ndarray]]:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    arrays = [p for p in files if p.suffix.lower() in ARRAY_SUFFIXES]
    if arrays:
        return _from_arrays(arrays, spec.input_names)
    if images:
        if pre.get("type") != "image":
            raise ConfigError(f"{folder} holds images, but this model records no image preprocessing "
                              f"(preprocessing={dict(pre)}); give .npy files already preprocessed instead")
        if len(spec.inputs) != 1:
            raise ConfigError(f"images can feed single-input models only; this one takes {spec.input_names}")
        from laser.preprocess import image_to_array

        return ({spec.input_names[0]: image_to_array(p, pre)} for p in images)
    return iter(())


def _from_arrays(paths: Sequence[Path], names: Sequence[str]) -> Iterator[dict[str, np.ndarray]]:
    for p in paths:
        if not p.is_file():
            raise NotFoundError(f"calibration file {p} does not exist")
        arrays = read_arrays(p)
        if p.suffix == ".npz":
            yield {names[0]: next(iter(arrays.values()))} if len(names) == 1 and len(arrays) == 1 else arrays
        else:
            if len(names) != 1:
                raise ConfigError(f"{p} is one .npy array, but the model takes inputs {list(names)}; "
                                  "use .npz files with one array per input name")
            yield {names[0]: arrays[""]}


def calibrate(model: Path, calib: CalibrationSet, method: str, cache: Path, progress: bool = True) -> Path:
    """Run ONNX Runtime's calibrator on ``model`` over ``calib`` and write the ranges to ``cache``."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator, save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    from tqdm.auto import tqdm

    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"unknown calibration method {method!r}; use one of {CALIBRATION_METHODS}")
    kind = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]
    op_types = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))  # what quantize_static calibrates
    bar = tqdm(total=calib.samples, desc=f"calibrate ({method})", unit="sample", disable=not progress)
    # ORT's histogram calibrators print to stdout; keep stdout clean for --json.
    with contextlib.redirect_stdout(sys.stderr):
        calibrator = create_calibrator(model, op_types, augmented_model_path=str(cache.with_suffix(".aug.onnx")),
                                       calibrate_method=kind)
        for start in range(0, len(calib.feeds), CHUNK):
            part = calib.feeds[start:start + CHUNK]
            calibrator.collect_data(_Reader(part))
            bar.update(sum(len(next(iter(f.values()))) for f in part))
        ranges = calibrator.compute_data()
    bar.close()
    save_tensors_data(ranges, cache)
    cache.with_suffix(".aug.onnx").unlink(missing_ok=True)
    return cache


class _Reader:
    """The ``get_next`` protocol ONNX Runtime's calibrators pull feeds through."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]):
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)
