"""Serving over HTTP and gRPC with standard clients (tritonclient, plain JSON), and the protocol limits."""

from __future__ import annotations

import gzip
import io
import json

import numpy as np
import pytest

from laser.serve import Limits, Server
from laser.serve.client import GrpcClient, HttpClient

httpx = pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def server(digits_artifact):
    # The real digits model on the torch backend: answers must equal a local runner's.
    with Server([digits_artifact], http_port=0, grpc_port=0, socket_port=0, limits=Limits(max_body_bytes=1 << 20),
                max_batch_size=8, max_queue_delay_ms=1.0) as s:
        yield s


@pytest.fixture(scope="module")
def local(digits_artifact):
    import laser

    return laser.run(digits_artifact, backend="torch")


@pytest.fixture(scope="module")
def x():
    from laser import data

    images, _ = data.digits("test")
    return np.ascontiguousarray(images[:3])


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.http_url, timeout=30) as c:
        yield c


def test_tritonclient_http_binary_and_json_paths_match_the_local_runner(server, local, x):
    import tritonclient.http as th

    client = th.InferenceServerClient(server.http_url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("digits-cnn")
    want = local({"input": x})["logits"]
    binary = th.InferInput("input", list(x.shape), "FP32")
    binary.set_data_from_numpy(x)
    np.testing.assert_allclose(client.infer("digits-cnn", [binary]).as_numpy("logits"), want, rtol=1e-5, atol=1e-5)
    as_json = th.InferInput("input", list(x.shape), "FP32")
    as_json.set_data_from_numpy(x, binary_data=False)
    result = client.infer("digits-cnn", [as_json], outputs=[th.InferRequestedOutput("logits", binary_data=False)])
    np.testing.assert_allclose(result.as_numpy("logits"), want, rtol=1e-5, atol=1e-5)
    gz = client.infer("digits-cnn", [binary], request_compression_algorithm="gzip")
    np.testing.assert_allclose(gz.as_numpy("logits"), want, rtol=1e-5, atol=1e-5)


def test_tritonclient_http_classification_returns_the_top_labels(server, local, x):
    import tritonclient.http as th

    client = th.InferenceServerClient(server.http_url.removeprefix("http://"))
    inp = th.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    top = client.infer("digits-cnn", [inp], outputs=[th.InferRequestedOutput("logits", class_count=2)]).as_numpy("logits")
    assert top.shape == (3, 2)
    best = [int(row[0].decode().split(":")[1]) for row in top]
    assert best == local({"input": x})["logits"].argmax(1).tolist()


def test_tritonclient_grpc_metadata_config_and_infer(server, local, x):
    import tritonclient.grpc as tg

    client = tg.InferenceServerClient(server.grpc_target)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("digits-cnn")
    meta = client.get_model_metadata("digits-cnn", as_json=True)
    assert meta["inputs"][0]["shape"] == ["-1", "1", "8", "8"]
    config = client.get_model_config("digits-cnn", as_json=True)["config"]
    assert config["max_batch_size"] == 8 and config["input"][0]["dims"] == ["1", "8", "8"]
    assert config["parameters"]["laser_execution"]["string_value"] in ("inline", "thread")
    inp = tg.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    got = client.infer("digits-cnn", [inp]).as_numpy("logits")
    np.testing.assert_allclose(got, local({"input": x})["logits"], rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="NOT_FOUND"):
        client.infer("no-such-model", [inp])


def test_laser_http_and_grpc_clients_match_the_local_runner(server, local, x):
    want = local({"input": x})["logits"]
    with HttpClient(server.http_url) as c:
        np.testing.assert_allclose(c.infer("digits-cnn", {"input": x})["logits"], want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(c.infer("digits-cnn", {"input": x}, binary=False)["logits"], want, rtol=1e-5,
                                   atol=1e-5)
    with GrpcClient(server.grpc_target) as g:
        np.testing.assert_allclose(g.infer("digits-cnn", {"input": x})["logits"], want, rtol=1e-5, atol=1e-5)


def test_plain_json_request_like_curl_gets_data_back_and_id_echoed(http, local, x):
    body = {"id": "req-7", "inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                       "data": x[:1].tolist()}]}  # nested data is accepted as well as flat
    r = http.post("/v2/models/digits-cnn/infer", json=body)
    assert r.status_code == 200
    out = r.json()
    assert out["id"] == "req-7" and out["model_name"] == "digits-cnn" and out["outputs"][0]["shape"] == [1, 10]
    np.testing.assert_allclose(out["outputs"][0]["data"], local({"input": x[:1]})["logits"].ravel(), rtol=1e-5, atol=1e-5)


def test_health_metadata_config_and_version_routes(http):
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").json() == {"ready": True}
    meta = http.get("/v2").json()
    assert meta["name"] == "laser" and "binary_tensor_data" in meta["extensions"]
    assert http.get("/v2/models/digits-cnn/versions/1").json()["inputs"][0]["datatype"] == "FP32"
    assert http.get("/v2/models/digits-cnn/versions/1/ready").json() == {"name": "digits-cnn", "ready": True}
    assert http.get("/v2/models/digits-cnn/versions/9/ready").status_code == 503
    assert http.get("/v2/models/digits-cnn/config").json()["dynamic_batching"]["max_queue_delay_microseconds"] == 1000
    assert http.get("/v2/models/nope").status_code == 404
    assert http.get("/v2/nothing/here").status_code == 404


def _infer(http, body: bytes, headers=None):
    return http.post("/v2/models/digits-cnn/infer", content=body, headers=headers or {})


def _good(x) -> dict:
    return {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": x[:1].ravel().tolist()}]}


@pytest.mark.parametrize("body, status, text", [
    (b"{not json", 400, "malformed JSON"),
    (b'{"inputs": []}', 400, "non-empty 'inputs'"),
    (b"[1, 2]", 400, "JSON object"),
    (json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP64", "data": [0.0] * 64}]}).encode(),
     400, "expects FP32"),
    (json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 4, 4], "datatype": "FP32", "data": [0.0] * 16}]}).encode(),
     400, "dim 2 must be 8"),
    (json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 5}]}).encode(),
     400, "needs 64 values"),
    (json.dumps({"inputs": [{"name": "input", "shape": [9, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 576}]}).encode(),
     400, "max_batch_size"),
    (json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "FP32", "data": [0.0]}]}).encode(),
     400, "no input 'image'"),
    (json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": ["a"] * 64}]}).encode(),
     400, "do not fit datatype"),
    (b"[" * 200 + b"]" * 200, 413, "nested deeper"),
])
def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(http, x, body, status, text):
    r = _infer(http, body)
    assert r.status_code == status, r.text
    assert text in r.json()["error"]
    assert _infer(http, json.dumps(_good(x)).encode()).status_code == 200


