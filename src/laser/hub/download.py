"""Fetch weight files into a cache: sha256-checked, resumable, atomic, with a progress bar.

- Cache directory: ``$LASER_CACHE``, else ``$XDG_CACHE_HOME/laser/weights``, else ``~/.cache/laser/weights``.
- Atomic: bytes go to ``NAME.part``; only a complete file whose hash matches is renamed to ``NAME``,
  so a half-written or corrupt file is never used. A lock file serialises concurrent downloads.
- Resumable: an interrupted transfer keeps ``NAME.part``; the next attempt asks for the rest with an
  HTTP ``Range`` header (and starts over if the server ignores it).
- Offline (``LASER_OFFLINE=1``, or no network): a clear "not cached; put the file at PATH" error.

Hashes: a card's ``sha256`` is either the full hex digest or a prefix of it. torchvision publishes only
the first 8 hex digits, in the file name (``resnet18-f37072fd.pth``), and torch.hub checks exactly that
prefix; laser does the same, and records the full digest of what it downloaded in ``NAME.sha256``, which
later uses check. With no published hash at all (``sha256=None``) the first download is trusted and
its digest recorded: the file is then protected against later corruption, not against a bad source.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from laser.errors import ArtifactError, ConfigError, NotFoundError

log = logging.getLogger(__name__)
CHUNK = 1 << 16  # bytes per read


@dataclass(frozen=True)
class Remote:
    """One downloadable file: URL + the sha256 known for it (full digest, a prefix, or None)."""

    url: str
    sha256: str | None = None

    def __post_init__(self) -> None:
        if self.sha256 is not None:
            h = self.sha256.lower()
            if len(h) < 8 or len(h) > 64 or any(c not in "0123456789abcdef" for c in h):
                raise ConfigError(f"sha256 must be 8 to 64 hex digits (a digest or its prefix), got {self.sha256!r}")
            object.__setattr__(self, "sha256", h)

    @property
    def filename(self) -> str:
        return Path(urlparse(self.url).path).name or "download"

    @property
    def hash_note(self) -> str:
        if self.sha256 is None:
            return "no published sha256 (trusted on first download, then checked)"
        if len(self.sha256) < 64:
            return f"sha256 prefix {self.sha256} (the {len(self.sha256)} hex digits the publisher gives)"
        return f"sha256 {self.sha256}"


def cache_dir() -> Path:
    if os.environ.get("LASER_CACHE"):
        return Path(os.environ["LASER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "laser" / "weights"


def offline() -> bool:
    return os.environ.get("LASER_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached_path(remote: Remote, cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / remote.filename


def fetch(remote: Remote, *, cache: Path | None = None, progress: bool = True, retries: int = 3,
          timeout: float = 30.0, hint: str = "pass --weights FILE (or --random-weights for structure-only work)") -> Path:
    """The local path of ``remote``, downloading it first when it is not cached (see the module doc)."""
    dest = cached_path(remote, cache)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest):
        if dest.is_file():
            digest = sha256_of(dest)
            _verify(remote, dest, digest, hint)
            if _recorded(dest) is None:  # placed there by hand: remember what was verified
                _record(dest, digest)
            return dest
        if offline():
            raise NotFoundError(f"{remote.filename} is not cached (offline: LASER_OFFLINE is set); "
                                f"put the file at {dest} or {hint}")
        part = dest.with_name(dest.name + ".part")
        for attempt in range(retries + 1):
            try:
                _transfer(remote.url, part, progress=progress, timeout=timeout, hint=hint)
                break
            except _Interrupted as exc:
                if attempt == retries:
                    raise NotFoundError(f"download of {remote.url} was interrupted ({exc}) after "
                                        f"{part.stat().st_size if part.exists() else 0} bytes; run again to resume "
                                        f"(partial file kept at {part}), or put the file at {dest} or {hint}") from exc
                log.warning("download of %s interrupted (%s); resuming", remote.url, exc)
        digest = sha256_of(part)
        try:
            _verify(remote, part, digest, hint)
        except ArtifactError:
            part.unlink(missing_ok=True)  # corrupt bytes must not be resumed from
            raise
        os.replace(part, dest)  # atomic: dest is either absent or complete and verified
        _record(dest, digest)
        return dest


class _Interrupted(Exception):
    """The connection dropped mid-body; the .part file holds what arrived."""


def _transfer(url: str, part: Path, *, progress: bool, timeout: float, hint: str) -> None:
    from tqdm.auto import tqdm

    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # range beyond the end: the .part is unusable, start over
            part.unlink()
            return _transfer(url, part, progress=progress, timeout=timeout, hint=hint)
        raise NotFoundError(f"{url} answered HTTP {exc.code} {exc.reason}; not cached; put the file at "
                            f"{part.with_suffix('')} or {hint}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NotFoundError(f"cannot reach {url} ({reason}); not cached; put the file at "
                            f"{part.with_suffix('')} or {hint} (without network, set LASER_OFFLINE=1)") from exc
    with response:
        resumed = response.status == 206
        mode = "ab" if resumed else "wb"  # a 200 answer to a Range request is the whole file
        start = have if resumed else 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        received = 0
        with open(part, mode) as f, tqdm(total=total, initial=start, unit="B", unit_scale=True,
                                         desc=part.name.removesuffix(".part"), disable=not progress) as bar:
            try:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    f.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (TimeoutError, http.client.IncompleteRead, ConnectionError) as exc:
                f.flush()
                raise _Interrupted(type(exc).__name__) from exc
        if length is not None and received < int(length):
            raise _Interrupted(f"got {received} of {length} bytes")


def _verify(remote: Remote, path: Path, digest: str, hint: str) -> None:
    """Check a finished download (``NAME.part``) or a cached file against the known hash."""
    downloaded = path.suffix == ".part"
    if remote.sha256 is not None and not digest.startswith(remote.sha256):
        what = "the download was deleted; check the URL" if downloaded else "replace or delete that file"
        raise ArtifactError(f"sha256 of {path} is {digest}, expected {remote.hash_note}; {what} "
                            f"({remote.url}) or {hint}")
    recorded = _recorded(path.with_name(path.name.removesuffix(".part")))
    if not downloaded and recorded and recorded != digest:
        raise ArtifactError(f"{path} changed since it was downloaded (sha256 {digest}, recorded {recorded}); "
                            f"delete it to download it again, or {hint}")
    if remote.sha256 is None and downloaded:
        log.warning("%s has no published sha256; trusting this download (sha256 %s)", remote.filename, digest)


def _record(dest: Path, digest: str) -> None:
    side = dest.with_name(dest.name + ".sha256")
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(digest + "\n")
    os.replace(tmp, side)


def _recorded(dest: Path) -> str | None:
    side = dest.with_name(dest.name + ".sha256")
    return side.read_text().strip() if side.is_file() else None


@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    """One downloader per file across processes (two writers to one .part would corrupt it)."""
    with open(dest.with_name(dest.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
