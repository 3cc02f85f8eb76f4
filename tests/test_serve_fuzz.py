"""Fuzzing the transports: mutated HTTP bodies, gRPC messages and socket frames never get a 5xx (or a hang)
and the server stays ready. A few hundred cases in the default suite, thousands under ``-m slow``."""

from __future__ import annotations

import copy
import json
import socket
import struct

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from laser.serve import Limits, Server  # noqa: E402
from laser.serve import socket as proto  # noqa: E402

httpx = pytest.importorskip("httpx")

X = (np.arange(64, dtype=np.float32) / 64).reshape(1, 1, 8, 8)
VALID = {"id": "f", "parameters": {"timeout": 10_000_000},
         "inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": X.ravel().tolist()}],
         "outputs": [{"name": "logits", "parameters": {"binary_data": False}}]}
PATHS = [(), ("id",), ("parameters",), ("parameters", "timeout"), ("inputs",), ("inputs", 0), ("inputs", 0, "name"),
         ("inputs", 0, "shape"), ("inputs", 0, "shape", 0), ("inputs", 0, "datatype"), ("inputs", 0, "data"),
         ("inputs", 0, "parameters"), ("outputs",), ("outputs", 0), ("outputs", 0, "name"), ("outputs", 0, "parameters"),
         ("outputs", 0, "parameters", "binary_data"), ("outputs", 0, "parameters", "classification"),
         ("parameters", "sequence_id"), ("inputs", 0, "parameters", "binary_data_size"),
         ("inputs", 0, "parameters", "shared_memory_region")]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12) | st.sampled_from(["FP32", "BYTES", "input", "logits", "", "-1"]),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@pytest.fixture(scope="module")
def server(digits_artifact):
    with Server([digits_artifact], http_port=0, grpc_port=0, socket_port=0, backend="echo", max_batch_size=4,
                limits=Limits(max_body_bytes=1 << 20)) as s:
        yield s


def _mutate(path: tuple, value, drop: bool) -> dict:
    body = copy.deepcopy(VALID)
    target = body
    for key in path[:-1]:
        target = target.setdefault(key, {}) if isinstance(key, str) else target[key]
    if not path:
        return value
    if drop:
        target.pop(path[-1], None) if isinstance(target, dict) else target.pop(path[-1])
    else:
        target[path[-1]] = value
    return body


FUZZ = dict(deadline=None, database=None, derandomize=True,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _fuzz_http(server, n: int) -> None:
    with httpx.Client(base_url=server.http_url, timeout=30) as c:
        assert c.post("/v2/models/digits-cnn/infer", json=VALID).status_code == 200

        @settings(max_examples=n, **FUZZ)
        @given(st.sampled_from(PATHS), json_values, st.booleans())
        def structure(path, value, drop):
            r = c.post("/v2/models/digits-cnn/infer", content=json.dumps(_mutate(path, value, drop)).encode())
            assert r.status_code < 500, (path, value, r.text)
            assert r.status_code == 200 or "error" in r.json()

        @settings(max_examples=n, **FUZZ)
        @given(st.binary(max_size=600), st.one_of(st.none(), st.integers(-5, 700).map(str),
                                                 st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=5)),
               st.sampled_from(["/v2/models/digits-cnn/infer", "/v2/repository/index", "/v2/repository/models/x/load",
                                "/v2/systemsharedmemory/region/r/register"]))
        def raw_bodies(body, header_length, route):
            headers = {} if header_length is None else {"Inference-Header-Content-Length": header_length}
            try:
                r = c.post(route, content=body, headers=headers)
            except httpx.LocalProtocolError:  # the client refuses to send an illegal header value
                return
            assert r.status_code < 500, (body, header_length, r.text)

        structure()
        raw_bodies()
        assert c.get("/v2/health/ready").status_code == 200
        assert c.post("/v2/models/digits-cnn/infer", json=VALID).status_code == 200