def test_lying_inference_header_content_length_is_refused(http, x):
    header = json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 256}}]}).encode()
    raw = x[:1].tobytes()
    ok = _infer(http, header + raw, {"Inference-Header-Content-Length": str(len(header))})
    assert ok.status_code == 200
    for lie in (str(len(header) + len(raw) + 10), "-5", "12abc", str(len(header) - 3), str(len(header) + 4)):
        r = _infer(http, header + raw, {"Inference-Header-Content-Length": lie})
        assert r.status_code == 400, (lie, r.text)
    short = _infer(http, header + raw[:100], {"Inference-Header-Content-Length": str(len(header))})
    assert short.status_code == 400 and "binary_data_size 256" in short.json()["error"]
    # Header length 0: the body is the raw data of the single input (batch 1).
    raw_only = _infer(http, raw, {"Inference-Header-Content-Length": "0"})
    assert raw_only.status_code == 200 and raw_only.json()["outputs"][0]["shape"] == [1, 10]


def test_oversized_and_gzip_bombed_bodies_are_413(http, x):
    big = b"0" * ((1 << 20) + 1)
    assert _infer(http, big).status_code == 413
    bomb = gzip.compress(b" " * (4 << 20))  # 4 MiB of spaces, ~4 kB compressed
    r = _infer(http, bomb, {"Content-Encoding": "gzip"})
    assert r.status_code == 413 and "decompressed" in r.json()["error"]
    assert _infer(http, json.dumps(_good(x)).encode()).status_code == 200


def test_model_names_with_dots_or_slashes_are_refused(http):
    assert http.get("/v2/models/..%2F..%2Fetc").status_code in (400, 404)
    r = http.get("/v2/models/a..b")
    assert r.status_code == 400 and "invalid model name" in r.json()["error"]


def test_classify_route_answers_top_k_labels_for_an_image(http, local, x, digits_artifact):
    from PIL import Image

    from laser.preprocess import image_to_array

    pixels = ((x[0, 0] * 0.5 + 0.5) * 255).clip(0, 255).astype(np.uint8)  # undo the normalisation
    png = io.BytesIO()
    Image.fromarray(pixels, "L").save(png, format="PNG")
    want = int(local({"input": image_to_array(png.getvalue(), digits_artifact.preprocessing)})["logits"].argmax())
    r = http.post("/v2/models/digits-cnn/classify", params={"k": 3}, files={"file": ("d.png", png.getvalue())})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 3 and preds[0]["index"] == want and preds[0]["label"] == str(want)
    raw = http.post("/v2/models/digits-cnn/classify", content=png.getvalue(), headers={"Content-Type": "image/png"})
    assert raw.json()["predictions"][0]["index"] == want
    bad = http.post("/v2/models/digits-cnn/classify", content=b"not an image")
    assert bad.status_code == 400 and "/" not in bad.json()["error"].split("cannot read an image from")[-1][:3]
    assert http.post("/v2/models/digits-cnn/teleport", content=b"x").status_code == 404
    piped = http.post("/v2/models/digits-cnn/pipeline", params={"top_k": 2}, content=png.getvalue())
    assert piped.status_code == 200, piped.text
    assert piped.json()["top_k"][0]["index"] == want and len(piped.json()["top_k"]) == 2


