"""Open Inference Protocol tensors and requests: datatypes, the JSON + binary-data decoding, encoding.

Transport-neutral: HTTP and the socket protocol parse the same JSON header with the same checks, and
gRPC builds the same ``InferRequest`` from its protobuf message. No length, shape or datatype from the
wire is trusted before it is checked against the bytes actually received.
"""

from __future__ import annotations

import functools
import json
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from laser.errors import ConfigError
from laser.serve import schema
from laser.serve.errors import ServeError

# OIP datatype -> numpy dtype (little-endian on the wire). BYTES is handled apart; BF16 has no numpy type.
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
_BY_NUMPY = {dt.newbyteorder("=").str: name for name, dt in DATATYPES.items()} | {"|b1": "BOOL"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
VERSION = re.compile(r"^[1-9][0-9]{0,17}$")  # model versions: positive integers (directory names)


@functools.lru_cache(maxsize=256)
def datatype_of(dtype: np.dtype | str) -> str:
    """OIP datatype name of a numpy dtype (or of a spec dtype name such as 'float32' or 'string')."""
    from laser.spec import DTYPES as SPEC_DTYPES

    dt = np.dtype(SPEC_DTYPES[dtype]) if isinstance(dtype, str) and dtype in SPEC_DTYPES else np.dtype(dtype)
    if dt.kind in "SOU":
        return "BYTES"
    try:
        return _BY_NUMPY[dt.newbyteorder("=").str]
    except KeyError:
        raise ConfigError(f"dtype {dt} has no Open Inference Protocol datatype") from None


def check_name(kind: str, value: Any) -> str:
    """A model name or version from a URL or message: letters, digits, '_', '.', '-'; never '..' or '/'."""
    if not isinstance(value, str) or not NAME.match(value) or ".." in value:
        shown = repr(value)[:80]
        raise ServeError(400, f"invalid {kind} {shown}: use letters, digits, '_', '.' or '-' (no '/' or '..'), "
                              "at most 128 characters")
    return value


def model_version(name: Any, version: Any = "") -> tuple[str, str]:
    """(model, version) named by a request, checked the same way on every transport ("" = the latest)."""
    check_name("model name", name)
    version = version or ""
    if not isinstance(version, str) or (version and not VERSION.match(version)):
        raise ServeError(400, f"invalid model version {str(version)[:20]!r}; versions are positive integers")
    return name, version


def bearer_ok(authorization: bytes, token: bytes) -> bool:
    """Whether an ``Authorization`` header value carries ``Bearer <token>`` (constant-time compare)."""
    import hmac

    scheme, _, given = authorization.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token)


@dataclass(frozen=True)
class Limits:
    """Request limits, checked before anything is allocated for the request."""

    max_body_bytes: int = 64 << 20  # HTTP body (also after decompression), socket frame, gRPC message
    max_json_depth: int = 32
    max_inputs: int = 32
    max_rank: int = 8

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_json_depth", "max_inputs", "max_rank"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"Limits.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class ShmRef:
    """Where a tensor lives in a registered system shared-memory region."""

    region: str
    offset: int
    byte_size: int


@dataclass(frozen=True)
class SequenceFlags:
    """A request's place in a sequence (stateful models): correlation id, start and end flags."""

    id: int | str
    start: bool
    end: bool


@dataclass
class InputTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes | memoryview | None = None  # little-endian, row-major
    data: Any = None  # JSON data (nested or flat) or a typed array (gRPC contents)
    shm: ShmRef | None = None  # the raw data lives in a shared-memory region


@dataclass
class RequestedOutput:
    name: str
    binary: bool | None = None  # None: the request-level default
    classification: int = 0  # > 0: top-k "score:index:label" strings instead of the tensor
    shm: ShmRef | None = None  # write the output into a shared-memory region instead of the response


@dataclass
class InferRequest:
    model: str
    inputs: list[InputTensor]
    version: str = ""
    id: str = ""
    outputs: list[RequestedOutput] | None = None
    timeout_us: int | None = None
    binary_output: bool = False
    sequence: SequenceFlags | None = None
    empty_final: bool = False  # streamed: end a decoupled model's answers with an empty final one


@dataclass
class OutputTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    array: np.ndarray
    binary: bool = False
    shm: ShmRef | None = None  # written into this shared-memory window (byte_size: the bytes written)


@dataclass
class InferResponse:
    model: str
    version: str
    outputs: list[OutputTensor]
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


