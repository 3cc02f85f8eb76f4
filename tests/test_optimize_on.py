"""``laser optimize --on ssh://``: digits-cnn candidates measured on the throwaway OpenSSH device of tests/ssh_device.py
(this machine's python, reached over SSH): the figures are the device's, the reference is the FP32 ONNX model
there, formats the device cannot run are listed as skipped, and a bad device fails in one line before anything
is written. The same on the emulated ARM64 device is in the slow suite."""

from __future__ import annotations

import json
import platform

import pytest

import ssh_device
from laser.cli.main import main
from test_ssh import arm64_device, arm64_root  # noqa: F401 - the emulated ARM64 device fixtures

BASE = "none · onnx · ssh:onnxruntime"


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    d = ssh_device.Device(tmp_path_factory.mktemp("ssh-device"))
    yield d
    d.stop()


def optimize_on(monkeypatch, dev, kind, out, *extra):
    monkeypatch.setenv("LASER_SSH_OPTS", dev.options(kind))
    return main(["optimize", "digits-cnn", "--on", dev.url, "--identity", str(dev.key), "--recipes", "none,int8-static",
                 "--backends", "onnxruntime", "--quick", "--no-progress", "-o", str(out), *extra])


def check_measured_on(report, dev, arch):
    assert report["hardware"]["device"] == dev.url and report["hardware"]["cpu"]["arch"] == arch
    assert report["device"]["url"] == dev.url and report["device"]["baseline"].startswith(f"FP32 ONNX on {dev.url}")
    by_name = {c["name"]: c for c in report["candidates"]}
    assert by_name[BASE]["status"] == "measured" and by_name[BASE]["parent"] is None  # the reference
    int8 = by_name["int8-static · onnx · ssh:onnxruntime"]
    assert int8["status"] == "measured" and int8["parent"] == BASE
    assert int8["speedup_vs_eager"] == int8["speedup_vs_parent"]  # "× eager" is × the FP32 ONNX model there
    winner = by_name[report["winner"]]
    assert winner["backend"] == "ssh:onnxruntime" and winner["final"]
    entry = next(a for a in report["artifacts"] if a["label"] == report["winner"])
    assert entry["runner"]["device"] == dev.url and entry["runner"]["arch"] == arch
    assert "on the device" in entry["latency"]["method"]
    assert entry["accuracy"]["top1"] > 0.9  # computed from the outputs the device sent back
    assert report["finals"] and f"side by side on {dev.url}" in report["finals"]["method"]
    assert f"speed-ups vs FP32 ONNX on {dev.url}" in report["verdict"]
    assert any(n.startswith("doctor: skipped under --on") for n in report["notes"])
    assert dev.leftovers() == []
    return entry


def test_optimize_on_device_measures_there_against_fp32_onnx(monkeypatch, capsys, device, tmp_path):
    code = optimize_on(monkeypatch, device, "x86", tmp_path / "out", "--formats", "onnx,torch")
    out, err = capsys.readouterr()
    assert code in (0, 3), err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    entry = check_measured_on(report, device, platform.machine())
    assert entry["figures"]["latency.p50_ms"]["kind"] == "measured" and not report["device"]["emulated"]
    skipped = {c["name"]: c["error"] for c in report["candidates"] if c["status"] == "skipped"}
    assert "does not run on a device" in skipped["none · torch · ssh"]  # PyTorch eager runs here only
    assert "vs ONNX FP32" in out and device.url in (tmp_path / "out" / "report.html").read_text()


@pytest.mark.parametrize("case, expected", [("unreachable", "cannot reach"), ("noruntime", "has neither onnxruntime")])
def test_bad_device_fails_in_one_line_before_anything_is_written(monkeypatch, capsys, device, tmp_path, case, expected):
    if case == "unreachable":
        monkeypatch.setattr(device, "port", ssh_device._free_port())
    code = optimize_on(monkeypatch, device, "x86" if case == "unreachable" else case, tmp_path / "out")
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "out").exists(), list((tmp_path / "out").rglob("*"))
    assert device.leftovers() == []


def test_target_ssh_is_mobile_on_the_device_and_two_devices_are_refused(capsys, tmp_path):
    from laser.optimize import device as on_device
    from laser.optimize.targets import split, target

    assert split("ssh://pi@edge:2222", None) == ("mobile", "ssh://pi@edge:2222")
    code = main(["optimize", "digits-cnn", "--target", "ssh://pi@edge", "--on", "ssh://pi@other", "-o", str(tmp_path / "o")])
    assert code == 2 and "name two devices" in capsys.readouterr().err and not (tmp_path / "o").exists()
    dev = on_device.Device("ssh://pi@edge", None, {"cpu": {"arch": "aarch64"}},
                           {"onnxruntime": "1.20.0", "openvino": None, "executorch": None})
    planned, skipped = on_device.plan(dev, ["none", "int8-static", "int8-pt2e"], ["ort", "executorch"], None, "torch")
    assert [(c.recipe, c.format, c.backend) for c in planned] == [
        ("none", "onnx", "ssh:onnxruntime"), ("none", "ort", "ssh:onnxruntime"), ("int8-static", "ort", "ssh:onnxruntime")]
    assert {(c.recipe, c.format) for c in skipped} == {("none", "executorch"), ("int8-pt2e", "executorch")}
    assert all("has no executorch" in why and "pip install executorch" in why for why in skipped.values())
    mobile = target("mobile")  # the winner is a .ort or .pte on the device, never the FP32 ONNX reference
    assert mobile.deployable("ort", "ssh:onnxruntime") and not mobile.deployable("onnx", "ssh:onnxruntime")


@pytest.mark.slow
def test_optimize_on_the_emulated_arm64_device_labels_every_timing_emulated(monkeypatch, capsys, arm64_device,  # noqa: F811
                                                                            tmp_path):
    code = optimize_on(monkeypatch, arm64_device, "arm64", tmp_path / "out", "--formats", "onnx")
    err = capsys.readouterr().err
    assert code in (0, 3), err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    entry = check_measured_on(report, arm64_device, "aarch64")
    assert report["device"]["emulated"] and report["hardware"]["emulated"]
    assert all(a["figures"]["latency.p50_ms"]["kind"] == "emulated" for a in report["artifacts"])
    assert entry["backend"] == "ssh:onnxruntime:emulated"
    assert "EMULATED" in report["verdict"] and report["finals"]["method"].startswith("emulated")