def _fuzz_grpc(server, n: int) -> None:
    import grpc

    from laser.serve.proto import message

    good = message("ModelInferRequest")(model_name="digits-cnn")
    good.inputs.add(name="input", datatype="FP32", shape=[1, 1, 8, 8])
    good.raw_input_contents.append(X.tobytes())
    with grpc.insecure_channel(server.grpc_target) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")

        @settings(max_examples=n, **FUZZ)
        @given(st.lists(st.integers(-2**40, 2**62), max_size=9), st.sampled_from(["FP32", "FP64", "BYTES", "INT8", "x"]),
               st.binary(max_size=300), st.booleans(), st.binary(max_size=64))
        def messages(shape, datatype, raw, garble, noise):
            msg = copy.deepcopy(good)
            del msg.inputs[0].shape[:]
            msg.inputs[0].shape.extend(shape)
            msg.inputs[0].datatype = datatype
            msg.raw_input_contents[0] = raw
            data = msg.SerializeToString()
            if garble:
                data = noise + data[len(noise):]
            try:
                call(data, timeout=30)
            except grpc.RpcError as exc:
                assert exc.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), exc.details()

        messages()


def _answer(s: socket.socket) -> tuple[int, dict] | None:
    """The first frame the server sends back (None: it closed the connection without one)."""
    stream = s.makefile("rb")
    head = stream.read(proto.HEADER.size)
    if len(head) < proto.HEADER.size:
        return None
    _, _, kind, _, _, hlen, plen = proto.HEADER.unpack(head)
    return kind, json.loads(stream.read(hlen + plen)[:hlen])


def _fuzz_socket(server, n: int) -> None:
    @settings(max_examples=n, **FUZZ)
    @given(st.sampled_from(PATHS), json_values, st.booleans(), st.integers(0, 3), st.integers(-8, 8), st.binary(max_size=8))
    def frames(path, value, drop, kind, lie, tail):
        header = _mutate(path, value, drop)
        if isinstance(header, dict):
            header["model_name"] = "digits-cnn"
        head = json.dumps(header).encode()
        frame = bytearray(proto.pack(proto.REQUEST if kind < 3 else 7, 1, head, tail))
        if lie:  # a header length that lies about where the JSON ends
            struct.pack_into("<I", frame, 16, max(0, len(head) + lie))
        with socket.create_connection(server.socket_address, timeout=10) as s:
            s.sendall(bytes(frame))
            s.shutdown(socket.SHUT_WR)
            got = _answer(s)  # a hang fails here with a socket timeout
        assert got is not None
        kind_back, answer = got
        assert kind_back == proto.RESPONSE or answer["status"] < 500, answer

    frames()


def test_fuzzed_requests_on_every_transport_get_no_5xx_and_the_server_stays_ready(server):
    _fuzz_http(server, 120)
    _fuzz_grpc(server, 100)
    _fuzz_socket(server, 100)
    with httpx.Client(base_url=server.http_url) as c:
        assert c.get("/v2/health/ready").status_code == 200


@pytest.mark.slow
def test_thousands_of_fuzzed_requests_get_no_5xx(server):
    _fuzz_http(server, 1500)
    _fuzz_grpc(server, 1500)
    _fuzz_socket(server, 1500)
    with httpx.Client(base_url=server.http_url) as c:
        assert c.get("/v2/health/ready").status_code == 200


def _decode(fn, *args):
    from laser.serve.errors import ServeError

    try:
        return fn(*args)
    except ServeError as err:
        return err.status, str(err)


@settings(max_examples=300, **FUZZ)
@given(st.sampled_from(PATHS), json_values, st.booleans())
@example(("inputs",), VALID["inputs"] * 3, False)  # valid entries, more than Limits.max_inputs
@example(("outputs",), VALID["outputs"] * 3, False)
@example(("inputs", 0, "data"), [[[[[[[[1.0]]]]]]]] * 2, False)
@example(("id",), 2**70, False)
def test_fast_json_path_agrees_with_the_full_one(path, value, drop):
    """HTTP's one-pass decoder (compiled validation of the raw bytes) gives the same request, or the same
    error line, as parsing then validating: the fast path changes the speed, never the answer."""
    from laser.serve.codec import parse_json, request_from_bytes, request_from_json
    from laser.serve.schema import InferBody, SocketBody

    limits = Limits(max_inputs=2)
    body = _mutate(path, value, drop)
    empty = memoryview(b"")
    for kind, obj in ((InferBody, body), (SocketBody, {**body, "model_name": "m"} if isinstance(body, dict) else body)):
        raw = json.dumps(obj).encode()
        fast = _decode(request_from_bytes, raw, empty, "m", "", limits, kind)
        full = _decode(lambda r=raw, k=kind: request_from_json(parse_json(r, limits), empty, "m", "", limits, k))
        assert fast == full, (kind, path, value, drop)
