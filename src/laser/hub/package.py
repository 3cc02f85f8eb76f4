"""Weights that ship inside a pinned PyPI package: ``PackageFile("silero-vad", "6.2.3", "silero_vad/data/...")``.

Some publishers put their weights in a wheel rather than at a URL (rapidocr-onnxruntime ships PaddleOCR's
PP-OCRv4 ONNX files, silero-vad its VAD, facenet-pytorch MTCNN's state dicts). laser takes only the file,
never the package's code or its dependencies, with the same cache rules as URL weights:

1. cached (``CACHE/NAME``, full sha256 checked) -> that file;
2. the pinned version is installed in this Python -> copied from the installed package;
3. a wheel of that version already in ``CACHE/wheels`` -> extracted from it;
4. else (not offline) ``pip download --no-deps --only-binary :all: PACKAGE==VERSION`` into ``CACHE/wheels``
   (pip's own index settings apply, e.g. ``PIP_INDEX_URL``), then extracted.

The file is written beside and renamed only once its sha256 matches, so a wrong or partial file is never
used. Offline and not cached: "not cached; install PACKAGE==VERSION or put the file at PATH".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from laser.errors import ArtifactError, ConfigError, NotFoundError
from laser.hub.download import _locked, _record, cache_dir, offline, sha256_of


@dataclass(frozen=True)
class PackageFile:
    """One file inside a pinned PyPI package's wheel, with its full sha256."""

    package: str
    version: str
    path: str  # inside the wheel, e.g. "silero_vad/data/silero_vad.onnx"
    sha256: str

    def __post_init__(self) -> None:
        h = self.sha256.lower()
        if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
            raise ConfigError(f"a package file needs its full sha256 (64 hex digits), got {self.sha256!r}")
        object.__setattr__(self, "sha256", h)

    @property
    def filename(self) -> str:
        return Path(self.path).name

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def url(self) -> str:
        """Where the file comes from, as one line: ``pypi:PACKAGE==VERSION/PATH``."""
        return f"pypi:{self.requirement}/{self.path}"

    @property
    def hash_note(self) -> str:
        return f"sha256 {self.sha256}"


def _hint(pf: PackageFile, dest: Path) -> str:
    return (f"install {pf.requirement} (`pip install --no-deps {pf.requirement}`), or put the file "
            f"{pf.path} from its wheel at {dest}")


def fetch_package_file(pf: PackageFile, *, cache: Path | None = None, progress: bool = True) -> Path:
    """The local path of ``pf`` (see the module doc for where it is looked for)."""
    dest = (cache or cache_dir()) / pf.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest):
        if dest.is_file():
            digest = sha256_of(dest)
            if digest != pf.sha256:
                raise ArtifactError(f"sha256 of {dest} is {digest}, expected {pf.sha256} ({pf.url}); delete that "
                                    f"file to fetch it again, or {_hint(pf, dest)}")
            return dest
        part = dest.with_name(dest.name + ".part")
        try:
            _extract(pf, part, dest, progress)
            digest = sha256_of(part)
            if digest != pf.sha256:
                raise ArtifactError(f"{pf.path} in {pf.requirement} has sha256 {digest}, expected {pf.sha256}; "
                                    f"the package on the index differs from the one the card was made from; "
                                    f"{_hint(pf, dest)}")
            os.replace(part, dest)
        finally:
            part.unlink(missing_ok=True)
        _record(dest, digest)
        return dest


def _extract(pf: PackageFile, part: Path, dest: Path, progress: bool) -> None:
    installed = _installed(pf)
    if installed is not None:
        shutil.copyfile(installed, part)
        return
    wheel = _cached_wheel(pf)
    if wheel is None:
        if offline():
            raise NotFoundError(f"{pf.filename} is not cached (offline: LASER_OFFLINE is set); {_hint(pf, dest)}")
        wheel = _download_wheel(pf, dest, progress)
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(pf.path) as src, open(part, "wb") as out:
            shutil.copyfileobj(src, out)
    except KeyError:
        raise NotFoundError(f"{wheel.name} holds no {pf.path}; {_hint(pf, dest)}") from None
    except zipfile.BadZipFile:
        wheel.unlink(missing_ok=True)
        raise ArtifactError(f"{wheel} is not a readable wheel (deleted it); run again to download it, or "
                            f"{_hint(pf, dest)}") from None


def _installed(pf: PackageFile) -> Path | None:
    """The file inside the pinned version of the package when it is installed in this Python."""
    try:
        dist = metadata.distribution(pf.package)
    except metadata.PackageNotFoundError:
        return None
    if dist.version != pf.version:
        return None
    path = Path(str(dist.locate_file(pf.path)))
    return path if path.is_file() else None


def wheels_dir() -> Path:
    return cache_dir() / "wheels"


def _cached_wheel(pf: PackageFile) -> Path | None:
    stem = f"{pf.package.replace('-', '_').lower()}-{pf.version}-"
    found = sorted(p for p in wheels_dir().glob("*.whl") if p.name.lower().startswith(stem))
    return found[0] if found else None


def _download_wheel(pf: PackageFile, dest: Path, progress: bool) -> Path:
    wheels_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheels_dir(), prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "-d", tmp, pf.requirement]
        if not progress:
            cmd.insert(4, "--quiet")
        try:
            done = subprocess.run(cmd, capture_output=not progress, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NotFoundError(f"pip download {pf.requirement} failed ({exc}); not cached; {_hint(pf, dest)}") from exc
        found = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not found:
            last = (done.stderr or "").strip().splitlines()[-1:] if done.stderr else []
            why = last[0][:200] if last else f"exit status {done.returncode}"
            raise NotFoundError(f"pip download {pf.requirement} failed ({why}); not cached; {_hint(pf, dest)} "
                                "(without network, set LASER_OFFLINE=1)")
        wheel = wheels_dir() / found[0].name
        os.replace(found[0], wheel)  # complete wheels only: pip wrote it in the temporary folder
    return wheel


__all__ = ["PackageFile", "fetch_package_file", "wheels_dir"]
