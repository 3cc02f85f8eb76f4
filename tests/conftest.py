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


@pytest.fixture(scope="session")
def outlier_digits_artifact(digits_artifact):
    """digits-cnn with activation outliers: channels 0-7 after the first block are 1000-1875x larger, and
    the next conv's weights for them as much smaller. FP32 outputs are unchanged; per-tensor INT8
    activations of that tensor lose every other channel, so post-training quantization collapses
    (quantize and QAT tests)."""
    import copy

    import torch

    from laser.artifact import Artifact, Step

    module = copy.deepcopy(digits_artifact.module)
    bn, conv = module.features[0][1], module.features[1][0]
    scale = torch.ones(bn.num_features)
    scale[:8] = 1000 * (1 + torch.arange(8) / 8)
    with torch.no_grad():
        bn.weight.mul_(scale)
        bn.bias.mul_(scale)
        conv.weight.div_(scale[None, :, None, None])
    m = digits_artifact.manifest
    return Artifact.from_module(module, name="digits-outlier", task=m.task, spec=m.spec,
                                architecture=m.architecture, preprocessing=m.preprocessing, labels=m.labels,
                                lineage=m.lineage, step=Step("outlier", params={"channels": 8, "scale": "1000-1875"}))


@pytest.fixture(scope="session")
def outlier_digits_onnx(outlier_digits_artifact):
    from laser.export import export

    return export(outlier_digits_artifact, to="onnx")


# -- nothing left behind -------------------------------------------------------------------------
# Model files written into the source tree (the CWD of a test, or examples/) are files a user would
# find littering their project: fail the run if any appear.
_ARTEFACTS = ("*.onnx", "*.data", "*.ort", "*.pt", "*.safetensors", "*.engine")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _artefacts() -> set[str]:
    import subprocess

    try:
        out = subprocess.run(["git", "ls-files", "--others", "--exclude-standard", "--", *_ARTEFACTS],
                             cwd=_REPO, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return set(out.stdout.split()) if out.returncode == 0 else set()


_BEFORE = _artefacts()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    left = sorted(_artefacts() - _BEFORE)
    if left:
        print(f"\nERROR: the tests left model files in the source tree: {left}")
        session.exitstatus = 1
