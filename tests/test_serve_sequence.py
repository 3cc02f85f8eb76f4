"""Sequence batching: a stateful model's state kept per sequence on the server, over HTTP and gRPC streams."""

from __future__ import annotations

import json
import queue
import time

import numpy as np
import pytest

from laser.serve import Server

httpx = pytest.importorskip("httpx")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def accumulator(tmp_path_factory):
    """A running sum: total = x + state_in, state_out = total (the state a sequence carries)."""
    from onnx import TensorProto, helper

    import laser

    f = TensorProto.FLOAT
    nodes = [helper.make_node("Add", ["x", "state_in"], ["total"]), helper.make_node("Identity", ["total"], ["state_out"])]
    graph = helper.make_graph(nodes, "acc", [helper.make_tensor_value_info("x", f, ["batch", 1]),
                                             helper.make_tensor_value_info("state_in", f, ["batch", 1])],
                              [helper.make_tensor_value_info("total", f, ["batch", 1]),
                               helper.make_tensor_value_info("state_out", f, ["batch", 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("acc") / "acc.onnx"
    onnx.save(model, str(path))
    return laser.load(path)


@pytest.fixture(scope="module")
def server(accumulator):
    with Server([accumulator], http_port=0, grpc_port=0, socket_port=None, backend="onnxruntime", max_batch_size=4,
                sequence_state={"state_in": "state_out"}, max_sequences=3, sequence_idle_s=0.5,
                model_control=True) as s:
        yield s


def _step(http, sid, value: float, **flags) -> httpx.Response:
    params = {"sequence_id": sid, **{f"sequence_{k}": v for k, v in flags.items()}}
    return http.post("/v2/models/acc/infer", json={"parameters": params, "inputs": [
        {"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [value]}]})


def _total(r: httpx.Response) -> float:
    assert r.status_code == 200, r.text
    return r.json()["outputs"][0]["data"][0]


def test_interleaved_sequences_keep_their_own_state_and_end(server):
    with httpx.Client(base_url=server.http_url) as http:
        meta = http.get("/v2/models/acc").json()
        assert [t["name"] for t in meta["inputs"]] == ["x"] and [t["name"] for t in meta["outputs"]] == ["total"]
        sb = http.get("/v2/models/acc/config").json()["sequence_batching"]
        assert sb["state"] == [{"input_name": "state_in", "output_name": "state_out", "data_type": "TYPE_FP32",
                                "dims": [1]}]
        assert _total(_step(http, 11, 1, start=True)) == 1
        assert _total(_step(http, "walk-b", 10, start=True)) == 10  # string correlation ids work too
        assert _total(_step(http, 11, 2)) == 3
        assert _total(_step(http, "walk-b", 20)) == 30
        assert _total(_step(http, 11, 3, end=True)) == 6
        r = _step(http, 11, 4)
        assert r.status_code == 400 and "not in progress" in r.json()["error"]
        assert _total(_step(http, 11, 5, start=True)) == 5  # a new sequence under the same id starts from zero
        r = http.post("/v2/models/acc/infer", json={"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32",
                                                                "data": [1.0]}]})
        assert r.status_code == 400 and "needs a non-zero sequence_id" in r.json()["error"]
        r = http.post("/v2/models/acc/infer", json={"parameters": {"sequence_id": 11}, "inputs": [
            {"name": "x", "shape": [2, 1], "datatype": "FP32", "data": [1.0, 2.0]}]})
        assert r.status_code == 400 and "batch 1" in r.json()["error"]
        r = http.post("/v2/models/acc/infer", json={"parameters": {"sequence_id": 11}, "inputs": [
            {"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]},
            {"name": "state_in", "shape": [1, 1], "datatype": "FP32", "data": [9.0]}]})
        assert r.status_code == 400 and "no input 'state_in'" in r.json()["error"]  # the server owns the state
        for sid in (11, "walk-b"):
            _step(http, sid, 0, end=True)


def test_idle_sequences_expire_and_the_number_of_sequences_is_bounded(server):
    with httpx.Client(base_url=server.http_url) as http:
        for sid in (21, 22, 23):
            assert _total(_step(http, sid, 1, start=True)) == 1
        r = _step(http, 24, 1, start=True)
        assert r.status_code == 503 and "max_sequences" in r.json()["error"] and r.headers["Retry-After"]
        time.sleep(0.7)  # longer than sequence_idle_s
        r = _step(http, 21, 1)
        assert r.status_code == 400 and "idle" in r.json()["error"]
        assert _total(_step(http, 24, 2, start=True, end=True)) == 2  # room again once the idle ones are gone


def test_sequences_over_a_grpc_stream_like_tritons_sequence_stream_example(server):
    import tritonclient.grpc as tg

    client = tg.InferenceServerClient(server.grpc_target)
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    values = {31: [1, 2, 3, 4], 32: [10, 20, 30, 40]}
    for k in range(4):  # interleaved: one request of each sequence per round
        for sid, vals in values.items():
            inp = tg.InferInput("x", [1, 1], "FP32")
            inp.set_data_from_numpy(np.array([[vals[k]]], np.float32))
            client.async_stream_infer("acc", [inp], request_id=f"{sid}-{k}", sequence_id=sid,
                                      sequence_start=k == 0, sequence_end=k == 3)
    got = [answers.get(timeout=30) for _ in range(8)]
    client.stop_stream()
    assert all(e is None for _, e in got), [str(e) for _, e in got]
    totals = {r.get_response().id: float(r.as_numpy("total")[0, 0]) for r, _ in got}
    for sid, vals in values.items():
        assert [totals[f"{sid}-{k}"] for k in range(4)] == list(np.cumsum(vals))


def test_a_load_can_turn_a_model_into_a_sequence_model(accumulator):
    with Server([accumulator], http_port=0, grpc_port=None, socket_port=None, backend="onnxruntime",
                max_batch_size=2, model_control=True) as s, httpx.Client(base_url=s.http_url) as http:
        assert "sequence_batching" not in http.get("/v2/models/acc/config").json()
        bad = {"sequence_batching": {"direct": {}, "state": [{"input_name": "state_in", "output_name": "state_out"}]}}
        r = http.post("/v2/repository/models/acc/load", json={"parameters": {"config": json.dumps(bad)}})
        assert r.status_code == 400 and "direct" in r.json()["error"]
        cfg = {"sequence_batching": {"max_sequence_idle_microseconds": 5_000_000, "oldest": {"max_candidate_sequences": 2},
                                     "state": [{"input_name": "state_in", "output_name": "state_out"}]}}
        r = http.post("/v2/repository/models/acc/load", json={"parameters": {"config": json.dumps(cfg)}})
        assert r.status_code == 200, r.text
        assert http.get("/v2/models/acc/config").json()["sequence_batching"]["oldest"]["max_candidate_sequences"] == 2
        assert _total(_step(http, 5, 4, start=True)) == 4 and _total(_step(http, 5, 4, end=True)) == 8
