"""Headless Chromium through Playwright: open a site, wait for ``laser.ready``, call ``window.laser``.

Debian's ``chromium`` is used (``/usr/bin/chromium``; ``LASER_CHROMIUM`` names another); Playwright's own
browser download is not needed. Every request the page makes is logged, so callers can check that
nothing left the site's origin.
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from laser.errors import BackendError, DependencyError, require

INSTALL_HINT = "apt-get install -y chromium"
# Flags that keep Chromium from calling home (this machine has no network but the package registries).
QUIET = ["--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-quic", "--disable-default-apps", "--metrics-recording-only", "--no-default-browser-check"]
READY_TIMEOUT_MS = 120_000


def chromium_path() -> str:
    """The Chromium executable, or a DependencyError with the command that installs it."""
    for cand in (os.environ.get("LASER_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    raise DependencyError(f"Chromium is not installed; install it with `{INSTALL_HINT}` (Debian) or set "
                          "LASER_CHROMIUM to a Chromium/Chrome executable")


class Browser:
    """One headless Chromium (with Playwright's sync API); ``open(url)`` gives a ready ``Page``."""

    def __init__(self) -> None:
        sync_api = require("playwright.sync_api", "web", "playwright")
        self._pw = sync_api.sync_playwright().start()
        args = [*QUIET, "--enable-unsafe-swiftshader"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to sandbox itself as root
        try:
            self.browser = self._pw.chromium.launch(executable_path=chromium_path(), args=args, headless=True)
        except Exception as exc:
            self._pw.stop()
            if isinstance(exc, DependencyError):
                raise
            raise BackendError(f"Chromium did not start: {str(exc).splitlines()[0][:300]}") from exc

    def open(self, url: str, timeout_ms: int = READY_TIMEOUT_MS) -> Page:
        return Page(self.browser.new_page(), url, timeout_ms)

    def close(self) -> None:
        try:
            self.browser.close()
        finally:
            self._pw.stop()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page:
    """A loaded site: ``info`` is what ``laser.ready`` resolved to; ``requests`` every URL the page asked for."""

    def __init__(self, page: Any, url: str, timeout_ms: int):
        self.page, self.url = page, url
        self.requests: list[str] = []
        self.console: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        page.set_default_timeout(timeout_ms)
        page.goto(url)
        try:
            page.wait_for_function("() => window.laser !== undefined")
            self.info: dict[str, Any] = page.evaluate("async () => await window.laser.ready")
        except Exception as exc:
            said = "; ".join(self.console[-3:])
            raise BackendError(f"the page at {url} did not load its model: {str(exc).splitlines()[0][:300]}"
                               f"{'; the page said: ' + said[:400] if said else ''}") from exc

    def outside(self, origin: str) -> list[str]:
        """Requests to anywhere but ``origin`` (data: and blob: URLs stay inside the page)."""
        return [u for u in self.requests if not u.startswith((origin, "data:", "blob:"))]

    def evaluate(self, script: str, arg: Any = None) -> Any:
        return self.page.evaluate(script, arg)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``window.laser.run`` on numpy inputs (sent as bytes), numpy outputs back."""
        enc = {k: {"b64": base64.b64encode(np.ascontiguousarray(v).tobytes()).decode("ascii"),
                   "dtype": str(v.dtype), "dims": list(v.shape)} for k, v in feeds.items()}
        out = self.page.evaluate("async (f) => await window.laser.runEncoded(f)", enc)
        return {k: np.frombuffer(base64.b64decode(v["b64"]), dtype=_numpy_dtype(v["dtype"])).reshape(v["dims"])
                for k, v in out.items()}

    def screenshot(self, path: str | Path) -> Path:
        self.page.screenshot(path=str(path), full_page=True)
        return Path(path)

    def close(self) -> None:
        self.page.close()


def _numpy_dtype(ort_type: str) -> np.dtype:
    return np.dtype({"float16": "float16", "bool": "bool"}.get(ort_type, ort_type))
