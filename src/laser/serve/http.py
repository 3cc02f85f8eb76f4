"""HTTP/REST adapter (ASGI, Starlette on uvicorn): the Open Inference Protocol v2 routes over the Handler.

Every route parses and serialises only; the lifecycle lives in ``Handler``. Bodies are size-checked
from Content-Length before reading and counted while streaming (and again after gzip/deflate), JSON
depth is bounded, a client that disconnects while its request waits is removed from the queue.
"""

from __future__ import annotations

import asyncio
import json
import math
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from laser.errors import require
from laser.serve import schema
from laser.serve.codec import (
    Limits,
    bearer_ok,
    check_name,
    model_version,
    parse_json,
    request_from_bytes,
    request_from_json,
    response_to_json,
)
from laser.serve.control import load, unload_params
from laser.serve.errors import ServeError, as_serve_error
from laser.serve.handler import Handler
from laser.serve.shm import cuda_refused

HEADER_LENGTH = "inference-header-content-length"
PROTOCOL = "http"
_LARGE_JSON = 1 << 20  # bytes: parse bigger JSON bodies in a worker thread, off the event loop
WATCH_AFTER_S = 0.005
GZIP_MIN_BYTES = 256


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    from starlette.responses import Response

    return Response(json.dumps(obj, separators=(",", ":")).encode(), status, headers, "application/json")


def error_response(err: ServeError) -> Any:
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after else None
    if err.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return _json({"error": str(err)}, err.status, headers)


async def read_body(request: Any, limits: Limits) -> bytes:
    """The request body, refused with 413 past ``limits.max_body_bytes`` (before and after inflating)."""
    limit = limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ServeError(400, f"Content-Length must be a non-negative integer, got {declared[:20]!r}")
        if int(declared) > limit:
            raise ServeError(413, f"request body of {declared} bytes exceeds the {limit}-byte limit")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ServeError(413, f"request body exceeds the {limit}-byte limit")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding in ("gzip", "deflate"):
        inflater = zlib.decompressobj(31 if encoding == "gzip" else 15)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise ServeError(400, f"body is not valid {encoding} data ({exc})") from None
        if len(body) > limit or inflater.unconsumed_tail:
            raise ServeError(413, f"decompressed request body exceeds the {limit}-byte limit")
    elif encoding != "identity":
        raise ServeError(400, f"unsupported Content-Encoding {encoding[:20]!r}; use gzip, deflate or none")
    return body


def split_body(body: bytes, header_length: str | None) -> tuple[memoryview, memoryview]:
    """(JSON header, binary data) of a body, range-checking Inference-Header-Content-Length."""
    view = memoryview(body)
    if header_length is None:
        return view, view[:0]
    if not header_length.isdigit() or int(header_length) > len(body):
        raise ServeError(400, f"Inference-Header-Content-Length {header_length[:20]!r} is not an integer in "
                              f"[0, {len(body)}] (the body length)")
    n = int(header_length)
    return view[:n], view[n:]


def _region(request: Any) -> str:
    region = request.path_params.get("region", "")
    return check_name("shared memory region name", region) if region else ""


def _names(request: Any) -> tuple[str, str]:
    return model_version(request.path_params["model"], request.path_params.get("version", ""))


def build_app(handler: Handler, token: str | None = None, lifespan: Any = None, web: Any = None) -> Any:
    """The ASGI app. ``token``: require ``Authorization: Bearer <token>`` (health routes stay open).
    ``web``: a ``laser.serve.web.WebPages``, whose routes serve each model's browser page under /web/."""
    require("starlette", "serve")
    from starlette.applications import Starlette

    routes = _routes(handler) + (web.routes(_endpoint) if web is not None else [])
    app: Any = _Gzip(Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found},
                               lifespan=lifespan))
    return _Guard(app, token) if token else app