# -- JSON -----------------------------------------------------------------------------------------
def parse_json(data: bytes | memoryview, limits: Limits) -> Any:
    """Parse a JSON document, refusing nesting deeper than ``limits.max_json_depth`` with 413."""
    data = bytes(data)
    if data.count(b"[") + data.count(b"{") > limits.max_json_depth:
        # Upper bound of the depth by a bracket scan (brackets inside strings count too: strict side).
        a = np.frombuffer(data, np.uint8)
        step = (a == 91).astype(np.int32) + (a == 123) - (a == 93) - (a == 125)
        if int(np.cumsum(step).max(initial=0)) > limits.max_json_depth:
            raise ServeError(413, f"JSON nested deeper than {limits.max_json_depth} levels; flatten the data")
    try:
        return json.loads(data)
    except RecursionError:
        raise ServeError(413, f"JSON nested deeper than {limits.max_json_depth} levels; flatten the data") from None
    except ValueError as exc:
        raise ServeError(400, f"malformed JSON: {str(exc)[:120]}") from None


def _int(value: Any, what: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ServeError(400, f"{what} must be an integer >= {low}, got {repr(value)[:40]}")
    return value


def parse_shape(shape: Any, name: str, limits: Limits) -> tuple[int, ...]:
    if not isinstance(shape, (list, tuple)) or len(shape) > limits.max_rank:
        raise ServeError(400, f"input {name!r}: 'shape' must be a list of at most {limits.max_rank} integers")
    return tuple(_int(d, f"input {name!r} shape dims") for d in shape)


def request_from_json(obj: Any, binary: memoryview, model: str, version: str, limits: Limits,
                      body: type[schema.InferBody] = schema.InferBody) -> InferRequest:
    """An InferRequest from the parsed JSON header; ``binary`` is what followed the header."""
    if not isinstance(obj, dict):
        raise ServeError(400, "the request must be a JSON object with an 'inputs' list")
    inputs = obj.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ServeError(400, "the request needs a non-empty 'inputs' list")
    if len(inputs) > limits.max_inputs:
        raise ServeError(413, f"{len(inputs)} inputs in one request; at most {limits.max_inputs} are accepted")
    outs = obj.get("outputs")
    if isinstance(outs, list) and len(outs) > limits.max_inputs:
        raise ServeError(400, f"'outputs' must be a list of at most {limits.max_inputs} objects")
    return request_from_body(schema.parse(body, obj, "the inference request"), binary, model, version, limits)


def request_from_bytes(data: bytes | memoryview, binary: memoryview, model: str, version: str, limits: Limits,
                       body: type[schema.InferBody] = schema.InferBody) -> InferRequest:
    """An InferRequest from the raw JSON header: parsed and validated in one pass by the schema's compiled
    validator; a body it refuses goes through ``parse_json`` + ``request_from_json`` for the one-line 400
    (or 413) naming what is wrong, so the common well-formed body never pays for the slower path."""
    data = bytes(data)
    req = validate_bytes(data, limits, body)
    if req is not None:
        return request_from_body(req, binary, model, version, limits)
    return request_from_json(parse_json(data, limits), binary, model, version, limits, body)


def validate_bytes(data: bytes, limits: Limits, body: type[schema.M]) -> schema.M | None:
    """``data`` validated as ``body`` in one pass, within the limits; None when it is not (the caller then
    takes the full path, which words the refusal)."""
    if data.count(b"[") + data.count(b"{") > limits.max_json_depth:  # parse_json's depth scan decides
        return None
    try:
        req = body.model_validate_json(data)
    except ValueError:  # pydantic's ValidationError
        return None
    inputs, outputs = getattr(req, "inputs", ()), getattr(req, "outputs", None) or ()
    return req if len(inputs) <= limits.max_inputs and len(outputs) <= limits.max_inputs else None


def request_from_body(req: schema.InferBody, binary: memoryview, model: str, version: str,
                      limits: Limits) -> InferRequest:
    """An InferRequest from a validated body; ``binary`` is what followed the JSON header."""
    offset, tensors = 0, []
    for inp in req.inputs:
        name, datatype, p = inp.name, inp.datatype, inp.parameters
        if datatype not in DATATYPES and datatype != "BYTES":
            raise ServeError(400, f"input {name!r}: unknown datatype {datatype[:20]!r}; use one of "
                                  f"{[*DATATYPES, 'BYTES']}")
        shape = parse_shape(inp.shape, name, limits)
        given = [k for k, v in (("data", inp.data is not None), ("binary_data_size", p.binary_data_size is not None),
                                ("shared_memory_region", p.shared_memory_region is not None)) if v]
        if len(given) != 1:
            raise ServeError(400, f"input {name!r} needs exactly one of 'data', parameters.binary_data_size or "
                                  f"parameters.shared_memory_region; got {given or 'none'}")
        if p.binary_data_size is not None:
            size = p.binary_data_size
            if offset + size > len(binary):
                raise ServeError(400, f"input {name!r} declares binary_data_size {size} but only "
                                      f"{len(binary) - offset} bytes remain after the JSON header")
            tensors.append(InputTensor(name, datatype, shape, raw=binary[offset:offset + size]))
            offset += size
        elif p.shared_memory_region is not None:
            tensors.append(InputTensor(name, datatype, shape, shm=shm_ref(p, f"input {name!r}")))
        else:
            tensors.append(InputTensor(name, datatype, shape, data=inp.data))
    if offset != len(binary):
        raise ServeError(400, f"{len(binary)} bytes of binary data follow the JSON header but the inputs "
                              f"declare {offset}; check Inference-Header-Content-Length and binary_data_size")
    outputs = None if req.outputs is None else [
        RequestedOutput(o.name, o.parameters.binary_data, o.parameters.classification,
                        shm_ref(o.parameters, f"output {o.name!r}") if o.parameters.shared_memory_region else None)
        for o in req.outputs]
    rp = req.parameters
    return InferRequest(model=model, version=version, id=str(req.id)[:128], inputs=tensors, outputs=outputs,
                        timeout_us=rp.timeout, binary_output=rp.binary_data_output,
                        sequence=sequence_of(rp.sequence_id, rp.sequence_start, rp.sequence_end),
                        empty_final=rp.triton_enable_empty_final_response)


def shm_ref(p: schema.SharedMemoryRef, what: str) -> ShmRef:
    if p.shared_memory_byte_size is None:
        raise ServeError(400, f"{what}: parameters.shared_memory_region needs shared_memory_byte_size")
    return ShmRef(str(p.shared_memory_region), p.shared_memory_offset, p.shared_memory_byte_size)


def sequence_of(sid: Any, start: bool, end: bool) -> SequenceFlags | None:
    """The sequence flags of a request (None when it names no sequence: id 0 or "" and no flags)."""
    if sid in (None, 0, "") and not start and not end:
        return None
    return SequenceFlags(sid if sid is not None else 0, bool(start), bool(end))


# -- tensors --------------------------------------------------------------------------------------
def to_array(t: InputTensor, limits: Limits) -> np.ndarray:
    """The numpy array of an input, after checking its bytes / values against shape and datatype.
    BYTES inputs become object arrays of ``bytes`` (JSON strings are UTF-8 encoded)."""
    if t.datatype == "BYTES":
        return bytes_array(t)
    if t.datatype not in DATATYPES:
        raise ServeError(400, f"input {t.name!r}: datatype {t.datatype} is not supported for model inputs")
    dt = DATATYPES[t.datatype]
    count = math.prod(t.shape)
    if count * dt.itemsize > limits.max_body_bytes:
        raise ServeError(413, f"input {t.name!r} of shape {list(t.shape)} is larger than the "
                              f"{limits.max_body_bytes}-byte request limit")
    if t.raw is not None:
        if len(t.raw) != count * dt.itemsize:
            raise ServeError(400, f"input {t.name!r}: shape {list(t.shape)} of {t.datatype} needs "
                                  f"{count * dt.itemsize} bytes, got {len(t.raw)}")
        return np.frombuffer(t.raw, dtype=dt).reshape(t.shape)
    try:
        arr = np.asarray(t.data)
    except (ValueError, TypeError):
        raise ServeError(400, f"input {t.name!r}: 'data' is not a regular (non-ragged) list of numbers") from None
    allowed = "b" if dt.kind == "b" else ("iu" if dt.kind in "iu" else "iuf")
    if arr.size and arr.dtype.kind not in allowed:
        raise ServeError(400, f"input {t.name!r}: 'data' holds {arr.dtype.kind!r}-kind values, which do not "
                              f"fit datatype {t.datatype}")
    if arr.size != count:
        raise ServeError(400, f"input {t.name!r}: shape {list(t.shape)} needs {count} values, got {arr.size}")
    return np.ascontiguousarray(arr.astype(dt, copy=False).reshape(t.shape))


def bytes_array(t: InputTensor) -> np.ndarray:
    """A BYTES input as an object array of ``bytes``: from 4-byte-length-prefixed raw data (every length
    checked against what is left), JSON strings (flat or nested) or gRPC ``bytes_contents``."""
    count = math.prod(t.shape)
    items: list[bytes] = []
    if t.raw is not None:
        raw, pos = memoryview(t.raw), 0
        while pos < len(raw) and len(items) < count:
            if pos + 4 > len(raw):
                raise ServeError(400, f"input {t.name!r}: BYTES element {len(items)} has a truncated 4-byte length")
            (n,) = struct.unpack_from("<I", raw, pos)
            if pos + 4 + n > len(raw):
                raise ServeError(400, f"input {t.name!r}: BYTES element {len(items)} declares {n} bytes but only "
                                      f"{len(raw) - pos - 4} remain")
            items.append(bytes(raw[pos + 4:pos + 4 + n]))
            pos += 4 + n
        if len(items) != count or pos != len(raw):
            raise ServeError(400, f"input {t.name!r}: shape {list(t.shape)} needs {count} BYTES elements; the data "
                                  f"holds {len(items)}{' and trailing bytes' if pos != len(raw) else ''}")
    else:
        stack = [t.data]
        while stack:  # flatten nested lists, keeping row-major order
            item = stack.pop()
            if isinstance(item, (list, tuple, np.ndarray)):
                stack.extend(reversed(list(item)))
            elif isinstance(item, str):
                items.append(item.encode())
            elif isinstance(item, bytes):
                items.append(item)
            else:
                raise ServeError(400, f"input {t.name!r}: BYTES data must be strings, got {type(item).__name__}")
            if len(items) > count:
                break
        if len(items) != count:
            raise ServeError(400, f"input {t.name!r}: shape {list(t.shape)} needs {count} strings, got "
                                  f"{len(items)}{'+' if stack else ''}")
    arr = np.empty(count, dtype=object)
    arr[:] = items
    return arr.reshape(t.shape)


def raw_bytes(out: OutputTensor) -> bytes:
    """Wire bytes of an output: little-endian row-major, BYTES as 4-byte length + bytes per element."""
    if out.datatype == "BYTES":
        parts = []
        for item in out.array.ravel():
            b = item if isinstance(item, bytes) else str(item).encode()
            parts += [struct.pack("<I", len(b)), b]
        return b"".join(parts)
    return np.ascontiguousarray(out.array, dtype=DATATYPES[out.datatype]).tobytes()


def _json_data(out: OutputTensor) -> list[Any]:
    flat = out.array.ravel()
    if out.datatype == "BYTES":
        return [x.decode(errors="replace") if isinstance(x, bytes) else str(x) for x in flat]
    return flat.tolist()


def response_to_json(resp: InferResponse) -> tuple[bytes, list[bytes]]:
    """The JSON header and the binary chunks that follow it (binary data extension)."""
    outputs, chunks = [], []
    for out in resp.outputs:
        entry: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": list(out.shape)}
        if out.shm is not None:
            entry["parameters"] = {"shared_memory_region": out.shm.region, "shared_memory_offset": out.shm.offset,
                                   "shared_memory_byte_size": out.shm.byte_size}
        elif out.binary:
            raw = raw_bytes(out)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _json_data(out)
        outputs.append(entry)
    body: dict[str, Any] = {"model_name": resp.model, "model_version": resp.version}
    if resp.id:
        body["id"] = resp.id
    if resp.parameters:
        body["parameters"] = resp.parameters
    body["outputs"] = outputs
    return json.dumps(body, separators=(",", ":")).encode(), chunks


def classification(logits: np.ndarray, k: int, labels: Sequence[str]) -> np.ndarray:
    """Triton's classification extension: per sample the top-k as b"score:index[:label]", shape (B, k)."""
    rows = np.asarray(logits).reshape(len(logits), -1)
    k = min(k, rows.shape[1])
    idx = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    out = np.empty((len(rows), k), dtype=object)
    for r, row in enumerate(idx):
        for c, i in enumerate(row):
            label = f":{labels[i]}" if i < len(labels) else ""
            out[r, c] = f"{float(rows[r, i]):f}:{int(i)}{label}".encode()
    return out
