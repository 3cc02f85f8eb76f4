"""Mobile and edge: ExecuTorch .pte (XNNPACK, FP32 and INT8) and ONNX Runtime's reduced-operator config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import laser
from laser.errors import BackendError, ConfigError, ExportError

pytest.importorskip("executorch.runtime")


@pytest.fixture(scope="module")
def pte(digits_artifact):
    return laser.export(digits_artifact, to="executorch", data="digits")


def test_pte_matches_eager_on_executorch_runtime(pte, digits_artifact, digits_test):
    from executorch.runtime import Runtime

    x = np.ascontiguousarray(digits_test.take(1).inputs[0])
    program = Runtime.get().load_program(str(pte.model_file))
    got = program.load_method("forward").execute([torch.from_numpy(x)])[0].numpy()
    with torch.inference_mode():
        want = digits_artifact.module(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() < 1e-4
    step = pte.lineage[-1].results
    assert step["verified"] and step["validation"]["passed"]
    assert step["validation"]["top1_samples"] >= 64  # the digits test samples were part of the check


def test_delegation_report_lists_xnnpack_partitions(pte, digits_artifact):
    report = pte.lineage[-1].results["delegation"]
    assert report["backend"] == "XnnpackBackend" and report["partitions"] >= 1
    assert report["portable_ops"] == 0 and report["delegated_fraction"] == 1.0
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in digits_artifact.module.modules())
    assert report["by_operator"]["convolution"]["delegated"] == convs


def test_executorch_backend_runs_the_bundle(pte, digits_test, tmp_path):
    saved = pte.save(tmp_path / "b")
    reopened = laser.Artifact.open(saved.location)
    with laser.run(reopened, backend="executorch", threads=1) as runner:
        x = np.ascontiguousarray(digits_test.take(1).inputs[0])
        out = runner({"input": x})
        assert out["logits"].shape == (1, 10)
        assert runner.describe()["delegate"] == "XNNPACK"
    with pytest.raises(BackendError, match="export it first"):
        laser.run(laser.load("digits-cnn"), backend="executorch")


def test_pte_is_timed_and_served_at_batch_1_only(pte, digits_artifact, digits_test, tmp_path):
    from laser.serve.repository import batchable, max_batch_size
    from laser.serve.settings import ModelSettings

    opened = laser.Artifact.open(pte.save(tmp_path / "pte").location)
    assert opened.spec.fixed_batch == 1  # read back from the manifest
    data = digits_test.take(40)
    report = laser.measure(opened, backends=["executorch"], data=data, batch_sizes=(1, 8), repeats=1, min_iters=3,
                           max_seconds=0.0, warmup=1, peak=False)
    entry = report.artifacts[0]
    assert [r["batch_size"] for r in entry["latency_sweep"]] == [1] and entry["latency_untimed_batches"] == [8]
    assert any("batch size(s) 8 not timed" in w for w in entry["warnings"])
    assert entry["accuracy"]["samples"] == 40  # evaluated in calls of batch 1
    with pytest.raises(BackendError, match="takes batch 1 only"):
        laser.measure(opened, backends=["executorch"], batch_sizes=(8,), repeats=1, min_iters=3, max_seconds=0.0,
                      peak=False)
    assert batchable(opened.spec) and max_batch_size(opened.spec, ModelSettings()) == 1
    with laser.run(opened, backend="executorch", threads=1) as runner:
        x = data.take(5).inputs[0]
        got = runner.in_steps({"input": np.ascontiguousarray(x)})["logits"]
    with torch.inference_mode():
        want = digits_artifact.module(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    assert got.shape == (5, 10) and np.abs(got - want).max() < 1e-4


def test_serve_admits_one_sample_per_request_to_a_pte(pte, digits_test):
    import httpx

    from laser.serve import Server

    x = np.ascontiguousarray(digits_test.take(2).inputs[0])

    def body(rows):
        return {"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32",
                            "data": rows.ravel().tolist()}]}

    with Server([pte], http_port=0, grpc_port=0, socket_port=0, max_batch_size=8) as server, \
            httpx.Client(base_url=server.http_url, timeout=30) as http:
        name = pte.name
        config = http.get(f"/v2/models/{name}/config").json()
        assert config["max_batch_size"] == 1 and config["input"][0]["dims"] == [1, 8, 8]
        ok = http.post(f"/v2/models/{name}/infer", json=body(x[:1]))
        assert ok.status_code == 200 and ok.json()["outputs"][0]["shape"] == [1, 10]
        two = http.post(f"/v2/models/{name}/infer", json=body(x))
        assert two.status_code == 400 and "dim 0 must be 1" in two.text


@pytest.mark.slow  # PT2E calibration + a second lowering: ~1 min on 2 cores
def test_int8_pte_carries_quantized_xnnpack_kernels(digits_artifact):
    q = laser.export(digits_artifact, to="executorch", quantize="int8", data="digits")
    step = q.lineage[-1].results
    assert step["quantization"]["method"] == "pt2e"
    assert step["validation"]["top1_agreement"] >= 0.99 and step["validation"]["samples"] >= 300
    assert abs(step["validation"]["accuracy_delta_pts"]) <= 1.0
    ops = step["delegation"]["by_operator"]
    assert any("quantize_per" in op for op in ops) and step["delegation"]["portable_ops"] == 0
    fp32 = laser.export(digits_artifact, to="executorch")
    assert q.model_file.stat().st_size < fp32.model_file.stat().st_size


def test_bad_options():
    from laser.export import Export

    with pytest.raises(ConfigError, match="quantize"):
        Export(to="onnx", quantize="int8")
    with pytest.raises(ConfigError, match="ONNX only"):
        Export(to="executorch", opset=17)


def test_data_dependent_control_flow_names_the_module_path_and_the_op():
    class Gate(torch.nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # a Python branch on a tensor's value: torch.export cannot trace it
                return x * 2
            return x - 1

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)
            self.body = torch.nn.Sequential(torch.nn.ReLU(), Gate())

        def forward(self, x):
            return self.body(self.conv(x)).flatten(1)

    from laser.export.executorch import export_executorch
    from laser.spec import ModelSpec

    spec = ModelSpec.from_dict({"inputs": [{"name": "input", "dtype": "float32", "shape": [1, 1, 8, 8]}],
                                "outputs": [{"name": "y", "dtype": "float32", "shape": [1, 144]}]})
    with pytest.raises(ExportError) as err:
        export_executorch(Net().eval(), spec, __import__("pathlib").Path("/nonexistent/m.pte"))
    text = str(err.value)
    assert "at body.1 (Gate.forward: `if x.sum() > 0:" in text and "op Tensor.__bool__" in text, text
    assert "0 ops delegated to XNNPACK" in text and "torch.where" in text and "\n" not in text
    assert err.value.site["module"] == "body.1"


def test_an_op_executorch_cannot_lower_is_named_with_its_module_path():
    class Histogram(torch.nn.Module):  # aten.histc is outside the Core ATen opset ExecuTorch compiles
        def forward(self, x):
            return torch.histc(x, bins=64).reshape(1, 64)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 1)
            self.head = torch.nn.Sequential(Histogram())

        def forward(self, x):
            return self.head(self.conv(x))

    from laser.export.executorch import export_executorch
    from laser.spec import ModelSpec

    spec = ModelSpec.from_dict({"inputs": [{"name": "input", "dtype": "float32", "shape": [1, 1, 8, 8]}],
                                "outputs": [{"name": "y", "dtype": "float32", "shape": [1, 64]}]})
    with pytest.raises(ExportError, match=r"could not lower Net: aten\.histc at head\.0; nothing was delegated "
                                          r"to XNNPACK \(0 of \d+ ops"):
        export_executorch(Net().eval(), spec, __import__("pathlib").Path("/nonexistent/m.pte"))


def test_untraceable_op_names_the_module():
    class Bad(torch.nn.Module):
        def forward(self, x):
            return torch.from_numpy(x.numpy() * 2)  # leaves the graph: torch.export cannot trace it

    from laser.export.executorch import export_executorch

    spec = laser.load("digits-cnn").spec
    with pytest.raises(ExportError, match="torch.export failed on Bad"):
        export_executorch(Bad(), spec, __import__("pathlib").Path("/nonexistent/m.pte"))


def test_ort_reduced_config_lists_exactly_the_graph_ops(digits_artifact, tmp_path):
    import onnx
    import onnxruntime as ort

    onnx_art = laser.export(digits_artifact, to="onnx")
    art = laser.export(onnx_art, to="ort")
    step = art.lineage[-1].results
    assert "required_operators.config" in art.files and "required_operators_and_types.config" in art.files
    listed = {op for ops in step["required_operators"].values() for op in ops}
    # the same optimisation, saved as ONNX this time: its node types are the graph the .ort holds
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(onnx_art.model_file), so, providers=["CPUExecutionProvider"],
                         disabled_optimizers=["NchwcTransformer"])
    graph_ops = {n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node}
    assert listed == graph_ops
    assert all("float" in t for t in step["required_types"].values())


def test_doctor_says_when_a_pte_falls_back_to_portable_kernels(pte, tmp_path):
    from laser.artifact import Artifact, Step
    from laser.doctor.checks import CHECKS
    from laser.doctor.facts import Facts
    from laser.export.executorch import export_executorch
    from laser.spec import ModelSpec

    class Cumsum(torch.nn.Module):  # XNNPACK has no cumsum: it stays on a portable kernel
        def forward(self, x):
            return x.flatten(1).cumsum(1)

    class ConvCumsum(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)
            self.head = torch.nn.Sequential(Cumsum())

        def forward(self, x):
            return self.head(self.conv(x))

    spec = ModelSpec.from_dict({"inputs": [{"name": "input", "dtype": "float32", "shape": [1, 1, 8, 8]}],
                                "outputs": [{"name": "y", "dtype": "float32", "shape": [1, 144]}]})
    info = export_executorch(ConvCumsum().eval(), spec, tmp_path / "m.pte")
    report = info["delegation"]
    assert report["portable_ops"] >= 1 and report["by_operator"]["convolution"]["delegated"] == 1
    assert {"op": "cumsum", "module": "head.0"} in report["portable_where"]  # the module path of the portable op
    child = Artifact.from_files({"model.pte": tmp_path / "m.pte"}, name="cc", task="other", format="executorch",
                                spec=spec, step=Step("export", results={"delegation": report}))
    finding = CHECKS["executorch-portable-fallback"](Facts(pte, child, "executorch", "executorch", 1.0, 1.0))
    assert finding is not None and "cumsum" in finding.evidence
    assert CHECKS["executorch-portable-fallback"](Facts(pte, pte, "executorch", "executorch", 1.0, 1.0)) is None


def test_edge_config_of_several_models_is_the_union_of_their_operators(tmp_path, capsys):
    """`laser edge-config A B -o DIR`: one reduced-build config holding every operator either model needs."""

    from laser.cli.main import main

    mlp = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=-1))
    torch.onnx.export(mlp, (torch.zeros(1, 4),), str(tmp_path / "mlp.onnx"), input_names=["x"], dynamo=False)
    assert main(["edge-config", "digits-cnn", str(tmp_path / "mlp.onnx"), "-o", str(tmp_path / "ops")]) == 0
    printed = capsys.readouterr().out
    assert "--include_ops_by_config" in printed and str(tmp_path / "ops") in printed
    lines = (tmp_path / "ops" / "required_operators.config").read_text().splitlines()
    ops = {op for line in lines if line and not line.startswith("#") for op in line.split(";")[-1].split(",")}
    assert {"Softmax", "MaxPool", "FusedConv"} <= ops, ops  # Softmax only from the MLP, the rest from digits-cnn
    assert sum(line.startswith("# - ") for line in lines) == 2  # generated from both models
