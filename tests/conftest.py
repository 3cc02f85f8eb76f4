"""Shared fixtures. Caches and temp files go to a private directory per test session."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_TMP = tempfile.mkdtemp(prefix="laser-tests-")
# torch.compile / onnxruntime / matplotlib write caches on import: keep them out of $HOME.
os.environ.setdefault("XDG_CACHE_HOME", os.path.join(_TMP, "cache"))
os.environ.setdefault("MPLCONFIGDIR", os.path.join(_TMP, "mpl"))
os.environ["TMPDIR"] = os.path.join(_TMP, "tmp")
os.makedirs(os.environ["TMPDIR"], exist_ok=True)
tempfile.tempdir = None  # re-read TMPDIR


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def digits_artifact():
    import laser

    return laser.load("digits-cnn")


@pytest.fixture(scope="session")
def digits_test():
    from laser import data

    return data.load("digits", "test")
