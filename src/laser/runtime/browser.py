"""Browser backend: the artifact's web page (``laser web``) in headless Chromium, driven by Playwright.

Each call is one ``window.laser.run`` in the page (onnxruntime-web, WASM with SIMD; threads because the
page is served with COOP/COEP). Playwright's sync API lives in one thread of the runner's own, so the
runner works beside another Playwright session or inside an asyncio program. Inputs and outputs cross as raw bytes over Playwright's channel, so a
call's wall time includes that round trip (about a millisecond); ``bench/web.py`` reports in-page timings
beside it. Never picked by ``backend="auto"``: ask for it by name (``laser bench --backends browser``).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from laser.artifact import Artifact
from laser.errors import BackendError
from laser.runtime.base import Runner

T = TypeVar("T")


class BrowserRunner(Runner):
    backend = "browser"

    def __init__(self, artifact: Artifact, threads: int | None = None, device: str = "wasm"):
        from laser.web.browser import Browser
        from laser.web.server import start
        from laser.web.site import write_site

        if device not in ("wasm", "webgpu", "auto"):
            raise BackendError(f"the browser backend's device is 'wasm', 'webgpu' or 'auto', got {device!r}")
        super().__init__(artifact, threads, device)
        self._dir = Path(tempfile.mkdtemp(prefix="laser-browser-"))
        self._server: Any = None
        self._browser: Any = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="laser-browser")
        try:
            site = write_site(artifact, self._dir / "site", backend=device)
            self._server, url = start(site)
            self._browser = self._call(Browser)
            query = f"?threads={self.threads}" if threads else ""
            self.page = self._call(lambda: self._browser.open(url + "index.html" + query))
        except BaseException:
            self.close()
            raise
        self.device = str(self.page.info.get("backend", device))
        self.threads = int(self.page.info.get("threads", self.threads))

    def _call(self, fn: Callable[[], T]) -> T:
        return self._thread.submit(fn).result()

    def _run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {k: np.asarray(v) for k, v in inputs.items()}
        out = self._call(lambda: self.page.run(feeds))
        return {n: out[n] for n in self.spec.output_names if n in out} or out

    def describe(self) -> dict[str, object]:
        info = self.page.info if getattr(self, "page", None) is not None else {}
        return {**super().describe(), "runtime": info.get("runtime"), "cross_origin_isolated": info.get("isolated"),
                "timing": "wall time of window.laser.run in headless Chromium, Playwright round trip included"}

    def close(self) -> None:
        if self._browser is not None:
            browser, self._browser = self._browser, None
            self._call(browser.close)
        self._thread.shutdown(wait=True)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        shutil.rmtree(self._dir, ignore_errors=True)
