"""Input/output specification of a model: names, dtypes, shapes with named dynamic dims, tolerance.

A dim is either an int (fixed) or a str (named dynamic dim, e.g. ``"batch"``). The same names drive
ONNX dynamic axes, example inputs and validation of what a Runner is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from laser.errors import ConfigError, InputError

Dim = int | str
EXAMPLE_DIM_SIZE = 16  # size of a named dim other than the batch (e.g. a sequence) in example inputs

DTYPES = {
    "float32": np.float32,
    "float16": np.float16,
    "float64": np.float64,
    "int64": np.int64,
    "int32": np.int32,
    "int8": np.int8,
    "uint8": np.uint8,
    "uint32": np.uint32,
    "bool": np.bool_,
    "string": np.object_,  # an object array of bytes (UTF-8 text): the BYTES datatype when served
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str = "float32"
    shape: tuple[Dim, ...] = ("batch",)
    # For integer inputs (token ids, masks): example values are drawn from [low, high).
    value_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"tensor name must be a non-empty string, got {self.name!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r} for {self.name!r}; use one of {sorted(DTYPES)}")
        object.__setattr__(self, "shape", tuple(self.shape))
        for d in self.shape:
            if not (isinstance(d, str) and d) and not (isinstance(d, int) and d >= 0):
                raise ConfigError(f"dim {d!r} of {self.name!r} must be an int >= 0 or a dim name like 'batch'")
        if self.value_range is not None:
            object.__setattr__(self, "value_range", tuple(self.value_range))

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(DTYPES[self.dtype])

    @property
    def dynamic_dims(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def concrete_shape(self, dims: Mapping[str, int] | None = None, batch: int = 1) -> tuple[int, ...]:
        dims = {"batch": batch, **(dims or {})}
        out = []
        for d in self.shape:
            if isinstance(d, int):
                out.append(d)
            elif d in dims:
                out.append(int(dims[d]))
            else:
                raise ConfigError(f"no size given for dynamic dim {d!r} of {self.name!r}; pass dims={{{d!r}: N}}")
        return tuple(out)

    def check(self, array: np.ndarray) -> None:
        """Raise InputError if ``array`` does not fit this spec (dtype and every fixed dim)."""
        if not isinstance(array, np.ndarray):
            raise InputError(f"input {self.name!r} must be a numpy array, got {type(array).__name__}")
        if array.dtype != self.np_dtype:
            raise InputError(
                f"input {self.name!r} has dtype {array.dtype}, expected {self.dtype}; "
                f"convert it with array.astype(np.{self.dtype})"
            )
        if array.ndim != len(self.shape):
            raise InputError(
                f"input {self.name!r} has shape {list(array.shape)} ({array.ndim} dims), expected "
                f"{self.describe()} ({len(self.shape)} dims)"
            )
        for i, (got, want) in enumerate(zip(array.shape, self.shape)):
            if isinstance(want, int) and got != want:
                raise InputError(
                    f"input {self.name!r} has shape {list(array.shape)}, expected {self.describe()} "
                    f"(dim {i} must be {want}, got {got})"
                )

    def describe(self) -> str:
        return "[" + ", ".join(str(d) for d in self.shape) + "]"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        if self.value_range is None:
            d.pop("value_range")
        else:
            d["value_range"] = list(self.value_range)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorSpec:
        vr = d.get("value_range")
        return cls(name=d["name"], dtype=d.get("dtype", "float32"), shape=tuple(d["shape"]),
                   value_range=tuple(vr) if vr is not None else None)


@dataclass(frozen=True)
class Tolerance:
    """How close an export must stay to its parent: |a - b| <= atol + rtol * |b| element-wise."""

    atol: float = 1e-4
    rtol: float = 1e-3
    # For classifiers: minimum fraction of samples whose top-1 class must agree.
    top1_agreement: float = 0.99

    def __post_init__(self) -> None:
        if self.atol < 0 or self.rtol < 0 or not 0 <= self.top1_agreement <= 1:
            raise ConfigError(f"tolerance must be non-negative with top1_agreement in [0, 1], got {self}")


@dataclass(frozen=True)
class ModelSpec:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    tolerance: Tolerance = field(default_factory=Tolerance)
    # Set when the program was exported at a fixed batch (an ExecuTorch .pte: 1): dim 0 of every tensor is that
    # batch, so callers feed exactly that many samples per call, serve admits no more, and timings at other
    # batch sizes are skipped (and said so), never attempted. None: the batch dim is dynamic, or there is none.
    fixed_batch: int | None = None
    # sizes of named dims in example inputs (timing, MACs), e.g. (("width", 320),) for a text-line recogniser
    # whose width is dynamic but whose real inputs are 320 wide; a named dim not listed gets EXAMPLE_DIM_SIZE
    example_dims: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "example_dims", tuple((str(k), int(v)) for k, v in dict(self.example_dims).items()))
        if self.fixed_batch is not None and (not isinstance(self.fixed_batch, int) or self.fixed_batch < 1):
            raise ConfigError(f"fixed_batch must be an int >= 1 or None, got {self.fixed_batch!r}")
        object.__setattr__(self, "outputs", tuple(self.outputs))
        if not self.inputs:
            raise ConfigError("a model spec needs at least one input")
        names = [t.name for t in (*self.inputs, *self.outputs)]
        if len(set(names)) != len(names):
            raise ConfigError(f"tensor names must be unique across inputs and outputs, got {names}")

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    @property
    def named_dims(self) -> list[str]:
        """Names of the inputs' dynamic dims other than the batch (a sequence length ...), in order."""
        return list(dict.fromkeys(d for t in self.inputs for d in t.dynamic_dims.values() if d != "batch"))

    def example_inputs(self, batch: int = 2, seed: int = 0, dims: Mapping[str, int] | None = None,
                       ) -> dict[str, np.ndarray]:
        """Random inputs that fit the spec: N(0, 1) floats, integers drawn from value_range (for strings
        with a value_range: those integers as decimal text). Named
        dims other than the batch take their size from ``dims``, else the spec's ``example_dims``, else
        EXAMPLE_DIM_SIZE."""
        rng = np.random.default_rng(seed)
        dims = {**dict.fromkeys(self.named_dims, EXAMPLE_DIM_SIZE), **dict(self.example_dims), **(dims or {})}
        out = {}
        for t in self.inputs:
            shape = t.concrete_shape(dims, batch=batch)
            if t.np_dtype.kind == "f":
                arr = rng.standard_normal(shape).astype(t.np_dtype)
            elif t.np_dtype.kind == "b":
                arr = np.ones(shape, dtype=bool)
            elif t.np_dtype.kind == "O" and t.value_range is not None:  # text holding integers (e.g. "42")
                low, high = t.value_range
                ints = rng.integers(int(low), int(high), size=shape)
                arr = np.array([str(int(v)).encode() for v in ints.ravel()], dtype=object).reshape(shape)
            elif t.np_dtype.kind == "O":
                arr = np.array([f"example {i}".encode() for i in range(int(np.prod(shape)))] or [b""],
                               dtype=object)[:int(np.prod(shape))].reshape(shape)
            else:
                low, high = t.value_range or (0, 2)
                arr = rng.integers(int(low), int(high), size=shape).astype(t.np_dtype)
            out[t.name] = np.ascontiguousarray(arr)
        return out

    def check_inputs(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Validate names, dtypes and shapes, and that shared dim names agree across inputs."""
        missing = [n for n in self.input_names if n not in inputs]
        extra = [n for n in inputs if n not in self.input_names]
        if missing or extra:
            raise InputError(
                f"inputs {sorted(inputs)} do not match the model's inputs {self.input_names}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unexpected {extra}" if extra else "")
            )
        seen: dict[str, tuple[str, int]] = {}
        for t in self.inputs:
            arr = inputs[t.name]
            t.check(arr)
            for i, dim in t.dynamic_dims.items():
                size = arr.shape[i]
                if dim in seen and seen[dim][1] != size:
                    raise InputError(
                        f"dim {dim!r} is {seen[dim][1]} in {seen[dim][0]!r} but {size} in {t.name!r}; "
                        "inputs sharing a dim name must agree"
                    )
                seen[dim] = (t.name, size)

    def batch_step(self, wanted: int) -> int:
        """Samples per call when ``wanted`` are asked for: ``wanted``, or the fixed batch of the program."""
        return self.fixed_batch or wanted

    def accepts_batch(self, batch: int) -> bool:
        """Whether one call may hold ``batch`` samples (always, unless the program has a fixed batch)."""
        return self.fixed_batch is None or batch == self.fixed_batch

    def batch_note(self, skipped: Any) -> str:
        """Why the batch sizes ``skipped`` are not timed (for reports)."""
        sizes = ", ".join(str(b) for b in skipped)
        return (f"batch size(s) {sizes} not timed: the program takes batch {self.fixed_batch} only (exported at a "
                "fixed batch)")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "tolerance": asdict(self.tolerance),
            **({"example_dims": dict(self.example_dims)} if self.example_dims else {}),
        }
        if self.fixed_batch is not None:  # written only when set: other specs serialise as they did
            d["fixed_batch"] = self.fixed_batch
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        return cls(
            inputs=tuple(TensorSpec.from_dict(t) for t in d["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t) for t in d["outputs"]),
            tolerance=Tolerance(**d.get("tolerance", {})),
            fixed_batch=d.get("fixed_batch"),
            example_dims=tuple(dict(d.get("example_dims", {})).items()),
        )


def image_spec(channels: int, height: int, width: int, classes: int) -> ModelSpec:
    """Spec of an image classifier: input (batch, C, H, W) float32, output (batch, classes) logits."""
    return ModelSpec(
        inputs=(TensorSpec("input", "float32", ("batch", channels, height, width)),),
        outputs=(TensorSpec("logits", "float32", ("batch", classes)),),
    )
