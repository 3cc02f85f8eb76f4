"""``laser run/bench --on ssh://``: digits-cnn ONNX on a throwaway OpenSSH device on 127.0.0.1 (tests/ssh_device.py):
outputs equal this machine's, the report carries the device's fingerprint, bad devices fail in one line, and
nothing is left on the device. The emulated ARM64 device (qemu) is in the slow suite."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import laser
import ssh_device
from laser.cli.main import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    d = ssh_device.Device(tmp_path_factory.mktemp("ssh-device"))
    yield d
    d.stop()


@pytest.fixture(scope="module")
def digits_onnx(digits_artifact, tmp_path_factory):
    return laser.export(digits_artifact, to="onnx", exporter="legacy").save(tmp_path_factory.mktemp("digits-onnx") / "digits-cnn-onnx")


@pytest.fixture(scope="module")
def digit_npy(digits_test, tmp_path_factory):
    path = tmp_path_factory.mktemp("digit") / "digit.npy"
    np.save(path, digits_test.take(3).inputs[0])
    return path


def on_device(monkeypatch, capsys, device, kind, *argv):
    monkeypatch.setenv("LASER_SSH_OPTS", device.options(kind))
    code = main([*argv, "--on", device.url, "--identity", str(device.key)])
    out, err = capsys.readouterr()
    return code, out, err


def local_outputs(art, npy):
    with laser.run(art, backend="onnxruntime") as r:
        return r({art.spec.inputs[0].name: np.load(npy)})


def test_run_on_device_equals_local_outputs(monkeypatch, capsys, device, digits_onnx, digit_npy, tmp_path):
    code, out, err = on_device(monkeypatch, capsys, device, "x86", "run", str(digits_onnx.location), "--input",
                               str(digit_npy), "--json", "-o", str(tmp_path / "out.npz"))
    assert code == 0, err
    result = json.loads(out)
    assert result["backend"]["backend"] == "ssh:onnxruntime"
    assert result["backend"]["arch"] == platform.machine() and not result["backend"]["emulated"]
    assert result["local_parity"]["within_tolerance"] is True
    want = local_outputs(digits_onnx, digit_npy)
    with np.load(tmp_path / "out.npz") as got:
        for name, value in want.items():
            tol = digits_onnx.spec.tolerance
            np.testing.assert_allclose(got[name], value, atol=tol.atol, rtol=tol.rtol)
    assert device.leftovers() == []


def test_run_on_device_prints_device_and_parity(monkeypatch, capsys, device, digits_onnx, digit_npy):
    code, out, err = on_device(monkeypatch, capsys, device, "x86", "run", str(digits_onnx.location), "--input",
                               str(digit_npy))
    assert code == 0, err
    assert "on ssh:onnxruntime" in out and f"device {device.url}: {platform.machine()}" in out
    assert "within the spec tolerance" in out


def test_bench_on_device_reports_device_timings_and_fingerprint(monkeypatch, device, digits_onnx, digits_artifact,
                                                                tmp_path):
    monkeypatch.setenv("LASER_SSH_OPTS", device.options("x86"))
    report = laser.measure(digits_onnx, data="digits", reference=digits_artifact, repeats=1, max_seconds=0.1,
                           warmup=2, warmup_seconds=0, min_iters=5, peak=False, on=device.url,
                           identity=str(device.key))
    entry = report.artifacts[0]
    assert entry["backend"] == "ssh:onnxruntime" and entry["runner"]["device"] == device.url
    assert report.hardware["device"] == device.url and report.hardware["cpu"]["arch"] == platform.machine()
    assert report.hardware["runtimes"]["onnxruntime"]
    assert "on the device" in entry["latency"]["method"] and entry["figures"]["latency.p50_ms"]["kind"] == "measured"
    assert entry["latency"]["iters"] >= 5 and entry["latency"]["p50_ms"] > 0
    assert entry["accuracy"]["top1_agreement"] == 1.0  # the device's answers are the torch parent's on every sample
    assert f"hardware: device {device.url}" in report.to_markdown()
    page = report.write_html(tmp_path / "report")
    assert device.url in page.read_text() and "onnxruntime " in page.read_text()
    assert device.leftovers() == []


@pytest.mark.parametrize("case, expected", [
    ("noruntime", "has no onnxruntime in its python3: run `python3 -m pip install onnxruntime numpy` on the device"),
    ("nonumpy", "has no numpy in its python3: run `python3 -m pip install numpy` on the device"),
    ("nopython", "has no python3"),
    ("refused", "refused the key"),
    ("unreachable", "cannot reach"),
    ("hostkey", "host key is not trusted"),
])
def test_bad_device_is_one_line(monkeypatch, capsys, device, digits_onnx, digit_npy, case, expected):
    kind = case if case in ("noruntime", "nonumpy", "nopython") else "x86"
    monkeypatch.setenv("LASER_SSH_OPTS", device.options(kind).replace(
        str(device.root / "known_hosts"), os.devnull if case == "hostkey" else str(device.root / "known_hosts")))
    url = f"ssh://{device.user}@127.0.0.1:{ssh_device._free_port()}" if case == "unreachable" else device.url
    key = device.root / ("other_key" if case == "refused" else "client_key")
    code = main(["run", str(digits_onnx.location), "--input", str(digit_npy), "--on", url, "--identity", str(key)])
    out, err = capsys.readouterr()
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert device.leftovers() == []


def test_a_device_that_never_answers_is_stopped_in_bounded_time(monkeypatch, device, digits_onnx):
    import time

    from laser.runtime import ssh
    from laser.runtime.ssh import DeviceError

    monkeypatch.setattr(ssh, "CONNECT_TIMEOUT_S", 2)
    monkeypatch.setenv("LASER_SSH_OPTS", device.options("hang"))
    monkeypatch.setenv("LASER_SSH_TIMEOUT", "1")
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match="no answer from the device in time .* LASER_SSH_TIMEOUT"):
        laser.run(digits_onnx, backend="ssh", on=device.url, identity=str(device.key))
    assert time.monotonic() - t0 < 30  # deadlines, not a hang


def test_device_cleans_up_when_the_connection_dies(monkeypatch, device, digits_onnx):
    import time

    monkeypatch.setenv("LASER_SSH_OPTS", device.options("x86"))
    runner = laser.run(digits_onnx, backend="ssh", on=device.url, identity=str(device.key))
    assert len(device.leftovers()) == 1  # the bundle's temp dir on the device
    runner._proc.kill()  # as if laser were killed: no goodbye reaches the device
    deadline = time.monotonic() + 10
    while device.leftovers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert device.leftovers() == []  # the device runner saw its session end, removed its dir and exited
    runner.close()


def test_bad_target_url_is_a_config_error(capsys, digits_onnx, digit_npy):
    code = main(["run", str(digits_onnx.location), "--input", str(digit_npy), "--on", "pi.local"])
    assert code == 2 and "--on takes ssh://[USER@]HOST[:PORT]" in capsys.readouterr().err


# -- the emulated ARM64 device (slow: builds a Debian arm64 root once, ~2 minutes, then cached) ---------------------

@pytest.fixture(scope="module")
def arm64_root():
    missing = [tool for tool, pkg in (("debootstrap", "debootstrap"), ("qemu-aarch64-static", "qemu-user-static"))
               if not shutil.which(tool)]
    if missing:
        pytest.skip(f"{' and '.join(missing)} missing: apt-get install -y debootstrap qemu-user-static")
    root = Path(os.environ.get("LASER_ARM64_ROOT") or Path.home() / ".cache" / "laser" / "arm64-root")
    subprocess.run(["sh", str(REPO / "scripts" / "arm64-device.sh"), str(root)], check=True, timeout=1800,
                   stdout=subprocess.DEVNULL, env={**os.environ, "PYTHON": sys.executable})  # its pip downloads wheels
    return root


@pytest.fixture(scope="module")
def arm64_device(arm64_root, tmp_path_factory):
    d = ssh_device.Device(tmp_path_factory.mktemp("arm64-device"), arm64_root)
    yield d
    d.stop()


@pytest.mark.slow
def test_arm64_device_outputs_match_x86(monkeypatch, capsys, arm64_device, digits_onnx, digit_npy, tmp_path):
    code, out, err = on_device(monkeypatch, capsys, arm64_device, "arm64", "run", str(digits_onnx.location),
                               "--input", str(digit_npy), "--json", "-o", str(tmp_path / "out.npz"))
    assert code == 0, err
    result = json.loads(out)
    assert result["backend"]["arch"] == "aarch64" and result["backend"]["emulated"]
    assert result["backend"]["backend"] == "ssh:onnxruntime:emulated"
    assert result["local_parity"]["within_tolerance"] is True
    want = local_outputs(digits_onnx, digit_npy)
    tol = digits_onnx.spec.tolerance
    with np.load(tmp_path / "out.npz") as got:
        for name, value in want.items():
            np.testing.assert_allclose(got[name], value, atol=tol.atol, rtol=tol.rtol)
    assert arm64_device.leftovers() == []


@pytest.mark.slow
def test_arm64_device_timings_are_labelled_emulated(monkeypatch, arm64_device, digits_onnx):
    monkeypatch.setenv("LASER_SSH_OPTS", arm64_device.options("arm64"))
    report = laser.measure(digits_onnx, repeats=1, max_seconds=0.5, warmup=2, warmup_seconds=0, min_iters=5,
                           peak=False, on=arm64_device.url, identity=str(arm64_device.key))
    entry = report.artifacts[0]
    assert report.hardware["cpu"]["arch"] == "aarch64" and report.hardware["emulated"]
    assert report.hardware["cpu"]["isa"] == []  # the host's x86 flags are not the emulated CPU's
    assert all(f["kind"] == "emulated" for k, f in entry["figures"].items() if k.startswith(("latency", "offline")))
    assert entry["latency"]["method"].startswith("emulated")
    table = report.to_markdown()
    assert "latency p50 [emulated]" in table and "EMULATED" in table and ":emulated" in table
    assert arm64_device.leftovers() == []
