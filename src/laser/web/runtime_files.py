"""The onnxruntime-web files a site needs, from the npm package (pinned), installed once with npm.

``fetch_runtime()`` runs ``npm install onnxruntime-web@VERSION`` into a folder of this Python environment
(``<sys.prefix>/share/laser/web``), or of the user cache when that is not writable; ``runtime_dist()``
finds the package's ``dist/`` folder there (or in ``$LASER_WEB_RUNTIME``). The Makefile's set-up calls
``laser web --fetch-runtime``, so ``make test`` / ``make demo`` install it on a fresh machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from laser.errors import DependencyError

VERSION = "1.30.0"  # onnxruntime-web, pinned: the page, the op list and the tests are checked against it
PACKAGE = "onnxruntime-web"
# What a site copies from dist/: the WASM build (SIMD + threads) and the WebGPU build (with WASM inside).
FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm",
         "ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm")
WASM_FILES = FILES[:3]
FETCH_COMMAND = "laser web --fetch-runtime"


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "laser" / "web"


def install_dirs() -> list[Path]:
    """Where the runtime may be installed, in lookup order."""
    dirs = [Path(sys.prefix) / "share" / "laser" / "web", _cache_root()]
    if os.environ.get("LASER_WEB_RUNTIME"):
        dirs.insert(0, Path(os.environ["LASER_WEB_RUNTIME"]))
    return dirs


def _dist(root: Path) -> Path:
    return root / f"{PACKAGE}-{VERSION}" / "node_modules" / PACKAGE / "dist"


def runtime_dist() -> Path:
    """The ``dist/`` folder of the pinned onnxruntime-web, or a DependencyError with the command to fetch it."""
    for root in install_dirs():
        for dist in (root, _dist(root)):  # $LASER_WEB_RUNTIME may point at a dist/ folder itself
            if all((dist / f).is_file() for f in FILES):
                return dist
    raise DependencyError(f"onnxruntime-web {VERSION} (npm) is not installed; fetch it once with "
                          f"`{FETCH_COMMAND}` (runs `npm install {PACKAGE}@{VERSION}`; needs node and npm: "
                          "`apt-get install -y nodejs npm`)")


def fetch_runtime(quiet: bool = True) -> Path:
    """Install the pinned onnxruntime-web with npm (no-op when present); the ``dist/`` folder."""
    try:
        return runtime_dist()
    except DependencyError:
        pass
    npm = shutil.which("npm")
    if npm is None:
        raise DependencyError(f"npm is not installed; install Node.js and npm (`apt-get install -y nodejs npm`), "
                              f"then run `{FETCH_COMMAND}`")
    roots = install_dirs()[-2:]
    root = next((r for r in roots if _writable(r)), roots[-1])
    target = root / f"{PACKAGE}-{VERSION}"
    target.mkdir(parents=True, exist_ok=True)
    cmd = [npm, "install", "--prefix", str(target), "--no-save", "--no-audit", "--no-fund", "--ignore-scripts",
           "--loglevel=error", f"{PACKAGE}@{VERSION}"]
    try:
        done = subprocess.run(cmd, capture_output=quiet, text=True, timeout=600)
    except subprocess.TimeoutExpired as exc:
        raise DependencyError(f"`npm install {PACKAGE}@{VERSION}` took over 600 s; check the npm registry "
                              "can be reached, then run it again") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout or "").strip().splitlines()[-1:] if quiet else []
        raise DependencyError(f"`npm install {PACKAGE}@{VERSION}` failed (exit {done.returncode}"
                              f"{': ' + tail[0][:200] if tail else ''}); check the npm registry can be reached")
    return runtime_dist()


def _writable(root: Path) -> bool:
    probe = root
    while not probe.exists():
        probe = probe.parent
    return os.access(probe, os.W_OK)
