"""laser's socket protocol: framed requests, the client, bad frames answered with error frames."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from laser.serve import Limits, ServeError, Server
from laser.serve import socket as proto
from laser.serve.client import SocketClient, request_json


@pytest.fixture(scope="module")
def server(digits_artifact):
    with Server([digits_artifact], http_port=None, grpc_port=None, socket_port=0, backend="echo",
                limits=Limits(max_body_bytes=64 << 10), max_batch_size=4, socket_max_inflight=2) as s:
        yield s


@pytest.fixture
def client(server):
    with SocketClient(*server.socket_address, timeout_s=10) as c:
        yield c


def _x(n: int = 2) -> np.ndarray:
    return np.arange(n * 64, dtype=np.float32).reshape(n, 1, 8, 8) / 64


def _raw(server) -> socket.socket:
    return socket.create_connection(server.socket_address, timeout=10)


def _read_frame(stream) -> tuple[int, int, dict]:
    """One frame from ``sock.makefile("rb")`` (buffered: frames that arrived together stay readable)."""
    head = stream.read(proto.HEADER.size)
    assert len(head) == proto.HEADER.size, "connection closed before an answer"
    _, _, kind, _, rid, hlen, plen = proto.HEADER.unpack(head)
    body = stream.read(hlen + plen)
    return kind, rid, json.loads(body[:hlen])


def test_socket_client_infer_and_metadata(client):
    out = client.infer("digits-cnn", {"input": _x()})["logits"]
    # echo backend: every output value is the mean of the sample's input
    np.testing.assert_allclose(out[:, 0], _x().reshape(2, -1).mean(1), rtol=1e-6)
    assert out.shape == (2, 10)
    assert client.live() and client.ready() and client.ready("digits-cnn")
    assert client.metadata("digits-cnn")["inputs"][0]["shape"] == [-1, 1, 8, 8]


def test_socket_errors_come_back_as_error_frames_on_a_live_connection(client):
    with pytest.raises(ServeError) as err:
        client.infer("digits-cnn", {"input": _x().astype(np.float64)})
    assert err.value.status == 400 and "expects FP32" in str(err.value)
    with pytest.raises(ServeError) as err:
        client.infer("nope", {"input": _x()})
    assert err.value.status == 404
    assert client.infer("digits-cnn", {"input": _x(1)})["logits"].shape == (1, 10)  # same connection still works


def test_pipelined_requests_are_answered_by_request_id(server):
    header, chunks = request_json({"input": _x(1)}, None, True, None)
    head = json.dumps({"model_name": "digits-cnn", **json.loads(header)}).encode()
    with _raw(server) as s:
        s.sendall(b"".join(proto.pack(proto.REQUEST, rid, head, chunks) for rid in (11, 12, 13)))
        stream = s.makefile("rb")
        answers = {_read_frame(stream)[1] for _ in range(3)}  # more than max in-flight (2): reading pauses, then resumes
    assert answers == {11, 12, 13}


def test_truncated_frame_gets_an_error_frame_and_the_server_keeps_serving(server, client):
    header, chunks = request_json({"input": _x(1)}, None, True, None)
    frame = proto.pack(proto.REQUEST, 5, json.dumps({"model_name": "digits-cnn", **json.loads(header)}).encode(), chunks)
    with _raw(server) as s:
        s.sendall(frame[:-40])
        s.shutdown(socket.SHUT_WR)
        kind, rid, answer = _read_frame(s.makefile("rb"))
    assert kind == proto.ERROR and rid == 5 and answer["status"] == 400 and "truncated" in answer["error"]
    assert client.infer("digits-cnn", {"input": _x(1)})["logits"].shape == (1, 10)


def test_oversized_frame_is_refused_before_its_payload_is_read(server, client):
    with _raw(server) as s:
        s.sendall(proto.HEADER.pack(proto.MAGIC, proto.VERSION, proto.REQUEST, 0, 9, 100, 10 << 20))
        stream = s.makefile("rb")
        kind, rid, answer = _read_frame(stream)  # answered without sending any of the 10 MiB
        assert stream.read(10) == b""  # then closed: the stream cannot be re-synced
    assert kind == proto.ERROR and rid == 9 and answer["status"] == 413
    assert client.live()


@pytest.mark.parametrize("frame, text", [
    (b"HTTP" + bytes(20), "bad frame"),
    (proto.pack(proto.REQUEST, 3, b"{not json"), "malformed JSON"),
    (proto.pack(proto.REQUEST, 3, b'{"op": "teleport"}'), "unknown op"),
    (proto.pack(proto.REQUEST, 3, b'{"model_name": "../etc", "inputs": []}'), "invalid model name"),
])
def test_bad_frames_get_error_frames(server, client, frame, text):
    with _raw(server) as s:
        s.sendall(frame)
        kind, _, answer = _read_frame(s.makefile("rb"))
    assert kind == proto.ERROR and text in answer["error"]
    assert client.live()
