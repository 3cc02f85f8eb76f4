"""laser import: ONNX -> laser, and ONNX -> PyTorch (onnx2torch) checked against onnxruntime, then pruned,
exported to ONNX again and reloaded; on small models and on PP-OCR's direction classifier."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from laser.artifact import Artifact
from laser.errors import ConfigError, NotFoundError

if importlib.util.find_spec("onnx2torch") is None:  # imported later, after laser's torchvision compat import
    pytest.skip("onnx2torch is not installed (pip install 'laser[import]')", allow_module_level=True)
PPOCR_WHEEL = "rapidocr-onnxruntime==1.4.4"
PPOCR_CLS = "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"


class Small(nn.Module):
    """Conv without bias + a separate bias Add (as Paddle exports), BN, ReLU, pooling, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bias = nn.Parameter(torch.randn(1, 16, 1, 1))
        self.bn = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 24, 3, padding=1)
        self.fc = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.conv(x) + self.bias))
        y = torch.relu(self.conv2(y)).mean((2, 3))
        return self.fc(y)


def _onnx(module: nn.Module, path: Path, shape: tuple[int, ...], dynamic_hw: bool = False) -> Path:
    torch.manual_seed(0)
    module.eval()
    axes = {0: "batch", 2: "h", 3: "w"} if dynamic_hw else {0: "batch"}
    torch.onnx.export(module, (torch.randn(1, *shape),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": axes, "y": {0: "batch"}}, dynamo=False)
    return path


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _small_pruned(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    from laser.compress.prune import Prune
    from laser.importer import import_model

    src = _onnx(Small(), tmp_path / "small.onnx", (1, 8, 8))
    art = import_model(src, to="torch").save(tmp_path / "t")
    parity = art.lineage[-1].results["parity"]
    assert parity["max_abs_diff"] < 1e-4 and parity["top1_agreement"] == 1.0
    assert art.lineage[-1].params["converter"] == "onnx2torch" and "onnx2torch" in art.lineage[-1].versions
    x = np.random.default_rng(1).standard_normal((3, 1, 8, 8)).astype(np.float32)
    with torch.inference_mode():  # rebuilt from the recorded graph + safetensors
        got = Artifact.open(tmp_path / "t").module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, _ort(src, x), atol=1e-4)
    pruned = Prune(ratio=0.5, round_to=1, data=None, progress=False)(Artifact.open(tmp_path / "t")).save(tmp_path / "p")
    r = pruned.lineage[-1].results
    assert r["params_after"] < 0.7 * r["params_before"], r
    with torch.inference_mode():  # the pruned bundle rebuilds: factory -> pruning transform -> weights
        pruned_out = Artifact.open(tmp_path / "p").module(torch.from_numpy(x)).numpy()
    assert pruned_out.shape == (3, 5)
    return src, tmp_path / "p", x, pruned_out


def test_onnx_to_torch_matches_rebuilds_and_prunes(tmp_path):
    _small_pruned(tmp_path)


@pytest.mark.slow
def test_pruned_import_exports_to_onnx_again(tmp_path):
    from laser.export import export

    _, pruned, x, want = _small_pruned(tmp_path)
    onnx_again = export(Artifact.open(pruned), to="onnx").save(tmp_path / "o")  # dynamo: see the README note
    np.testing.assert_allclose(_ort(onnx_again.model_file, x), want, atol=1e-4)


def test_import_as_onnx_fixes_dynamic_dims(tmp_path):
    from laser.importer import import_model

    src = _onnx(Small(), tmp_path / "dyn.onnx", (1, 8, 8), dynamic_hw=True)
    art = import_model(src, to="onnx", input_shape=(1, 12, 10), labels=tuple("abcde"))
    assert art.format == "onnx" and art.spec.inputs[0].shape == ("batch", 1, 12, 10)
    assert art.labels == tuple("abcde")
    assert import_model(src, to="onnx").spec.inputs[0].shape == ("batch", 1, "h", "w")  # stays dynamic
    probed = import_model(src, to="torch")  # torch needs example sizes: the smallest that runs
    assert probed.spec.inputs[0].shape == ("batch", 1, 16, 16)
    with pytest.raises(ConfigError, match="--input-shape 3,4 has 2 dims"):
        import_model(src, to="onnx", input_shape=(3, 4))


def test_import_bad_input_names_what_is_wrong(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from laser.importer import import_model

    with pytest.raises(NotFoundError, match="does not exist"):
        import_model(tmp_path / "nope.onnx")
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(ConfigError, match="cannot tell what"):
        import_model(tmp_path / "m.txt")
    node = helper.make_node("Einsum", ["a", "a"], ["b"], equation="ij,ij->ij")
    node2 = helper.make_node("DFT", ["b"], ["c"])
    graph = helper.make_graph([node, node2], "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "ops.onnx")
    with pytest.raises(ConfigError, match=r"no converter for these ops \(opset 17\): DFT"):
        import_model(tmp_path / "ops.onnx", to="torch")


@pytest.fixture(scope="module")
def ppocr_cls(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ppocr")
    r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(d), PPOCR_WHEEL],
                       capture_output=True, text=True, timeout=300)
    wheels = list(d.glob("rapidocr_onnxruntime-*.whl"))
    if r.returncode or not wheels:
        pytest.skip(f"cannot fetch {PPOCR_WHEEL} (offline?): {(r.stderr or '').strip()[-160:]}")
    with zipfile.ZipFile(wheels[0]) as z:
        (d / "cls.onnx").write_bytes(z.read(PPOCR_CLS))
    return d / "cls.onnx"


def test_ppocr_cls_to_torch_matches_onnxruntime(ppocr_cls, tmp_path):
    """The real model: PP-OCR's text-direction classifier -> torch, matching onnxruntime at its own input
    size 3x48x192 (parity at import, and again from the saved bundle on other inputs)."""
    from laser.cli.main import main

    assert main(["import", str(ppocr_cls), "--to", "torch", "--input-shape", "3,48,192", "-o", str(tmp_path / "t")]) == 0
    art = Artifact.open(tmp_path / "t")
    parity = art.lineage[-1].results["parity"]
    assert parity["max_abs_diff"] < 1e-4 and parity["top1_agreement"] == 1.0, parity
    x = np.random.default_rng(0).random((2, 3, 48, 192), dtype=np.float32)
    with torch.inference_mode():
        got = art.module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, _ort(ppocr_cls, x), atol=1e-4)


@pytest.mark.slow
def test_ppocr_cls_prune_and_back_to_onnx(ppocr_cls, tmp_path):
    """-> structured pruning (30 %) -> ONNX, which onnxruntime runs with the pruned torch outputs."""
    from laser.cli.main import main
    from laser.export import export

    assert main(["import", str(ppocr_cls), "--to", "torch", "--input-shape", "3,48,192", "-o", str(tmp_path / "t")]) == 0
    assert main(["prune", str(tmp_path / "t"), "--ratio", "0.3", "-o", str(tmp_path / "p")]) == 0
    pruned = Artifact.open(tmp_path / "p")
    r = pruned.lineage[-1].results
    assert r["macs_after"] < 0.8 * r["macs_before"], r
    x = np.random.default_rng(0).random((2, 3, 48, 192), dtype=np.float32)
    with torch.inference_mode():
        want = pruned.module(torch.from_numpy(x)).numpy()
    onnx_again = export(pruned, to="onnx").save(tmp_path / "o")
    np.testing.assert_allclose(_ort(onnx_again.model_file, x), want, atol=1e-4)


def test_cli_import_bad_source_is_one_line(tmp_path, capsys):
    from laser.cli.main import main

    (tmp_path / "m.txt").write_bytes(b"TFL3")
    assert main(["import", str(tmp_path / "m.txt"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot tell what" in err and ".tflite" in err, err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_cli_import_reads_preprocessing_from_json_or_toml(tmp_path, capsys):
    import json

    from laser.cli.main import main

    src = _onnx(Small(), tmp_path / "small.onnx", (1, 8, 8))
    (tmp_path / "pre.toml").write_text('type = "image"\nsize = [8, 8]\nmean = [0.5]\nstd = [0.25]\n')
    assert main(["import", str(src), "--preprocessing", str(tmp_path / "pre.toml"), "-o", str(tmp_path / "t")]) == 0
    man = json.loads((tmp_path / "t" / "laser.json").read_text())
    assert man["preprocessing"] == {"type": "image", "size": [8, 8], "mean": [0.5], "std": [0.25]}
    (tmp_path / "bad.json").write_text("type = 'image'")
    assert main(["import", str(src), "--preprocessing", str(tmp_path / "bad.json"), "-o", str(tmp_path / "b")]) == 2
    assert "is not JSON" in capsys.readouterr().err and not (tmp_path / "b").exists()
