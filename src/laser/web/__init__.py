"""``laser web``: an artifact as a self-contained web page, run in the browser by onnxruntime-web.

    >>> site = laser.web("digits-cnn", "out/web")        # index.html, laser.js, model.onnx, ort/ ...

A torch artifact is exported to ONNX first (and validated against its parent, as every export is); an
ONNX artifact (FP32, INT8 QDQ, FP16) is used as it is. The page's JavaScript API is ``window.laser``
(``ready``, ``run``, ``classify``, ``classifyText``); see ``laser/web/assets/laser.js``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from laser._callable import make_callable
from laser.artifact import Artifact
from laser.errors import BackendError
from laser.web.runtime_files import VERSION, fetch_runtime, runtime_dist
from laser.web.site import write_site


def as_onnx(artifact: Artifact | str) -> Artifact:
    """The artifact as ONNX: loaded by name/path, exported (and validated) when it is a torch model."""
    if isinstance(artifact, str):
        from laser.loader import load

        artifact = load(artifact)
    if artifact.format == "onnx":
        return artifact
    if artifact.format != "torch":
        raise BackendError(f"a web page runs ONNX models; {artifact.name!r} is {artifact.format} and cannot be "
                           "converted here: export its torch parent to onnx instead")
    from laser.export import export

    return export(artifact, to="onnx")


def web(artifact: Artifact | str, out_dir: str | Path, backend: str = "auto", check: bool = False) -> Path:
    """Write the site for ``artifact`` into ``out_dir``; with ``check``, also load it once in headless
    Chromium and raise if onnxruntime-web cannot build a session for it. Returns ``out_dir``."""
    site = write_site(as_onnx(artifact), out_dir, backend=backend)
    if check:
        check_in_browser(site)
    return site


def check_in_browser(site: Path) -> dict[str, Any]:
    """Load the site in headless Chromium; what ``laser.ready`` resolved to, or a BackendError saying why not."""
    from concurrent.futures import ThreadPoolExecutor

    from laser.web.browser import Browser
    from laser.web.server import start

    def load(url: str) -> dict[str, Any]:
        with Browser() as browser:
            return browser.open(url + "index.html").info

    server, url = start(site)
    try:  # Playwright's sync API in a thread of its own: this may run beside another Playwright session
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(load, url).result()
    finally:
        server.shutdown()
        server.server_close()


make_callable(__name__, web)  # laser.web(...) works as package and as function

__all__ = ["VERSION", "as_onnx", "check_in_browser", "fetch_runtime", "runtime_dist", "web", "write_site"]
