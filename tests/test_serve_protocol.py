"""The rest of the protocol: no request answered "success" while part of it was ignored, Triton's
statistics extension, gRPC streaming, BYTES tensors and system shared memory."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from laser.serve import ServeError, Server
from laser.serve import socket as proto
from laser.serve.client import GrpcClient

httpx = pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def server(digits_artifact):
    # The echo backend (each output value = the mean of the sample's input): fast, exact answers.
    with Server([digits_artifact], http_port=0, grpc_port=0, socket_port=0, backend="echo", max_batch_size=4,
                model_control=True) as s:
        yield s


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.http_url, timeout=30) as c:
        yield c


def _x(n: int = 2) -> np.ndarray:
    return np.arange(n * 64, dtype=np.float32).reshape(n, 1, 8, 8) / 64


def _body(n: int = 1, **extra) -> dict:
    x = _x(n)
    return {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
            **extra}


def _infer(http, body) -> httpx.Response:
    return http.post("/v2/models/digits-cnn/infer", json=body)


# -- nothing is silently ignored --------------------------------------------------------------------
def test_duplicate_requested_outputs_are_400_on_http_and_grpc(http, server):
    r = _infer(http, _body(outputs=[{"name": "logits"}, {"name": "logits"}]))
    assert r.status_code == 400 and "requested twice" in r.json()["error"]
    import tritonclient.grpc as tg

    client = tg.InferenceServerClient(server.grpc_target)
    inp = tg.InferInput("input", [1, 1, 8, 8], "FP32")
    inp.set_data_from_numpy(_x(1))
    with pytest.raises(Exception, match="requested twice"):
        client.infer("digits-cnn", [inp], outputs=[tg.InferRequestedOutput("logits")] * 2)


@pytest.mark.parametrize("path, value, field", [
    (("inputs", 0, "datatype"), {"x": 1}, "inputs.0.datatype"),
    (("inputs", 0, "name"), 7, "inputs.0.name"),
    (("inputs", 0, "shape"), [1, 1, 8, 8.5], "inputs.0.shape.3"),
    (("inputs", 0, "parameters"), [], "inputs.0.parameters"),
    (("parameters",), {"timeout": "soon"}, "parameters.timeout"),
    (("parameters",), {"binary_data_output": "yes"}, "parameters.binary_data_output"),
    (("outputs",), [{"name": "logits", "parameters": {"classification": True}}], "outputs.0.parameters.classification"),
    (("outputs",), [{"name": "logits", "extra": 1}], "outputs.0.extra"),
    (("id",), [1], "id"),
])
def test_a_wrongly_typed_field_is_a_400_that_names_it(http, path, value, field):
    body = _body()
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    r = _infer(http, body)
    assert r.status_code == 400, r.text
    assert field in r.json()["error"]
    assert _infer(http, _body()).status_code == 200


def test_sequence_flags_on_a_stateless_model_are_400_on_http_and_grpc(http, server):
    for params in ({"sequence_id": 7, "sequence_start": True}, {"sequence_id": "abc"}, {"sequence_end": True}):
        r = _infer(http, _body(parameters=params))
        assert r.status_code == 400 and "not a sequence" in r.json()["error"], params
    assert _infer(http, _body(parameters={"sequence_id": 0})).status_code == 200  # 0: no sequence, as in Triton
    import tritonclient.grpc as tg

    client = tg.InferenceServerClient(server.grpc_target)
    inp = tg.InferInput("input", [1, 1, 8, 8], "FP32")
    inp.set_data_from_numpy(_x(1))
    with pytest.raises(Exception, match="not a sequence"):
        client.infer("digits-cnn", [inp], sequence_id=3, sequence_start=True)


def test_a_load_applies_its_config_override_or_refuses_it(http, server):
    def load(body) -> httpx.Response:
        return http.post("/v2/repository/models/digits-cnn/load", content=body if isinstance(body, bytes)
                         else json.dumps(body).encode())

    def config() -> dict:
        return http.get("/v2/models/digits-cnn/config").json()

    cfg = {"max_batch_size": 2, "dynamic_batching": {"max_queue_delay_microseconds": 500}}
    assert load({"parameters": {"config": json.dumps(cfg)}}).status_code == 200
    assert config()["max_batch_size"] == 2 and config()["dynamic_batching"]["max_queue_delay_microseconds"] == 500
    assert _infer(http, _body(3)).status_code == 400  # the new limit is enforced, not just shown
    for body, text in [
        ({"parameters": {"config": json.dumps({"max_batch_size": 4, "instance_group": []})}}, "instance_group"),
        ({"parameters": {"config": json.dumps({"max_batch_size": "eight"})}}, "max_batch_size"),  # "8" is valid
        ({"parameters": {"config": json.dumps({"max_batch_size": 0})}}, "max_batch_size"),
        ({"parameters": {"config": "{broken"}}, "not valid JSON"),
        ({"parameters": {"file:1/model.onnx": "AAAA"}}, "file:1/model.onnx"),
        ({"parameters": {"colour": "red"}}, "colour"),
        (b"{broken", "malformed JSON"),
    ]:
        r = load(body)
        assert r.status_code == 400 and text in r.json()["error"], (body, r.text)
        assert config()["max_batch_size"] == 2  # a refused load changes nothing
    with GrpcClient(server.grpc_target) as g:
        req = g._message("RepositoryModelLoadRequest")(model_name="digits-cnn")
        req.parameters["config"].string_param = json.dumps({"max_batch_size": 4})
        g._calls["RepositoryModelLoad"](req, timeout=60)
        req.parameters["file:1/model.onnx"].bytes_param = b"\0"
        with pytest.raises(Exception, match="file:"):
            g._calls["RepositoryModelLoad"](req, timeout=60)
    assert config()["max_batch_size"] == 4
    assert _infer(http, _body(3)).status_code == 200


def test_the_repository_index_honours_its_body(http):
    assert http.post("/v2/repository/index", json={"ready": True}).json()[0]["state"] == "READY"
    assert http.post("/v2/repository/index", content=b"{oops").status_code == 400
    r = http.post("/v2/repository/index", json={"ready": "yes"})
    assert r.status_code == 400 and "ready" in r.json()["error"]


def test_a_grpc_message_that_does_not_decode_is_invalid_argument(server):
    import grpc

    with grpc.insecure_channel(server.grpc_target) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as err:
            call(b"\x0a\xff\xff\xff\xff\x0f", timeout=10)  # a length-delimited field that runs past the end
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ModelInferRequest" in err.value.details()


@pytest.mark.parametrize("header, text", [
    ({"model_name": "digits-cnn", "inputs": [{"name": "input", "datatype": ["FP32"], "shape": [1, 1, 8, 8],
                                              "parameters": {"binary_data_size": 256}}]}, "inputs.0.datatype"),
    ({"model_name": "digits-cnn", "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 8, 8],
                                              "parameters": {"binary_data_size": 256}}], "parameters": []},
     "parameters"),
    ({"op": ["ready"]}, "op"),
    ({"op": "ready", "model_name": 5}, "model_name"),
])
def test_a_wrongly_typed_socket_header_field_is_an_error_frame_naming_it(server, header, text):
    frame = proto.pack(proto.REQUEST, 4, json.dumps(header).encode(), _x(1).tobytes())
    with socket.create_connection(server.socket_address, timeout=10) as s:
        s.sendall(frame)
        stream = s.makefile("rb")
        _, _, kind, _, rid, hlen, plen = proto.HEADER.unpack(stream.read(proto.HEADER.size))
        answer = json.loads(stream.read(hlen + plen)[:hlen])
    assert kind == proto.ERROR and rid == 4 and answer["status"] == 400 and text in answer["error"], answer


def test_servererror_statuses_are_kept_by_the_grpc_client(server):
    with GrpcClient(server.grpc_target) as g, pytest.raises(ServeError) as err:
        g.infer("digits-cnn", {"input": _x(1).astype(np.float64)})
    assert err.value.status == 400


# -- statistics ---------------------------------------------------------------------------------------
def _stats(http, path="/v2/models/digits-cnn/stats") -> dict:
    r = http.get(path)
    assert r.status_code == 200, r.text
    return r.json()["model_stats"][0]


def test_statistics_count_requests_samples_and_batches_over_http_and_grpc(http, server):
    assert "statistics" in http.get("/v2").json()["extensions"]
    before = _stats(http)
    assert _infer(http, _body(3)).status_code == 200
    assert _infer(http, _body(2)).status_code == 200
    assert _infer(http, {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP64",
                                     "data": [0.0] * 64}]}).status_code == 400
    after = _stats(http)
    s0, s1 = before["inference_stats"], after["inference_stats"]
    assert after["inference_count"] - before["inference_count"] == 5  # samples
    assert after["execution_count"] - before["execution_count"] == 2  # one batch per request, here
    assert s1["success"]["count"] - s0["success"]["count"] == 2 and s1["success"]["ns"] > s0["success"]["ns"]
    assert s1["fail"]["count"] - s0["fail"]["count"] == 1
    assert s1["compute_infer"]["count"] - s0["compute_infer"]["count"] == 2
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in after["batch_stats"]}
    assert sizes.get(3, 0) >= 1 and sizes.get(2, 0) >= 1
    assert after["last_inference"] >= before["last_inference"] and after["last_inference"] > 0
    assert _stats(http, "/v2/models/stats")["name"] == "digits-cnn"
    assert _stats(http, "/v2/models/digits-cnn/versions/1/stats")["version"] == "1"
    assert http.get("/v2/models/nope/stats").status_code == 404
    import tritonclient.grpc as tg

    grpc_stats = tg.InferenceServerClient(server.grpc_target).get_inference_statistics("digits-cnn", as_json=True)
    assert int(grpc_stats["model_stats"][0]["inference_count"]) == after["inference_count"]


# -- streaming ----------------------------------------------------------------------------------------
def test_model_stream_infer_answers_every_request_and_errors_in_band(server):
    import queue

    import tritonclient.grpc as tg

    client = tg.InferenceServerClient(server.grpc_target)
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    for k in range(6):
        inp = tg.InferInput("input", [2, 1, 8, 8], "FP32")
        inp.set_data_from_numpy(_x(2) + k)
        client.async_stream_infer("digits-cnn", [inp], request_id=str(k))
    bad = tg.InferInput("input", [1, 1, 8, 8], "FP64")
    bad.set_data_from_numpy(np.zeros((1, 1, 8, 8)))
    client.async_stream_infer("digits-cnn", [bad], request_id="bad")
    got = [answers.get(timeout=30) for _ in range(7)]
    client.stop_stream()  # returns: the server ends the stream once the client closes its side
    results = {r.get_response().id: r.as_numpy("logits") for r, e in got if e is None}
    assert sorted(results) == [str(k) for k in range(6)]
    for k in range(6):  # echo backend: each output value is the mean of the sample's input
        np.testing.assert_allclose(results[str(k)][:, 0], (_x(2) + k).reshape(2, -1).mean(1), rtol=1e-6)
    errors = [str(e) for r, e in got if e is not None]
    assert len(errors) == 1 and "expects FP32" in errors[0]


def test_a_stream_message_that_does_not_decode_is_an_in_band_error(server):
    import grpc

    from laser.serve.proto import message

    good = _grpc_request(1).SerializeToString()
    with grpc.insecure_channel(server.grpc_target) as channel:
        call = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer",
                                     response_deserializer=message("ModelStreamInferResponse").FromString)
        answers = list(call(iter([b"\x0a\xff\xff\xff\xff\x0f", good]), timeout=30))
    assert len(answers) == 2
    assert sum("does not decode" in a.error_message for a in answers) == 1
    assert sum(a.infer_response.model_name == "digits-cnn" and not a.error_message for a in answers) == 1


def _grpc_request(n: int):
    from laser.serve.proto import message

    req = message("ModelInferRequest")(model_name="digits-cnn", id="r")
    req.inputs.add(name="input", datatype="FP32", shape=[n, 1, 8, 8])
    req.raw_input_contents.append(_x(n).tobytes())
    return req


# -- BYTES tensors --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def text_server(tmp_path_factory):
    """An ONNX model with a string input: a word -> id table, and the text passed through as a string output."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    import laser

    nodes = [helper.make_node("LabelEncoder", ["text"], ["label"], domain="ai.onnx.ml", keys_strings=["cat", "dog"],
                              values_int64s=[0, 1], default_int64=-1),
             helper.make_node("Identity", ["text"], ["echo"])]
    graph = helper.make_graph(nodes, "words", [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
                              [helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
                               helper.make_tensor_value_info("echo", TensorProto.STRING, ["batch"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("words") / "words.onnx"
    onnx.save(model, str(path))
    with Server([laser.load(path)], http_port=0, grpc_port=0, socket_port=None, backend="onnxruntime",
                max_batch_size=4) as s:
        yield s


def test_bytes_tensors_travel_over_json_binary_and_grpc(text_server):
    import tritonclient.grpc as tg
    import tritonclient.http as th

    words = np.array([b"dog", b"cat", "émeu".encode()], dtype=object)
    client = th.InferenceServerClient(text_server.http_url.removeprefix("http://"))
    assert client.get_model_metadata("words")["inputs"][0]["datatype"] == "BYTES"
    assert client.get_model_config("words")["input"][0]["data_type"] == "TYPE_STRING"
    for binary in (True, False):
        inp = th.InferInput("text", [3], "BYTES")
        inp.set_data_from_numpy(words, binary_data=binary)
        out = client.infer("words", [inp], outputs=[th.InferRequestedOutput("label", binary_data=binary),
                                                   th.InferRequestedOutput("echo", binary_data=binary)])
        assert out.as_numpy("label").tolist() == [1, 0, -1]
        assert [w if isinstance(w, bytes) else w.encode() for w in out.as_numpy("echo")] == list(words)
    g = tg.InferenceServerClient(text_server.grpc_target)
    inp = tg.InferInput("text", [3], "BYTES")
    inp.set_data_from_numpy(words)
    out = g.infer("words", [inp])
    assert out.as_numpy("label").tolist() == [1, 0, -1] and list(out.as_numpy("echo")) == list(words)
    with httpx.Client(base_url=text_server.http_url) as c:
        r = c.post("/v2/models/words/infer", json={"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                                               "data": ["cat", "emu"]}]})
        assert {o["name"]: o["data"] for o in r.json()["outputs"]} == {"label": [0, -1], "echo": ["cat", "emu"]}


@pytest.mark.parametrize("raw, text", [
    (b"\x03\x00\x00\x00cat\x09\x00\x00\x00dog", "declares 9 bytes"),
    (b"\x03\x00\x00\x00cat\x03\x00", "truncated"),
    (b"\x03\x00\x00\x00cat", "needs 2 BYTES elements"),
    (b"\x03\x00\x00\x00cat\x03\x00\x00\x00dogXX", "trailing"),
])
def test_lying_bytes_element_lengths_are_400(text_server, raw, text):
    header = json.dumps({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    with httpx.Client(base_url=text_server.http_url) as c:
        r = c.post("/v2/models/words/infer", content=header + raw,
                   headers={"Inference-Header-Content-Length": str(len(header))})
        assert r.status_code == 400 and text in r.json()["error"], r.text
        bad = c.post("/v2/models/words/infer", json={"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                                                 "data": [5]}]})
        assert bad.status_code == 400 and "must be strings" in bad.json()["error"]


# -- system shared memory -------------------------------------------------------------------------------
@pytest.fixture
def regions():
    import uuid

    import tritonclient.utils.shared_memory as shm

    made = []

    def make(size: int):
        key = f"/laser_test_{uuid.uuid4().hex[:12]}"
        made.append(shm.create_shared_memory_region(key[1:], key, size))
        return key, made[-1]

    yield make
    for handle in made:
        shm.destroy_shared_memory_region(handle)


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_system_shared_memory_carries_inputs_and_outputs(server, regions, transport):
    import tritonclient.grpc as tg
    import tritonclient.http as th
    import tritonclient.utils.shared_memory as shm

    mod, target = (th, server.http_url.removeprefix("http://")) if transport == "http" else (tg, server.grpc_target)
    client = mod.InferenceServerClient(target)
    x = _x(2)
    in_key, in_handle = regions(x.nbytes + 64)
    out_key, out_handle = regions(2 * 10 * 4)
    shm.set_shared_memory_region(in_handle, [x], offset=64)
    client.register_system_shared_memory("in", in_key, x.nbytes, offset=64)
    client.register_system_shared_memory("out", out_key, 80)
    try:
        inp = mod.InferInput("input", [2, 1, 8, 8], "FP32")
        inp.set_shared_memory("in", x.nbytes)
        out = mod.InferRequestedOutput("logits")
        out.set_shared_memory("out", 80)
        client.infer("digits-cnn", [inp], outputs=[out])
        got = shm.get_contents_as_numpy(out_handle, np.float32, [2, 10])
        np.testing.assert_allclose(got[:, 0], x.reshape(2, -1).mean(1), rtol=1e-6)  # echo: the input's mean
        status = client.get_system_shared_memory_status(**({"as_json": True} if transport == "grpc" else {}))
        names = {r["name"] for r in status} if transport == "http" else set(status["regions"])
        assert {"in", "out"} <= names
        small = mod.InferRequestedOutput("logits")
        small.set_shared_memory("out", 40)  # the output needs 80 bytes
        with pytest.raises(Exception, match="needs 80 bytes"):
            client.infer("digits-cnn", [inp], outputs=[small])
        beyond = mod.InferInput("input", [2, 1, 8, 8], "FP32")
        beyond.set_shared_memory("in", x.nbytes, offset=8)  # runs past the registered window
        with pytest.raises(Exception, match="exceeds"):
            client.infer("digits-cnn", [beyond])
    finally:
        client.unregister_system_shared_memory()
    with pytest.raises(Exception, match="no shared memory region 'in'"):
        client.infer("digits-cnn", [inp])


def test_bad_shared_memory_registrations_are_refused(http, regions):
    key, _ = regions(128)
    for region, body, status, text in [
        ("a", {"key": key, "offset": 64, "byte_size": 128}, 400, "exceeds the 128 bytes"),
        ("a", {"key": "/../etc/passwd", "byte_size": 8}, 400, "must name a file"),
        ("a", {"key": "/laser_no_such_key", "byte_size": 8}, 400, "cannot open"),
        ("a", {"key": key, "byte_size": "8"}, 400, "byte_size"),
        ("a", {"key": key}, 400, "byte_size"),
    ]:
        r = http.post(f"/v2/systemsharedmemory/region/{region}/register", json=body)
        assert r.status_code == status and text in r.json()["error"], (body, r.text)
    assert http.post("/v2/systemsharedmemory/region/ok/register", json={"key": key, "byte_size": 128}).status_code == 200
    r = http.post("/v2/systemsharedmemory/region/ok/register", json={"key": key, "byte_size": 128})
    assert r.status_code == 400 and "already registered" in r.json()["error"]
    assert http.get("/v2/systemsharedmemory/region/nope/status").status_code == 404
    assert http.post("/v2/systemsharedmemory/region/ok/unregister").status_code == 200
    assert http.get("/v2/systemsharedmemory/status").json() == []
    r = http.post("/v2/cudasharedmemory/region/g/register", json={"raw_handle": {"b64": "AAAA"}, "device_id": 0,
                                                                   "byte_size": 8})
    assert r.status_code == 400 and "not supported on this server" in r.json()["error"]
    assert http.post("/v2/cudasharedmemory/unregister").status_code == 200  # clients clear regions first
    assert http.get("/v2/cudasharedmemory/status").json() == []
    assert "system_shared_memory" in http.get("/v2").json()["extensions"]
    assert "cuda_shared_memory" not in http.get("/v2").json()["extensions"]


# -- raw binary bodies --------------------------------------------------------------------------------
def test_a_raw_body_sizes_the_one_variable_dim_from_its_byte_count(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    import laser

    node = helper.make_node("ReduceMean", ["signal"], ["level"], axes=[1], keepdims=1)
    graph = helper.make_graph([node], "level", [helper.make_tensor_value_info("signal", TensorProto.FLOAT,
                                                                             ["batch", "samples"])],
                              [helper.make_tensor_value_info("level", TensorProto.FLOAT, ["batch", 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "level.onnx"))
    signal = np.arange(10, dtype=np.float32)
    with Server([laser.load(tmp_path / "level.onnx")], http_port=0, grpc_port=None, socket_port=None,
                backend="onnxruntime", max_batch_size=2) as s, httpx.Client(base_url=s.http_url) as c:
        r = c.post("/v2/models/level/infer", content=signal.tobytes(), headers={"Inference-Header-Content-Length": "0"})
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == [pytest.approx(4.5)]
        bad = c.post("/v2/models/level/infer", content=signal.tobytes()[:-1],
                     headers={"Inference-Header-Content-Length": "0"})
        assert bad.status_code == 400 and "whole number" in bad.json()["error"]


def test_an_image_model_config_gives_its_input_format_as_triton_writes_it(http, server):
    import tritonclient.grpc as tg

    assert http.get("/v2/models/digits-cnn/config").json()["input"][0]["format"] == "FORMAT_NCHW"
    config = tg.InferenceServerClient(server.grpc_target).get_model_config("digits-cnn", as_json=True)["config"]
    assert config["input"][0]["format"] == "FORMAT_NCHW" and config["input"][0]["dims"] == ["1", "8", "8"]


def test_accept_encoding_gzip_is_honoured_on_inference_answers(http, server):
    import tritonclient.http as th

    body = {"inputs": [{"name": "input", "shape": [4, 1, 8, 8], "datatype": "FP32", "data": _x(4).ravel().tolist()}]}
    r = http.post("/v2/models/digits-cnn/infer", json=body, headers={"Accept-Encoding": "gzip"})
    assert r.headers.get("content-encoding") == "gzip" and r.json()["model_name"] == "digits-cnn"  # httpx inflates it
    plain = http.post("/v2/models/digits-cnn/infer", json=body, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.json() == r.json()
    # as Triton: other answers stay plain (tritonclient.http.aio asks for gzip everywhere, inflates only inference)
    config = http.get("/v2/models/digits-cnn/config", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in config.headers and config.json()["name"] == "digits-cnn"
    client = th.InferenceServerClient(server.http_url.removeprefix("http://"))
    inp = th.InferInput("input", [4, 1, 8, 8], "FP32")
    inp.set_data_from_numpy(_x(4))
    out = client.infer("digits-cnn", [inp], outputs=[th.InferRequestedOutput("logits", binary_data=False)],
                       response_compression_algorithm="gzip")
    np.testing.assert_allclose(out.as_numpy("logits")[:, 0], _x(4).reshape(4, -1).mean(1), rtol=1e-6)


def test_image_input_format_follows_the_channels_of_the_preprocessing():
    from laser.serve.handler import _image_format

    def dims(*d):
        return [{"name": "x", "dims": list(d)}]

    rgb, gray = {"type": "image", "mode": "RGB"}, {"type": "image", "mode": "L"}
    assert _image_format(rgb, dims(3, 224, 224)) == "FORMAT_NCHW"
    assert _image_format(rgb, dims(224, 224, 3)) == "FORMAT_NHWC"
    assert _image_format(gray, dims(1, 8, 8)) == "FORMAT_NCHW" and _image_format(gray, dims(8, 8, 1)) == "FORMAT_NHWC"
    assert _image_format(rgb, dims(5, 7, 9)) == "" and _image_format({}, dims(3, 8, 8)) == ""
    assert _image_format(rgb, dims(3, 8, 8) * 2) == ""  # two inputs: not an image model's single input
