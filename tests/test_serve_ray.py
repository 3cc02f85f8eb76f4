"""Ray Serve: laser's handler deployed as replicas behind Ray's proxy (slow: Ray takes ~20 s to start)."""

from __future__ import annotations

import socket
import time

import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ray_replicas_answer_the_open_inference_protocol(digits_artifact, tmp_path):
    pytest.importorskip("ray.serve")
    import httpx

    from laser.serve.ray import deploy, shutdown

    bundle = digits_artifact.save(tmp_path / "digits")
    port = _free_port()
    deploy([bundle], replicas=2, http_port=port, block=False, backend="echo", max_batch_size=4)
    try:
        url = f"http://127.0.0.1:{port}"
        end = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/v2/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < end, "Ray Serve did not become ready"
            time.sleep(0.5)
        body = {"inputs": [{"name": "input", "shape": [2, 1, 8, 8], "datatype": "FP32", "data": [0.25] * 128}]}
        out = httpx.post(url + "/v2/models/digits-cnn/infer", json=body, timeout=30).json()["outputs"][0]
        assert out["shape"] == [2, 10] and out["data"][0] == 0.25
        assert httpx.get(url + "/v2/models/digits-cnn/config").json()["max_batch_size"] == 4
    finally:
        shutdown()
