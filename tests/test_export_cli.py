"""`laser export`, `laser run`, `laser diff` end to end on digits-cnn."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from laser.cli.main import main


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    assert main(["export", "digits-cnn", "--to", "onnx", "-o", f"{out}/", "--data", "digits"]) == 0
    return out / "digits-cnn-onnx"


@pytest.fixture(scope="module")
def digits():
    from laser import data

    return data.digits("test")


def test_export_writes_a_verified_bundle_inside_an_output_directory(bundle):
    manifest = json.loads((bundle / "laser.json").read_text())
    assert manifest["format"] == "onnx" and "model.onnx" in manifest["files"]
    step = manifest["lineage"][-1]
    assert step["op"] == "export" and step["results"]["verified"] is True
    assert "digits: 64 samples" in step["results"]["validation"]["inputs"]


def test_export_prints_exporter_and_validation_summary(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "export", "digits-cnn", "--to", "onnx", "--exporter", "legacy", "-o", tmp_path / "b")
    assert code == 0
    assert "exported digits-cnn to onnx with legacy, opset " in out and str(tmp_path / "b") in out
    assert "validation against torch: passed (logits: max abs" in out


def test_export_no_verify_says_nothing_was_checked(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "export", "digits-cnn", "--to", "torchscript", "--no-verify", "-o", tmp_path / "ts")
    assert code == 0 and "NOT VERIFIED" in out and "deprecated upstream" in out
    manifest = json.loads((tmp_path / "ts" / "laser.json").read_text())
    assert manifest["lineage"][-1]["results"]["verified"] is False


def test_export_json_reports_the_exporter_path(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "export", "digits-cnn", "--to", "ort", "--exporter", "legacy", "-o", tmp_path / "o",
                           "--json")
    d = json.loads(out)
    assert code == 0 and d["format"] == "ort" and d["verified"] is True


def test_export_of_an_onnx_bundle_to_onnx_is_a_one_line_error(capsys, bundle):
    code, out, err = run_cli(capsys, "export", bundle, "--to", "onnx", "-o", bundle.parent / "again")
    assert code != 0 and out == ""
    assert err.startswith("laser export: error:") and "starts from a torch artifact" in err and err.count("\n") == 1


def test_run_npy_prints_top_k_labels(capsys, bundle, digits, tmp_path):
    images, labels = digits
    np.save(tmp_path / "x.npy", images[:3])
    code, out, _ = run_cli(capsys, "run", bundle, "--input", tmp_path / "x.npy", "--backend", "onnxruntime",
                           "--top-k", "2")
    assert code == 0 and "digits-cnn on onnxruntime" in out
    lines = [ln for ln in out.splitlines() if ln.strip().startswith("sample")]
    assert len(lines) == 3
    assert [ln.split(": ")[1].split()[0] for ln in lines] == [str(v) for v in labels[:3]]


def test_run_npz_writes_outputs_with_o(capsys, bundle, digits, tmp_path):
    np.savez(tmp_path / "x.npz", input=digits[0][:4].astype(np.float64))  # float64 is cast to the spec's float32
    code, out, _ = run_cli(capsys, "run", bundle, "--input", tmp_path / "x.npz", "-o", tmp_path / "y.npz", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["outputs"]["logits"]["shape"] == [4, 10] and "auto_choice" in d
    with np.load(tmp_path / "y.npz") as z:
        assert z["logits"].shape == (4, 10)


def test_run_image_is_preprocessed_as_the_spec_says(capsys, bundle, digits, tmp_path):
    images, labels = digits
    pixels = ((images[0, 0] * 0.5 + 0.5) * 255).astype(np.uint8)  # undo the normalisation: light ink on dark
    Image.fromarray(pixels).resize((32, 32), Image.NEAREST).save(tmp_path / "digit.png")
    code, out, _ = run_cli(capsys, "run", bundle, "--input", tmp_path / "digit.png", "--backend", "openvino",
                           "--top-k", "1", "--json")
    assert code == 0
    assert json.loads(out)["top_k"][0][0]["label"] == str(labels[0])


@pytest.mark.parametrize("name, content, match", [
    ("x.txt", b"1 2 3", "use .npy, .npz or an image"),
    ("x.npz", None, "needs \\['input'\\]"),
])
def test_run_bad_inputs_are_one_line_errors(capsys, bundle, tmp_path, name, content, match):
    path = tmp_path / name
    if content is None:
        np.savez(path, a=np.zeros((1, 1, 8, 8), np.float32), b=np.zeros(3))
    else:
        path.write_bytes(content)
    code, _, err = run_cli(capsys, "run", bundle, "--input", path)
    assert code != 0 and err.count("\n") == 1
    assert re.search(match, err)


def test_diff_exits_zero_when_no_layer_diverges(capsys, bundle):
    code, out, _ = run_cli(capsys, "diff", "digits-cnn", bundle)
    assert code == 0 and "no layer diverges beyond tolerance" in out and "classifier" in out


def test_diff_exits_one_and_names_the_first_divergent_layer(capsys, bundle, tmp_path):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(bundle / "model.onnx"))
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    for init in model.graph.initializer:
        if init.name == gemm.input[1]:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
    onnx.save(model, str(tmp_path / "bad.onnx"))
    code, out, _ = run_cli(capsys, "diff", "digits-cnn", tmp_path / "bad.onnx", "--json")
    d = json.loads(out)
    assert code == 1 and d["first_divergent"]["layer"] == "classifier"


class SignBranch(torch.nn.Module):
    """Branches on the input's value: torch.export refuses it, the legacy tracer freezes one branch."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else self.fc(-x)


def sign_branch():
    return SignBranch()


def test_failed_parity_keeps_the_onnx_for_laser_diff(capsys, tmp_path):
    # pytest puts tests/ on sys.path, so this module's factory is importable by name
    code, out, err = run_cli(capsys, "export", "test_export_cli:sign_branch", "--random-weights", "--input-shape", "4",
                             "-o", tmp_path / "sb")
    assert code != 0 and out == "" and err.count("\n") == 1
    assert "does not match its parent" in err and "output 'logits'" in err
    assert f"kept at {tmp_path / 'sb-failed'}" in err and (tmp_path / "sb-failed" / "model.onnx").is_file()
    assert not (tmp_path / "sb").exists()
