"""Serve a site folder on 127.0.0.1 with the headers multi-threaded WASM needs (COOP + COEP).

Browsers give SharedArrayBuffer, and so onnxruntime-web's threads, only to cross-origin isolated pages:
``Cross-Origin-Opener-Policy: same-origin`` and ``Cross-Origin-Embedder-Policy: require-corp``.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path

from laser.errors import ConfigError

ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
             "Cross-Origin-Resource-Policy": "same-origin"}
TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
         ".json": "application/json", ".onnx": "application/octet-stream", ".html": "text/html"}


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    def guess_type(self, path: str | os.PathLike[str]) -> str:
        return TYPES.get(Path(path).suffix.lower()) or super().guess_type(path)

    def end_headers(self) -> None:
        for k, v in ISOLATION.items():
            self.send_header(k, v)
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet: the CLI prints the URL once
        pass


def make_server(directory: str | Path, port: int = 0, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """A server for ``directory`` on 127.0.0.1 (``port`` 0: a free one); call serve_forever() or start()."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(f"the site server binds the loopback address only, got host {host!r}")
    if not (Path(directory) / "index.html").is_file():
        raise ConfigError(f"{directory} holds no index.html; write the site first with `laser web ARTIFACT -o DIR`")
    handler = functools.partial(SiteHandler, directory=str(directory))
    try:
        server = http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port") from exc
    server.daemon_threads = True
    return server


def start(directory: str | Path, port: int = 0) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve in a background thread; (server, base URL). Stop with server.shutdown()."""
    server = make_server(directory, port)
    threading.Thread(target=server.serve_forever, name="laser-web", daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"
