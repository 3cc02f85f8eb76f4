"""``laser perf``: a perf_analyzer-style load generator for loopback servers.

For each concurrency level: N workers, each with its own connection, send requests back to back;
a warm-up period is discarded, then the measured period is cut into windows. Reported: throughput
(completed requests / measured seconds), latency p50/p90/p99 (client-side, request sent to answer
read), errors, and whether the last three windows agree within 10 % (stable). Time is bounded: each
level takes warm-up + duration (+ at most one request timeout), and only loopback targets are accepted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from laser.errors import ConfigError
from laser.serve.client import DEFAULT_PORTS, request_json
from laser.serve.codec import DATATYPES

Send = Callable[[], Awaitable[bool]]  # one request; True when it succeeded
MakeSender = Callable[[], Awaitable[tuple[Send, Callable[[], Any]]]]  # (send, close)

MAX_DURATION_S = 600.0
MAX_CONCURRENCY = 1024


@dataclass
class LevelResult:
    concurrency: int
    requests: int
    errors: int
    duration_s: float
    throughput_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    window_rps: list[float]
    stable: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def loopback_target(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a loopback URL; anything else is refused."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in DEFAULT_PORTS:
        raise ConfigError(f"unknown scheme {parts.scheme!r} in {url!r}; use http://, grpc:// or laser://")
    host = parts.hostname or ""
    try:
        ip = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
    except ValueError:
        ip = None
    if ip is None or not ip.is_loopback:
        raise ConfigError(f"laser perf only loads loopback servers (127.0.0.1, ::1, localhost), got {host!r}; "
                          "load-testing other hosts is out of scope")
    return parts.scheme, str(ip), parts.port or DEFAULT_PORTS[parts.scheme]


# -- senders ----------------------------------------------------------------------------------
def http_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """The bytes of one HTTP/1.1 keep-alive POST, built once and re-sent."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def http_sender(host: str, port: int, request: bytes, timeout_s: float = 30.0) -> MakeSender:
    """A minimal HTTP/1.1 client (one connection per worker) so the client spends little CPU."""
    async def make() -> tuple[Send, Callable[[], Any]]:
        conn: list[Any] = []  # (reader, writer) while the connection is open

        async def send() -> bool:
            if not conn:  # servers that close after each answer (HTTP/1.0, Flask's dev server) reconnect
                conn.extend(await asyncio.open_connection(host, port))
            reader, writer = conn
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
            length, close = None, head.startswith(b"HTTP/1.0")
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
            if length is None:
                await asyncio.wait_for(reader.read(), timeout_s)  # close-delimited body
                close = True
            elif length:
                await asyncio.wait_for(reader.readexactly(length), timeout_s)
            if close:
                writer.close()
                conn.clear()
            return head[9:12] == b"200"

        def close() -> None:
            if conn:
                conn[1].close()
        return send, close
    return make


def socket_sender(host: str, port: int, header: bytes, payload: list[bytes], timeout_s: float = 30.0) -> MakeSender:
    from laser.serve import socket as proto

    async def make() -> tuple[Send, Callable[[], Any]]:
        reader, writer = await asyncio.open_connection(host, port)
        frame = proto.pack(proto.REQUEST, 1, header, payload)

        async def send() -> bool:
            writer.write(frame)
            head = await asyncio.wait_for(reader.readexactly(proto.HEADER.size), timeout_s)
            _, _, kind, _, _, hlen, plen = proto.HEADER.unpack(head)
            await reader.readexactly(hlen + plen)
            return kind == proto.RESPONSE
        return send, writer.close
    return make


def grpc_sender(target: str, request: Any, timeout_s: float = 30.0) -> MakeSender:
    import grpc

    from laser.serve.proto import SERVICE, message

    async def make() -> tuple[Send, Callable[[], Any]]:
        channel = grpc.aio.insecure_channel(target, options=[("grpc.max_send_message_length", 256 << 20),
                                                             ("grpc.max_receive_message_length", 256 << 20)])
        call = channel.unary_unary(f"/{SERVICE}/ModelInfer", request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=message("ModelInferResponse").FromString)

        async def send() -> bool:
            try:
                await call(request, timeout=timeout_s)
            except grpc.aio.AioRpcError:
                return False
            return True
        return send, lambda: asyncio.ensure_future(channel.close())
    return make


