"""Serving: Open Inference Protocol v2 over HTTP and gRPC, laser's socket protocol, dynamic batching,
a model repository, Prometheus metrics — one Handler, thin transports.

    >>> import laser
    >>> laser.serve("digits-cnn", http_port=8000)          # blocks until SIGTERM   # doctest: +SKIP
    >>> server = laser.serve("digits-cnn", block=False)    # background thread      # doctest: +SKIP
    >>> server.stop()                                                                # doctest: +SKIP
"""

from __future__ import annotations

import sys
import types
from typing import Any

from laser.serve.codec import Limits
from laser.serve.errors import ServeError
from laser.serve.handler import Handler
from laser.serve.repository import ModelSettings, Repository
from laser.serve.server import Server, serve


class _CallableModule(types.ModuleType):
    # ``laser.serve`` is both this package and the ``serve`` function of the public API: once any
    # submodule (laser.serve.client...) is imported, the attribute ``laser.serve`` is the package, so
    # the package itself must be callable for ``laser.serve(...)`` to keep working.
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return serve(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["Handler", "Limits", "ModelSettings", "Repository", "ServeError", "Server", "serve"]