def _counter(text: str, line_start: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


def test_the_execution_strategy_is_chosen_once_at_load_and_shown(http):
    params = http.get("/v2/models/digits-cnn/config").json()["parameters"]
    strategy = params["laser_execution"]["string_value"]
    assert strategy in ("inline", "thread") and float(params["laser_batch1_call_ms"]["string_value"]) > 0
    assert "measured at load" in params["laser_execution_method"]["string_value"]
    assert f'laser_model_execution{{model="digits-cnn",strategy="{strategy}",version="1"}} 1.0' in \
        http.get("/metrics").text


def test_metrics_count_requests_by_outcome(http, x):
    ok = 'laser_requests_total{model="digits-cnn",outcome="success",protocol="http",version="1"}'
    bad = 'laser_requests_total{model="",outcome="invalid",protocol="http",version=""}'
    before = http.get("/metrics").text
    _infer(http, b"{broken")
    _infer(http, json.dumps(_good(x)).encode())
    after = http.get("/metrics").text
    assert _counter(after, ok) == _counter(before, ok) + 1
    assert _counter(after, bad) == _counter(before, bad) + 1
    assert _counter(after, 'laser_batch_size_count{model="digits-cnn",version="1"}') >= 1
    assert "laser_compute_duration_seconds_bucket" in after and "laser_queue_duration_seconds_bucket" in after
    assert "\nlaser_inflight_requests 0.0\n" in after  # read from the server's count when scraped


def test_inflight_gauge_reads_the_requests_in_the_server():
    from laser.serve.metrics import Metrics

    m, count = Metrics(), [3]
    m.count_inflight(lambda: count[0])
    assert "\nlaser_inflight_requests 3.0\n" in m.render().decode()
    count[0] = 0
    assert "\nlaser_inflight_requests 0.0\n" in m.render().decode()


def test_control_plane_is_off_by_default(http):
    r = http.post("/v2/repository/models/digits-cnn/unload")
    assert r.status_code == 403 and "--model-control" in r.json()["error"]
    assert http.post("/v2/repository/index").json() == [{"name": "digits-cnn", "version": "1", "state": "READY",
                                                          "reason": ""}]


def test_bearer_token_guards_everything_but_health(digits_artifact, x):
    with Server([digits_artifact], http_port=0, grpc_port=0, socket_port=None, token="s3cret-token",
                backend="echo", max_batch_size=2) as s, httpx.Client(base_url=s.http_url) as c:
        assert c.get("/v2/health/ready").status_code == 200
        assert c.get("/v2/models/digits-cnn").status_code == 401
        assert c.get("/v2/models/digits-cnn", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
        assert c.get("/v2/models/digits-cnn", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        with GrpcClient(s.grpc_target) as g, pytest.raises(Exception, match="token"):
            g.infer("digits-cnn", {"input": x[:1]})
        with GrpcClient(s.grpc_target, token="s3cret-token") as g:
            assert g.infer("digits-cnn", {"input": x[:1]})["logits"].shape == (1, 10)


def test_lockless_histogram_renders_as_prometheus_clients_own():
    import prometheus_client as pc

    from laser.serve.metrics import TIME_BUCKETS, Histogram

    ours_reg, theirs_reg = pc.CollectorRegistry(), pc.CollectorRegistry()
    ours = Histogram("h_seconds", "doc", ["model"], TIME_BUCKETS, ours_reg)
    theirs = pc.Histogram("h_seconds", "doc", ["model"], buckets=TIME_BUCKETS, registry=theirs_reg)
    for v in (0.0, 1e-4, 3e-4, 0.01, 0.0099, 2.5, 31.0, 7.0):  # on bucket edges, between, past the last
        ours.labels("m").observe(v)
        theirs.labels("m").observe(v)
    lines = [ln for ln in pc.generate_latest(theirs_reg).decode().splitlines() if "_created" not in ln]
    assert pc.generate_latest(ours_reg).decode().splitlines() == lines
    ours.remove("m")
    assert "h_seconds_count" not in pc.generate_latest(ours_reg).decode()