class _Gzip:
    """Accept-Encoding: gzip honoured for inference answers past GZIP_MIN_BYTES (Starlette's GZipMiddleware),
    as Triton does: tritonclient's aio client asks for gzip on every call (aiohttp's default) but inflates
    only inference answers. The other requests go straight to the app, without the middleware's
    per-request cost (laser's own HttpClient asks for identity: tensors compress poorly)."""

    def __init__(self, app: Any):
        from starlette.middleware.gzip import GZipMiddleware

        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=GZIP_MIN_BYTES, compresslevel=6)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/infer"):
            for key, value in scope["headers"]:
                if key == b"accept-encoding" and b"gzip" in value.lower():
                    await self.gzip(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _endpoint(fn: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    """``fn`` with every exception answered as the ServeError it maps to."""
    async def wrapped(request: Any) -> Any:
        try:
            return await fn(request)
        except Exception as exc:
            return error_response(as_serve_error(exc))
    return wrapped


async def _not_found(request: Any, exc: Exception) -> Any:
    code = getattr(exc, "status_code", 404)
    return _json({"error": f"no route {request.method} {request.url.path[:100]}"}, code)


def _routes(handler: Handler) -> list[Any]:
    """The Open Inference Protocol v2 routes (plus /metrics and the repository extension) over ``handler``."""
    from starlette.responses import Response
    from starlette.routing import Route

    async def live(request: Any) -> Any:
        return _json({"live": True})

    async def ready(request: Any) -> Any:
        if handler.ready:
            return _json({"ready": True})
        return _json({"ready": False, "error": "not ready: loading, draining or no model serves"}, 503)

    async def server_metadata(request: Any) -> Any:
        return _json(handler.server_metadata())

    async def model_metadata(request: Any) -> Any:
        return _json(handler.model_metadata(*_names(request)))

    async def model_ready(request: Any) -> Any:
        model, version = _names(request)
        ok = handler.model_ready(model, version)
        return _json({"name": model, "ready": ok}, 200 if ok else 503)

    async def model_config(request: Any) -> Any:
        return _json(handler.model_config(*_names(request)))

    async def statistics(request: Any) -> Any:
        if "model" not in request.path_params:
            return _json(handler.statistics())
        return _json(handler.statistics(*_names(request)))

    async def metrics(request: Any) -> Any:
        return Response(handler.metrics.render(), media_type=handler.metrics.content_type)

    async def repository_index(request: Any) -> Any:
        body = await _body(request, schema.IndexBody, "the repository index request", handler.limits)
        return _json(handler.repository.index(ready=body.ready))

    infer, task = _endpoint(_infer(handler)), _endpoint(_task(handler))
    v = "/v2/models/{model}"
    vv = "/v2/models/{model}/versions/{version}"
    # Starlette tries routes in order: inference first; /v2/models/stats before the {model} routes.
    routes = [Route(v + "/infer", infer, methods=["POST"]),
              Route("/v2/models/stats", _endpoint(statistics), methods=["GET"])]
    routes += [
        Route("/v2/health/live", _endpoint(live), methods=["GET"]),
        Route("/v2/health/ready", _endpoint(ready), methods=["GET"]),
        Route("/v2", _endpoint(server_metadata), methods=["GET"]),
        Route("/metrics", _endpoint(metrics), methods=["GET"]),
        Route("/v2/repository/index", _endpoint(repository_index), methods=["GET", "POST"]),
        Route("/v2/repository/models/{model}/load", _endpoint(_control(handler, "load")), methods=["POST"]),
        Route("/v2/repository/models/{model}/unload", _endpoint(_control(handler, "unload")), methods=["POST"]),
    ]
    routes += _shm_routes(handler)
    for base in (v, vv):
        routes += [
            Route(base, _endpoint(model_metadata), methods=["GET"]),
            Route(base + "/ready", _endpoint(model_ready), methods=["GET"]),
            Route(base + "/config", _endpoint(model_config), methods=["GET"]),
            Route(base + "/stats", _endpoint(statistics), methods=["GET"]),
            *([Route(base + "/infer", infer, methods=["POST"])] if base == vv else []),
            Route(base + "/{task}", task, methods=["POST"]),
        ]
    return routes


def _shm_routes(handler: Handler) -> list[Any]:
    """The system shared-memory extension's routes, and the CUDA ones (refused: no GPU path)."""
    from starlette.routing import Route

    async def shm_status(request: Any) -> Any:
        return _json(handler.shm.status(_region(request)))

    async def shm_register(request: Any) -> Any:
        body = await _body(request, schema.RegisterBody, "the shared memory registration", handler.limits)
        handler.shm.register(_region(request), body.key, body.offset, body.byte_size)
        return _json({})

    async def shm_unregister(request: Any) -> Any:
        handler.shm.unregister(_region(request))
        return _json({})

    async def cuda_status(request: Any) -> Any:
        return _json([])  # none can be registered here

    async def cuda_unregister(request: Any) -> Any:
        return _json({})  # none can be registered, so none is left (clients clear regions before starting)

    async def cuda_refuse(request: Any) -> Any:
        raise cuda_refused()

    routes: list[Any] = []
    for base in ("/v2/systemsharedmemory", "/v2/systemsharedmemory/region/{region}"):
        routes += [Route(base + "/status", _endpoint(shm_status), methods=["GET"]),
                   Route(base + "/unregister", _endpoint(shm_unregister), methods=["POST"])]
    routes.append(Route("/v2/systemsharedmemory/region/{region}/register", _endpoint(shm_register), methods=["POST"]))
    for base in ("/v2/cudasharedmemory", "/v2/cudasharedmemory/region/{region}"):
        routes += [Route(base + "/status", _endpoint(cuda_status), methods=["GET"]),
                   Route(base + "/unregister", _endpoint(cuda_unregister), methods=["POST"])]
    routes.append(Route("/v2/cudasharedmemory/region/{region}/register", _endpoint(cuda_refuse), methods=["POST"]))
    return routes


def _infer(handler: Handler) -> Callable[[Any], Awaitable[Any]]:
    """POST .../infer: decode (JSON, JSON + binary, or a raw body), run through the handler, encode."""
    from starlette.responses import Response

    limits = handler.limits

    async def infer(request: Any) -> Any:
        me = asyncio.current_task()
        watcher: list[asyncio.Task] = []
        timer: list[asyncio.TimerHandle] = []

        async def decode() -> Any:
            model, version = _names(request)
            body = await read_body(request, limits)
            header, binary = split_body(body, request.headers.get(HEADER_LENGTH))
            # Watch for a disconnect only once the request has lasted WATCH_AFTER_S: fast answers skip
            # the cost of a watcher task, slow ones still leave the queue when their client goes away.
            timer.append(asyncio.get_running_loop().call_later(
                WATCH_AFTER_S, lambda: watcher.append(asyncio.ensure_future(_watch_disconnect(request.receive, me)))))
            if len(header) == 0 and len(binary):  # header length 0: the body is the single input's data
                obj = raw_input_request(handler, model, version, len(binary))
                return request_from_json(obj, binary, model, version, limits)
            if len(header) > _LARGE_JSON:
                return await asyncio.to_thread(request_from_bytes, header, binary, model, version, limits)
            return request_from_bytes(header, binary, model, version, limits)

        try:
            resp = await handler.infer(PROTOCOL, decode)
        except asyncio.CancelledError:
            if watcher and watcher[0].done() and not watcher[0].cancelled():
                return Response(status_code=499)  # the client is gone; nobody reads this
            raise
        finally:
            if timer:
                timer[0].cancel()
            if watcher:
                watcher[0].cancel()
        header, chunks = response_to_json(resp)
        if not chunks:
            return Response(header, 200, media_type="application/json")
        return Response(b"".join([header, *chunks]), 200, {"Inference-Header-Content-Length": str(len(header))},
                        "application/octet-stream")

    return infer


def _task(handler: Handler) -> Callable[[Any], Awaitable[Any]]:
    """POST .../{task}: a task pipeline on the raw body or the file of a multipart form."""
    from starlette.formparsers import MultiPartParser

    limits = handler.limits

    async def task(request: Any) -> Any:
        model, version = _names(request)

        async def payload() -> bytes:
            body = await read_body(request, limits)
            ctype = request.headers.get("content-type", "")
            if not ctype.startswith("multipart/form-data"):
                return body

            async def stream() -> Any:
                yield body

            form = await MultiPartParser(request.headers, stream(), max_files=1, max_fields=16).parse()
            for value in form.values():
                if hasattr(value, "read"):
                    return await value.read()
            raise ServeError(400, "the multipart form has no file field; send the image as 'file'")

        result = await handler.task(PROTOCOL, request.path_params["task"], model, version, payload,
                                    dict(request.query_params))
        return _json(result)

    return task


def _control(handler: Handler, action: str) -> Callable[[Any], Awaitable[Any]]:
    """POST /v2/repository/models/{model}/load|unload, when model control is enabled."""
    async def run(request: Any) -> Any:
        if not handler.model_control:
            raise ServeError(403, "model control is disabled; start the server with --model-control "
                                  "(laser.serve(..., model_control=True)) to load and unload models")
        model, _ = _names(request)
        body = await _body(request, schema.LoadBody, f"the {action} request", handler.limits)
        if action == "load":
            await load(handler.repository, model, body.parameters)
        else:
            unload_params(body.parameters)
            await handler.repository.unload(model)
        return _json({})
    return run


async def _body(request: Any, model: type[schema.M], what: str, limits: Limits) -> schema.M:
    """A small JSON control body (empty: all defaults), validated whole."""
    raw = await read_body(request, limits)
    return schema.parse(model, parse_json(raw, limits) if raw.strip() else {}, what)


async def _watch_disconnect(receive: Callable[[], Awaitable[dict]], task: asyncio.Task | None) -> None:
    # Once the body is read, receive() only returns when the client goes away (http.disconnect).
    message = await receive()
    if message.get("type") == "http.disconnect" and task is not None:
        task.cancel()


def raw_input_request(handler: Handler, model: str, version: str, nbytes: int) -> dict[str, Any]:
    """Inference-Header-Content-Length: 0 — the body is the raw data of the model's single input, batch 1;
    one variable dim besides the batch takes its size from the byte count, as in Triton."""
    from laser.serve.codec import DATATYPES, datatype_of

    mv = handler.repository.get(model, version)
    if len(mv.spec.inputs) != 1:
        raise ServeError(400, f"a raw body needs a single-input model; {model!r} has {len(mv.spec.inputs)} inputs")
    t = mv.spec.inputs[0]
    datatype = datatype_of(t.dtype)
    if datatype not in DATATYPES:
        raise ServeError(400, f"a raw body cannot carry {datatype} input {t.name!r}; send a JSON header")
    shape = [1 if i == 0 and mv.batchable else d for i, d in enumerate(t.shape)]
    free = [i for i, d in enumerate(shape) if not isinstance(d, int)]
    if len(free) > 1:
        raise ServeError(400, f"input {t.name!r} has {len(free)} variable dims besides the batch; a raw body can "
                              "size one; send a JSON header with the shape")
    if free:
        per = DATATYPES[datatype].itemsize * math.prod(d for d in shape if isinstance(d, int))
        if per == 0 or nbytes % per:
            raise ServeError(400, f"a raw body of {nbytes} bytes is not a whole number of {t.describe()} "
                                  f"{datatype} rows ({per} bytes each)")
        shape[free[0]] = nbytes // per
    return {"inputs": [{"name": t.name, "datatype": datatype, "shape": shape,
                        "parameters": {"binary_data_size": nbytes}}]}


class _Guard:
    """Bearer-token check in front of the app (constant-time compare); health probes stay open."""

    def __init__(self, app: Any, token: str):
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if (scope["type"] == "http" and not scope["path"].startswith("/v2/health")
                and not bearer_ok(dict(scope["headers"]).get(b"authorization", b""), self.token)):
            response = error_response(ServeError(401, "missing or wrong bearer token; send "
                                                      "'Authorization: Bearer <token>'"))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