# -- measurement ------------------------------------------------------------------------------
async def measure(make_sender: MakeSender, concurrency: int, duration_s: float, warmup_s: float = 2.0,
                  windows: int = 5, timeout_s: float = 30.0) -> LevelResult:
    """Run one concurrency level: warm-up, then ``duration_s`` measured in ``windows`` windows."""
    if not 1 <= concurrency <= MAX_CONCURRENCY or not 0 < duration_s <= MAX_DURATION_S or warmup_s < 0:
        raise ConfigError(f"concurrency must be in [1, {MAX_CONCURRENCY}], duration in (0, {MAX_DURATION_S}] s, "
                          f"warm-up >= 0; got {concurrency}, {duration_s}, {warmup_s}")
    senders = [await make_sender() for _ in range(concurrency)]
    start = time.perf_counter()
    begin, end = start + warmup_s, start + warmup_s + duration_s
    done_at: list[float] = []
    latencies: list[float] = []
    errors = 0

    async def worker(send: Send) -> None:
        nonlocal errors
        while (t0 := time.perf_counter()) < end:
            try:
                ok = await send()
            except (OSError, RuntimeError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                ok = False
            t1 = time.perf_counter()
            if t0 >= begin:
                if ok:
                    latencies.append(t1 - t0)
                    done_at.append(t1)
                else:
                    errors += 1
            if not ok:
                await asyncio.sleep(0.01)  # a refusing server is not hammered in a tight loop

    try:
        await asyncio.wait_for(asyncio.gather(*(worker(s) for s, _ in senders)), warmup_s + duration_s + timeout_s)
    finally:
        for _, close in senders:
            close()
    edges = np.linspace(begin, end, windows + 1)
    counts, _ = np.histogram(np.asarray(done_at), bins=edges)
    window_rps = (counts / (duration_s / windows)).tolist()
    last = np.asarray(window_rps[-3:])
    stable = bool(len(last) == 3 and last.mean() > 0 and np.all(np.abs(last - last.mean()) <= 0.1 * last.mean()))
    lat = np.asarray(latencies) * 1000 if latencies else np.asarray([np.nan])
    measured = int(np.sum(counts))
    p50, p90, p99 = (float(np.percentile(lat, q)) for q in (50, 90, 99))
    return LevelResult(concurrency, measured, errors, duration_s, measured / duration_s, p50, p90, p99, window_rps,
                       stable)


def random_inputs(meta: dict[str, Any], batch: int, shape: Sequence[int] | None, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs fitting a model's metadata: -1 dims from ``shape`` (per sample) or 1; batch dim = ``batch``."""
    rng = np.random.default_rng(seed)
    out = {}
    for t in meta["inputs"]:
        dims = list(t["shape"])
        if dims and dims[0] == -1:
            dims[0] = batch
        if shape:
            dims[1:] = [s if d == -1 else d for d, s in zip(dims[1:], shape)]
        dims = [1 if d == -1 else d for d in dims]
        dt = DATATYPES[t["datatype"]]
        arr = rng.standard_normal(dims) if dt.kind == "f" else rng.integers(0, 2, size=dims)
        out[t["name"]] = np.ascontiguousarray(arr.astype(dt))
    return out


def infer_sender(url: str, model: str, inputs: dict[str, np.ndarray], timeout_s: float = 30.0) -> MakeSender:
    """A sender of one fixed infer request for ``model`` over the URL's protocol."""
    scheme, host, port = loopback_target(url)
    header, chunks = request_json(inputs, None, True, None)
    if scheme == "http":
        req = http_request(host, port, f"/v2/models/{model}/infer", b"".join([header, *chunks]),
                           {"Inference-Header-Content-Length": str(len(header)),
                            "Content-Type": "application/octet-stream"})
        return http_sender(host, port, req, timeout_s)
    if scheme == "laser":
        obj = {"model_name": model, **json.loads(header)}
        return socket_sender(host, port, json.dumps(obj).encode(), chunks, timeout_s)
    from laser.serve.proto import message

    msg = message("ModelInferRequest")(model_name=model)
    for name, arr in inputs.items():
        from laser.serve.codec import datatype_of

        msg.inputs.add(name=name, datatype=datatype_of(arr.dtype), shape=arr.shape)
        msg.raw_input_contents.append(arr.tobytes())
    return grpc_sender(f"{host}:{port}", msg, timeout_s)


def model_metadata(url: str, model: str) -> dict[str, Any]:
    from laser.serve.client import connect

    scheme, host, port = loopback_target(url)
    with connect(f"{scheme}://{host}:{port}") as client:
        meta: Any = client.metadata(model)
    if scheme == "grpc":  # a protobuf message: the same fields as the JSON
        return {"inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in meta.inputs]}
    return meta


def perf(url: str, model: str, concurrency: Sequence[int] = (1, 8, 32), duration_s: float = 10.0,
         warmup_s: float = 2.0, batch: int = 1, shape: Sequence[int] | None = None) -> list[LevelResult]:
    """Load ``model`` at each concurrency level in turn; one LevelResult per level."""
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    inputs = random_inputs(model_metadata(url, model), batch, shape)
    make = infer_sender(url, model, inputs)
    from laser.serve.server import _loop_factory

    results = []
    for c in concurrency:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:  # uvloop: less client CPU per request
            results.append(runner.run(measure(make, c, duration_s, warmup_s)))
    return results
