"""Serving: Open Inference Protocol v2 over HTTP and gRPC, laser's socket protocol, dynamic batching,
a model repository, Prometheus metrics — one Handler, thin transports.

    >>> import laser
    >>> laser.serve("digits-cnn", http_port=8000)          # blocks until SIGTERM   # doctest: +SKIP
    >>> server = laser.serve("digits-cnn", block=False)    # background thread      # doctest: +SKIP
    >>> server.stop()                                                                # doctest: +SKIP
"""

from __future__ import annotations

from laser._callable import make_callable
from laser.serve.codec import Limits
from laser.serve.errors import ServeError
from laser.serve.handler import Handler
from laser.serve.repository import ModelSettings, Repository
from laser.serve.server import Server, serve

make_callable(__name__, serve)  # laser.serve(...) works as package and as function

__all__ = ["Handler", "Limits", "ModelSettings", "Repository", "ServeError", "Server", "serve"]
