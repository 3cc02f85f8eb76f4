"""Clients for a laser server: HTTP (Open Inference Protocol + binary data), gRPC, and the socket protocol.

    >>> from laser.serve.client import connect
    >>> with connect("laser://127.0.0.1:8002") as c:                       # doctest: +SKIP
    ...     logits = c.infer("digits-cnn", {"input": x})["logits"]

Every client takes and returns numpy arrays by tensor name and raises ``ServeError`` (with the
server's status) when the server refuses a request. Standard clients (tritonclient, curl) work too.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from laser.errors import require
from laser.serve import socket as proto
from laser.serve.codec import DATATYPES, datatype_of
from laser.serve.errors import GRPC_CODES, ServeError

DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "laser": 8002}


def request_json(inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None, binary: bool,
                 timeout_us: int | None) -> tuple[bytes, list[bytes]]:
    """JSON header + binary chunks of an infer request (binary data extension when ``binary``)."""
    entries, chunks = [], []
    for name, value in inputs.items():
        arr = np.ascontiguousarray(value)
        entry: dict[str, Any] = {"name": name, "datatype": datatype_of(arr.dtype), "shape": list(arr.shape)}
        if binary:
            raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = arr.ravel().tolist()
        entries.append(entry)
    body: dict[str, Any] = {"inputs": entries, "parameters": {"binary_data_output": binary}}
    if outputs:
        body["outputs"] = [{"name": n, "parameters": {"binary_data": binary}} for n in outputs]
    if timeout_us is not None:
        body["parameters"]["timeout"] = int(timeout_us)
    return json.dumps(body, separators=(",", ":")).encode(), chunks


def decode_outputs(header: Mapping[str, Any], data: bytes | memoryview) -> dict[str, np.ndarray]:
    """Output arrays from a response header and the binary data after it."""
    out, offset, view = {}, 0, memoryview(data)
    for o in header.get("outputs", []):
        shape, dtype = tuple(o["shape"]), o["datatype"]
        size = (o.get("parameters") or {}).get("binary_data_size")
        if size is None:
            out[o["name"]] = np.asarray(o["data"], dtype=object if dtype == "BYTES" else DATATYPES[dtype]).reshape(shape)
            continue
        chunk = view[offset:offset + size]
        offset += size
        if dtype == "BYTES":
            items, i = [], 0
            while i < len(chunk):
                (n,) = struct.unpack_from("<I", chunk, i)
                items.append(bytes(chunk[i + 4:i + 4 + n]))
                i += 4 + n
            out[o["name"]] = np.asarray(items, dtype=object).reshape(shape)
        else:
            out[o["name"]] = np.frombuffer(chunk, dtype=DATATYPES[dtype]).reshape(shape).copy()
    return out


class HttpClient:
    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None, timeout_s: float = 30.0):
        httpx = require("httpx", "serve")
        headers = {"Accept-Encoding": "identity", **({"Authorization": f"Bearer {token}"} if token else {})}
        self._c = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s, headers=headers)

    def _get(self, path: str) -> Any:
        r = self._c.get(path)
        _raise(r.status_code, r.content)
        return r.json()

    def live(self) -> bool:
        return self._c.get("/v2/health/live").status_code == 200

    def ready(self, model: str | None = None, version: str = "") -> bool:
        path = f"/v2/models/{model}{f'/versions/{version}' if version else ''}/ready" if model else "/v2/health/ready"
        return self._c.get(path).status_code == 200

    def metadata(self, model: str, version: str = "") -> dict[str, Any]:
        return self._get(_model_path(model, version))

    def config(self, model: str, version: str = "") -> dict[str, Any]:
        return self._get(_model_path(model, version) + "/config")

    def infer(self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None,
              version: str = "", binary: bool = True, timeout_us: int | None = None) -> dict[str, np.ndarray]:
        header, chunks = request_json(inputs, outputs, binary, timeout_us)
        headers = {"Inference-Header-Content-Length": str(len(header))} if chunks else {}
        r = self._c.post(_model_path(model, version) + "/infer", content=b"".join([header, *chunks]),
                         headers={"Content-Type": "application/octet-stream", **headers})
        _raise(r.status_code, r.content)
        n = int(r.headers.get("inference-header-content-length", len(r.content)))
        return decode_outputs(json.loads(r.content[:n]), r.content[n:])

    def classify(self, model: str, image: bytes | str | Path, k: int = 5, version: str = "") -> dict[str, Any]:
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        r = self._c.post(_model_path(model, version) + "/classify", params={"k": k},
                         files={"file": ("image", data, "application/octet-stream")})
        _raise(r.status_code, r.content)
        return r.json()

    def close(self) -> None:
        self._c.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GrpcClient:
    def __init__(self, target: str = "127.0.0.1:8001", token: str | None = None, timeout_s: float = 30.0,
                 max_message_bytes: int = 64 << 20):
        self._grpc = require("grpc", "serve", "grpcio")
        from laser.serve.proto import RPCS, SERVICE, message

        self._channel = self._grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", max_message_bytes), ("grpc.max_receive_message_length", max_message_bytes)])
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._timeout = timeout_s
        self._message = message
        self._calls = {name: self._channel.unary_unary(f"/{SERVICE}/{name}", request_serializer=message(req).SerializeToString,
                                                       response_deserializer=message(resp).FromString)
                       for name, (req, resp) in RPCS.items()}

    def call(self, rpc: str, **fields: Any) -> Any:
        """One RPC by name, e.g. ``call("ModelMetadata", name="digits-cnn")``; the response message."""
        from laser.serve.proto import RPCS

        try:
            return self._calls[rpc](self._message(RPCS[rpc][0])(**fields), timeout=self._timeout,
                                    metadata=self._metadata)
        except self._grpc.RpcError as exc:
            codes = {v: k for k, v in GRPC_CODES.items()}
            raise ServeError(codes.get(exc.code().name, 500), exc.details() or exc.code().name) from None

    def live(self) -> bool:
        return self.call("ServerLive").live

    def ready(self, model: str | None = None, version: str = "") -> bool:
        return self.call("ModelReady", name=model, version=version).ready if model else self.call("ServerReady").ready

    def metadata(self, model: str, version: str = "") -> Any:
        return self.call("ModelMetadata", name=model, version=version)

    def infer(self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None,
              version: str = "", timeout_us: int | None = None) -> dict[str, np.ndarray]:
        req = self._message("ModelInferRequest")(model_name=model, model_version=version)
        for name, value in inputs.items():
            arr = np.ascontiguousarray(value)
            req.inputs.add(name=name, datatype=datatype_of(arr.dtype), shape=arr.shape)
            req.raw_input_contents.append(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
        for name in outputs or ():
            req.outputs.add(name=name)
        if timeout_us is not None:
            req.parameters["timeout"].int64_param = int(timeout_us)
        try:
            resp = self._calls["ModelInfer"](req, timeout=self._timeout, metadata=self._metadata)
        except self._grpc.RpcError as exc:
            codes = {v: k for k, v in GRPC_CODES.items()}
            raise ServeError(codes.get(exc.code().name, 500), exc.details() or exc.code().name) from None
        header = {"outputs": [{"name": o.name, "datatype": o.datatype, "shape": list(o.shape),
                               "parameters": {"binary_data_size": len(raw)}}
                              for o, raw in zip(resp.outputs, resp.raw_output_contents)]}
        return decode_outputs(header, b"".join(resp.raw_output_contents))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SocketClient:
    """laser's socket protocol: one TCP connection, one request at a time (thread-safe by a lock)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8002, timeout_s: float = 30.0):
        self._sock = socket.create_connection((host, port), timeout=timeout_s)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._lock = threading.Lock()
        self._next_id = 0

    def request(self, header: Mapping[str, Any], payload: list[bytes] | bytes = b"") -> tuple[dict[str, Any], bytes]:
        """Send one frame, return (answer header, answer payload); error frames raise ServeError."""
        with self._lock:
            self._next_id += 1
            rid = self._next_id
            self._sock.sendall(proto.pack(proto.REQUEST, rid, json.dumps(header).encode(), payload))
            head = self._recv(proto.HEADER.size)
            magic, _, kind, _, got_id, hlen, plen = proto.HEADER.unpack(head)
            if magic != proto.MAGIC or got_id != rid:
                raise ServeError(500, f"unexpected frame from the server (magic {magic!r}, id {got_id}, expected {rid})")
            body = self._recv(hlen + plen)
        answer = json.loads(body[:hlen])
        if kind == proto.ERROR:
            raise ServeError(int(answer.get("status", 500)), answer.get("error", "error"), answer.get("retry_after"))
        return answer, body[hlen:]

    def _recv(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise ServeError(503, f"the server closed the connection after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def live(self) -> bool:
        return bool(self.request({"op": "live"})[0].get("live"))

    def ready(self, model: str | None = None, version: str = "") -> bool:
        header = {"op": "ready", **({"model_name": model, "model_version": version} if model else {})}
        return bool(self.request(header)[0].get("ready"))

    def metadata(self, model: str, version: str = "") -> dict[str, Any]:
        return self.request({"op": "metadata", "model_name": model, "model_version": version})[0]

    def infer(self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None,
              version: str = "", timeout_us: int | None = None) -> dict[str, np.ndarray]:
        header, chunks = request_json(inputs, outputs, True, timeout_us)
        obj = {"model_name": model, "model_version": version, **json.loads(header)}
        answer, payload = self.request(obj, chunks)
        return decode_outputs(answer, payload)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> SocketClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(url: str, **options: Any) -> HttpClient | GrpcClient | SocketClient:
    """A client by URL scheme: ``http://host:port``, ``grpc://host:port``, ``laser://host:port``."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host, port = parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORTS.get(parts.scheme, 8000)
    if parts.scheme == "http":
        return HttpClient(f"http://{host}:{port}", **options)
    if parts.scheme == "grpc":
        return GrpcClient(f"{host}:{port}", **options)
    if parts.scheme == "laser":
        return SocketClient(host, port, **options)
    from laser.errors import ConfigError

    raise ConfigError(f"unknown scheme {parts.scheme!r} in {url!r}; use http://, grpc:// or laser://")


def _model_path(model: str, version: str) -> str:
    return f"/v2/models/{model}" + (f"/versions/{version}" if version else "")


def _raise(status: int, content: bytes) -> None:
    if status == 200:
        return
    try:
        message = json.loads(content).get("error", "")
    except (ValueError, AttributeError):
        message = content[:200].decode(errors="replace")
    raise ServeError(status, message or f"HTTP {status}")
