"""Ray Serve: the same Handler and HTTP app, deployed as N replicas behind Ray's HTTP proxy.

Each replica builds its own Repository + Handler + ASGI app (``__serve_build_asgi_app__``) and loads
the models in the app's lifespan, so a replica reports healthy only once its models are warm. Ray's
proxy spreads requests over replicas; dynamic batching happens inside each replica. HTTP only (Ray
Serve's own gRPC proxy speaks a different service); models must be paths or catalog names, which
every replica opens itself.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from laser.artifact import Artifact
from laser.errors import ConfigError, require

log = logging.getLogger("laser.serve")

# Server options that only the in-process server knows; with Ray they are ignored (with a warning).
_LOCAL_ONLY = ("grpc_port", "socket_port", "socket_max_inflight", "grace_s", "server_name")


class LaserReplica:
    """One Ray Serve replica: a Handler over its own Repository, exposed as laser's ASGI app."""

    def __init__(self, sources: Sequence[str], options: dict[str, Any]):
        self.sources, self.options = list(sources), dict(options)

    def __serve_build_asgi_app__(self) -> Any:
        from laser.serve.handler import compose
        from laser.serve.http import build_app
        from laser.serve.settings import ModelSettings

        opts = dict(self.options)
        token, control = opts.pop("token", None), opts.pop("model_control", False)
        limits, poll = opts.pop("limits", None), opts.pop("poll_interval_s", 0.0)
        handler = compose(self.sources, ModelSettings(**opts), limits=limits, model_control=control)
        repository = handler.repository

        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> Any:
            import asyncio

            await repository.start()
            poller = asyncio.ensure_future(repository.poll(poll)) if poll else None
            yield
            if poller:
                poller.cancel()
            handler.begin_drain()
            await handler.wait_idle(30.0)
            await repository.close()

        return build_app(handler, token, lifespan=lifespan)


def deploy(models: Sequence[str | Path | Artifact], *, replicas: int = 1, host: str = "127.0.0.1",
           http_port: int = 8000, block: bool = True, **options: Any) -> Any:
    """Run ``replicas`` Ray Serve replicas of laser's handler on http://host:http_port.

    ``block=True`` serves until SIGTERM/SIGINT, then shuts Ray Serve down; ``block=False`` returns the
    deployment handle (stop with ``shutdown()``)."""
    ray = require("ray", "ray", "ray[serve]")
    from ray import serve as ray_serve

    if replicas < 1:
        raise ConfigError(f"replicas must be >= 1, got {replicas}")
    sources = []
    for m in models:
        if isinstance(m, Artifact):
            if m.location is None:
                raise ConfigError(f"{m!r} is not saved; Ray replicas open models themselves: save it "
                                  "(artifact.save(DIR)) and pass the directory")
            m = m.location
        text = str(m)
        name, sep, path = text.partition("=")
        if sep and Path(path).exists():
            text = f"{name}={Path(path).resolve()}"
        elif Path(text).exists():
            text = str(Path(text).resolve())
        sources.append(text)
    dropped = [key for key in _LOCAL_ONLY if options.pop(key, None) is not None]
    if dropped:
        log.info("with Ray Serve only HTTP is served: %s do not apply", ", ".join(dropped))
    if options.get("threads") is None:  # replicas share the cores: split them rather than oversubscribe
        from laser.runtime.base import default_threads

        options["threads"] = max(1, default_threads() // replicas)
    if not ray.is_initialized():
        ray.init(include_dashboard=False, configure_logging=False, log_to_driver=False)
    ray_serve.start(http_options={"host": host, "port": http_port})
    cpus = options["threads"]
    app = ray_serve.deployment(name="laser", num_replicas=replicas, ray_actor_options={"num_cpus": cpus})(
        ray_serve.ingress()(LaserReplica))
    handle = ray_serve.run(app.bind(sources, options), name="laser", route_prefix="/", blocking=False)
    log.info("ray serve: %d replica(s) on http://%s:%d", replicas, host, http_port,
             extra={"event": "listening", "protocol": "http", "port": http_port})
    if not block:
        return handle
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    shutdown()
    return None


def shutdown() -> None:
    """Stop Ray Serve and the local Ray instance started by ``deploy``."""
    import ray
    from ray import serve as ray_serve

    ray_serve.shutdown()
    ray.shutdown()
