"""laser's socket protocol: length-prefixed binary frames over TCP, the lowest-overhead transport.

A frame (all integers little-endian)::

    offset  size  field
    0       4     magic b"LASR"
    4       1     protocol version (1)
    5       1     kind: 1 request, 2 response, 3 error
    6       2     flags (0)
    8       8     request id, chosen by the client and echoed in the answer
    16      4     JSON header length H
    20      4     payload length P (raw tensors, in the order the header lists them)
    24      H     JSON header: the REST request (``model_name``, ``model_version``, ``id``, ``parameters``,
                  ``inputs`` with ``parameters.binary_data_size``, ``outputs``) or ``{"op": "metadata" |
                  "ready" | "live", "model_name": ...}``; answers carry the REST response / ``{"error",
                  "status"}``
    24+H    P     payload

The declared lengths are checked against the frame limit before anything is buffered; a connection
has a bounded number of requests in flight (reading pauses beyond it); answers may come out of order
(match them by request id); a bad frame gets an error frame and, when the stream cannot be re-synced
(bad magic, oversized or truncated frame), the connection is closed after it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from typing import Any

from laser.serve import schema
from laser.serve.codec import (
    model_version,
    parse_json,
    request_from_body,
    request_from_json,
    response_to_json,
    validate_bytes,
)
from laser.serve.errors import ServeError, as_serve_error
from laser.serve.handler import Handler

log = logging.getLogger("laser.serve")

MAGIC = b"LASR"
VERSION = 1
REQUEST, RESPONSE, ERROR = 1, 2, 3
HEADER = struct.Struct("<4sBBHQII")
PROTOCOL = "socket"


def pack(kind: int, request_id: int, header: bytes, payload: bytes | list[bytes] = b"") -> bytes:
    chunks = payload if isinstance(payload, list) else [payload]
    size = sum(len(c) for c in chunks)
    return b"".join([HEADER.pack(MAGIC, VERSION, kind, 0, request_id, len(header), size), header, *chunks])


def error_frame(request_id: int, err: ServeError) -> bytes:
    body: dict[str, Any] = {"error": str(err), "status": err.status}
    if err.retry_after:
        body["retry_after"] = err.retry_after
    return pack(ERROR, request_id, json.dumps(body).encode())


class _Connection(asyncio.Protocol):
    def __init__(self, handler: Handler, max_inflight: int):
        self.handler = handler
        self.limit = handler.limits.max_body_bytes
        self.max_inflight = max_inflight
        self.buf = bytearray()
        self.tasks: set[asyncio.Task] = set()
        self.paused = False
        self.closing = False
        self.eof = False
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.buf += data
        self._parse()

    def _parse(self) -> None:
        buf = self.buf
        while len(buf) >= HEADER.size and len(self.tasks) < self.max_inflight:
            magic, version, kind, _, rid, hlen, plen = HEADER.unpack_from(buf)
            if magic != MAGIC or version != VERSION or kind != REQUEST:
                return self._fail(rid, ServeError(400, f"bad frame: magic {magic!r}, version {version}, kind {kind}; "
                                                       f"expected {MAGIC!r}, {VERSION}, {REQUEST}"))
            if hlen + plen > self.limit:  # checked before the frame is buffered
                return self._fail(rid, ServeError(413, f"frame of {hlen + plen} bytes exceeds the {self.limit}-byte "
                                                       "limit"))
            end = HEADER.size + hlen + plen
            if len(buf) < end:
                break
            with memoryview(buf) as view:  # one copy out of the buffer
                header = bytes(view[HEADER.size:HEADER.size + hlen])
                payload = bytes(view[HEADER.size + hlen:end])
            del buf[:end]
            task = asyncio.ensure_future(self._answer(rid, header, payload))
            self.tasks.add(task)
            task.add_done_callback(self._done)
        # Backpressure: stop reading while too many requests are in flight or a frame is incomplete
        # beyond what the limit allows to buffer.
        if len(self.tasks) >= self.max_inflight and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if self.eof and not self.tasks:
            self.transport.close()
            return
        if self.paused and len(self.tasks) < self.max_inflight and not self.closing:
            self.paused = False
            self.transport.resume_reading()
            self._parse()

    async def _answer(self, rid: int, header: bytes, payload: bytes) -> None:
        try:
            head, chunks = await self._handle(header, payload)
            frame = pack(RESPONSE, rid, head, chunks)
        except asyncio.CancelledError:
            return
        except Exception as exc:
            frame = error_frame(rid, as_serve_error(exc))
        if not self.transport.is_closing():
            self.transport.write(frame)

    async def _handle(self, header: bytes, payload: bytes) -> tuple[bytes, list[bytes]]:
        handler, limits = self.handler, self.handler.limits
        obj: Any = None

        def decode() -> Any:
            nonlocal obj
            fast = validate_bytes(header, limits, schema.SocketBody) if obj is None else None
            if fast is not None:  # the common well-formed header: validated in one pass
                model, version = model_version(fast.model_name, fast.model_version)
                req = request_from_body(fast, memoryview(payload), model, version, limits)
                if "binary_data_output" not in fast.parameters.model_fields_set:
                    req.binary_output = True
                return req
            obj = parse_json(header, limits) if obj is None else obj
            if not isinstance(obj, dict):
                raise ServeError(400, "the frame header must be a JSON object")
            model, version = model_version(obj.get("model_name"), obj.get("model_version"))
            req = request_from_json(obj, memoryview(payload), model, version, limits, schema.SocketBody)
            if "binary_data_output" not in (obj.get("parameters") or {}):
                req.binary_output = True  # raw outputs unless JSON data is asked for
            return req

        if b'"op"' in header:
            obj = parse_json(header, limits)
        if not isinstance(obj, dict) or "op" not in obj or obj["op"] == "infer":
            if isinstance(obj, dict):
                obj.pop("op", None)
            resp = await handler.infer(PROTOCOL, decode)
            head, chunks = response_to_json(resp)
            return head, chunks
        op = schema.parse(schema.SocketOp, obj, "the frame header")
        if op.op == "live":
            return json.dumps({"live": True}).encode(), []
        if op.op == "ready":
            ready = handler.model_ready(*model_version(op.model_name, op.model_version)) if op.model_name \
                else handler.ready
            return json.dumps({"ready": ready}).encode(), []
        if op.op == "metadata":
            meta = handler.model_metadata(*model_version(op.model_name, op.model_version))
            return json.dumps(meta).encode(), []
        raise ServeError(400, f"unknown op {op.op[:20]!r}; use infer, metadata, ready or live")

    def _fail(self, rid: int, err: ServeError) -> None:
        """An error frame, then close: the stream cannot be re-synchronised after a bad frame."""
        log.warning("socket protocol: %s", err, extra={"event": "bad_frame"})
        self.closing = True
        self.buf.clear()
        self.transport.write(error_frame(rid, err))
        self.transport.close()

    def eof_received(self) -> bool:
        if self.buf and not self.closing:  # the client stopped sending mid-frame
            have = len(self.buf)
            need = HEADER.size
            if have >= HEADER.size:
                _, _, _, _, rid, hlen, plen = HEADER.unpack_from(self.buf)
                need += hlen + plen
            else:
                rid = 0
            self._fail(rid, ServeError(400, f"truncated frame: the connection ended after {have} of {need} bytes"))
            return False
        self.eof = True
        return bool(self.tasks)  # keep the write side open until in-flight answers are sent

    def connection_lost(self, exc: Exception | None) -> None:
        # The client went away: its queued requests are cancelled (and leave the model queues).
        self.closing = True
        for task in list(self.tasks):
            task.cancel()


async def start_server(handler: Handler, host: str, port: int, max_inflight: int = 64) -> tuple[Any, int]:
    """A listening socket-protocol server and the port it bound (``port`` 0: a free one)."""
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(lambda: _Connection(handler, max_inflight), host, port, reuse_address=True)
    except OSError as exc:
        from laser.errors import ConfigError

        raise ConfigError(f"cannot listen for the socket protocol on {host}:{port} ({exc.strerror}); pick another "
                          "--socket-port") from None
    return server, server.sockets[0].getsockname()[1]
