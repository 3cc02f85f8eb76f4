"""The server: one event loop running the HTTP, gRPC and socket transports over one Handler.

Transports start first (liveness answers while models load), then the repository loads and warms up
every model; readiness turns true once that pass is done. SIGTERM/SIGINT: readiness turns false, new
requests get 503, in-flight ones finish (up to ``grace_s``), the transports close, exit code 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import logging
import signal
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from laser.artifact import Artifact
from laser.errors import ConfigError, require
from laser.serve.codec import NAME, Limits
from laser.serve.handler import compose
from laser.serve.settings import ModelSettings

log = logging.getLogger("laser.serve")

Source = str | Path | Artifact


class Server:
    """``Server(models, http_port=..., ...)``; ``run()`` blocks until SIGTERM, ``start()``/``stop()`` run
    it on a background thread (tests, notebooks). A port of ``None`` turns that transport off, 0 picks
    a free port. Model settings (``max_batch_size``, ``backend``, ...) are ``ModelSettings`` fields."""

    def __init__(self, models: Sequence[Source], *, host: str = "127.0.0.1", http_port: int | None = 8000,
                 grpc_port: int | None = 8001, socket_port: int | None = 8002, token: str | None = None,
                 model_control: bool = False, poll_interval_s: float = 0.0, grace_s: float = 30.0,
                 limits: Limits | None = None, socket_max_inflight: int = 64, web: bool = False,
                 server_name: str = "laser", **settings: Any):
        if poll_interval_s < 0 or grace_s < 0:
            raise ConfigError(f"poll_interval_s and grace_s must be >= 0, got {poll_interval_s}, {grace_s}")
        if token is not None and len(token) < 8:
            raise ConfigError("the bearer token must be at least 8 characters; generate one with "
                              "`python -c 'import secrets; print(secrets.token_urlsafe(24))'`")
        self.host, self.token, self.grace_s, self.poll_interval_s = host, token, grace_s, poll_interval_s
        self.model_control = model_control
        self.requested_ports = {"http": http_port, "grpc": grpc_port, "socket": socket_port}
        self.socket_max_inflight = socket_max_inflight
        self.web = web  # also serve each model's browser page (laser web) under /web/{model}/
        if not isinstance(server_name, str) or not NAME.match(server_name):
            raise ConfigError(f"server_name {server_name!r} must be letters, digits, '_', '.' or '-'; e.g. 'triton'")
        self.handler = compose(models, ModelSettings(**settings), limits=limits, model_control=model_control,
                               name=server_name)
        self.metrics, self.repository = self.handler.metrics, self.handler.repository
        self.ports: dict[str, int] = {}
        self._uvicorn: Any = None
        self._uvicorn_task: asyncio.Task | None = None
        self._closers: list[Any] = []
        self._tasks: list[asyncio.Task] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    # -- addresses ------------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"http://{_netloc(self.host, self.ports['http'])}"

    @property
    def grpc_target(self) -> str:
        return _netloc(self.host, self.ports["grpc"])

    @property
    def socket_address(self) -> tuple[str, int]:
        return self.host, self.ports["socket"]

    # -- async lifecycle ------------------------------------------------------------------------
    async def start_async(self, wait_loaded: bool = True) -> None:
        p = self.requested_ports
        if p["http"] is not None:
            await self._start_http(p["http"])
        if p["grpc"] is not None:
            from laser.serve import grpc as grpc_transport

            server, self.ports["grpc"] = await grpc_transport.start_server(self.handler, self.host, p["grpc"], self.token)
            self._closers.append(lambda: server.stop(1.0))
        if p["socket"] is not None:
            if self.token:
                log.warning("the socket protocol has no authentication; it is bound to %s only", self.host)
            from laser.serve import socket as socket_transport

            srv, self.ports["socket"] = await socket_transport.start_server(self.handler, self.host, p["socket"],
                                                                          self.socket_max_inflight)
            self._closers.append(lambda: _close_server(srv))
        for name, port in self.ports.items():
            log.info("listening: %s on %s", name, _netloc(self.host, port),
                     extra={"event": "listening", "protocol": name, "port": port})
        loading = asyncio.ensure_future(self.repository.start())
        self._tasks.append(loading)
        if self.poll_interval_s:
            self._tasks.append(asyncio.ensure_future(self.repository.poll(self.poll_interval_s)))
        if wait_loaded:
            await loading

    async def _start_http(self, port: int) -> None:
        require("uvicorn", "serve")
        import uvicorn

        from laser.serve.http import build_app

        sock = _bind(self.host, port, "HTTP", "--http-port")
        self.ports["http"] = sock.getsockname()[1]
        pages = None
        if self.web:
            from laser.artifact import workspace
            from laser.serve.web import WebPages

            pages = WebPages(self.repository, workspace("web"))
        config = uvicorn.Config(build_app(self.handler, self.token, web=pages), log_config=None, access_log=False,
                                lifespan="off", server_header=False, timeout_graceful_shutdown=max(1, round(self.grace_s)) if self.grace_s else None,
                                h11_max_incomplete_event_size=64 << 10,
                                proxy_headers=False)  # X-Forwarded-* from clients is not trusted

        class _Uvicorn(uvicorn.Server):  # signals are handled by the Server, not by uvicorn
            @contextlib.contextmanager
            def capture_signals(self) -> Any:
                yield

        self._uvicorn = _Uvicorn(config)
        task = asyncio.ensure_future(self._uvicorn.serve(sockets=[sock]))
        while not self._uvicorn.started and not task.done():
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
        self._uvicorn_task = task

    async def stop_async(self, grace_s: float | None = None) -> None:
        """Drain (ready false, in-flight finish up to the grace period), close transports, unload."""
        grace = self.grace_s if grace_s is None else grace_s
        self.handler.begin_drain()
        if not await self.handler.wait_idle(grace):
            log.warning("grace period of %.1f s over with %d request(s) in flight", grace, self.handler.inflight)
        for task in self._tasks:  # initial load / polling
            task.cancel()
        if self._uvicorn_task is not None:
            self._uvicorn.should_exit = True
            with contextlib.suppress(Exception):
                await self._uvicorn_task
        for close in self._closers:
            with contextlib.suppress(Exception):
                await close()
        await self.repository.close()
        self.handler.shm.close()
        log.info("stopped", extra={"event": "stopped"})

    async def serve_async(self) -> None:
        """Serve until SIGTERM or SIGINT, then drain and stop."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            await self.start_async(wait_loaded=False)
            stopped = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait([stopped, self._tasks[0]], return_when=asyncio.FIRST_COMPLETED)
            if not stopped.done():
                try:
                    self._check_serving()
                except ConfigError:
                    stopped.cancel()
                    raise
            await stopped
            log.info("signal received: draining for up to %.1f s", self.grace_s, extra={"event": "signal"})
        finally:
            await self.stop_async()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def _check_serving(self) -> None:
        """After the initial load pass: a server with nothing READY stops, unless models can be loaded later."""
        rows = self.repository.index()
        if any(r["state"] == "READY" for r in rows):
            return
        if self.model_control:
            log.warning("no model is loaded; load one with POST /v2/repository/models/NAME/load",
                        extra={"event": "empty"})
            return
        failed = "; ".join(f"{r['name']}: {r['reason'] or r['state']}" for r in rows)
        where = ", ".join(str(r) for r in self.repository.roots)
        raise ConfigError(f"nothing to serve: {failed or f'repository {where} holds no model directories'}; "
                          "fix that, or pass model_control=True to start empty and load models later")

    # -- blocking / background ----------------------------------------------------------------
    def run(self) -> None:
        """Block until SIGTERM/SIGINT (main thread), then drain and return."""
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(self.serve_async())

    def start(self, timeout_s: float = 300.0) -> Server:
        """Start on a background thread; returns once listening and every model has loaded."""
        started = threading.Event()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                await self.start_async()
            except BaseException as exc:
                self._error = exc
                started.set()
                await self.stop_async(0)
                return
            started.set()
            await self._stop.wait()
            await self.stop_async()

        def thread() -> None:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(main())

        self._thread = threading.Thread(target=thread, name="laser-serve", daemon=True)
        self._thread.start()
        if not started.wait(timeout_s):
            raise ConfigError(f"the server did not start within {timeout_s} s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        if self._thread is None or self._loop is None or self._stop is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)
        self._thread = None

    def __enter__(self) -> Server:
        return self if self._thread else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(*models: Source | Sequence[Source], block: bool = True, ray: bool = False, replicas: int = 1,
          **options: Any) -> Any:
    """Serve models over HTTP + gRPC (Open Inference Protocol v2) and laser's socket protocol.

    >>> server = laser.serve("digits-cnn", backend="echo", http_port=0, grpc_port=0, socket_port=0,
    ...                      block=False)                        # doctest: +SKIP
    >>> server.http_url; server.stop()                          # doctest: +SKIP

    ``block=True`` (default) serves until SIGTERM with structured logs on stderr; ``ray=True`` deploys
    the same handler as ``replicas`` Ray Serve replicas instead.
    """
    sources: list[Source] = []
    for m in models:
        if isinstance(m, (list, tuple)):
            sources.extend(m)
        else:
            sources.append(m)  # type: ignore[arg-type]
    if ray:
        from laser.serve.ray import deploy

        return deploy(sources, replicas=replicas, block=block, **options)
    server = Server(sources, **options)
    if not block:
        return server.start()
    configure_logging()
    server.run()
    return None


# -- helpers ----------------------------------------------------------------------------------
def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind(host: str, port: int, what: str, option: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen for {what} on {_netloc(host, port)} ({exc.strerror}); "
                          f"pick another {option}") from None
    return sock


async def _close_server(server: asyncio.AbstractServer) -> None:
    server.close()
    await server.wait_closed()


def _loop_factory() -> Any:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and the structured extras (event, model...)."""

    EXTRAS = ("event", "model", "version", "protocol", "port")

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        for key in self.EXTRAS:
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """Structured (JSON lines) logs from laser.serve on stderr, once."""
    logger = logging.getLogger("laser.serve")
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        h = logging.StreamHandler()
        h.setFormatter(JsonFormatter())
        logger.addHandler(h)
        logger.propagate = False
    logger.setLevel(level)
