"""Server lifecycle and tooling: SIGTERM drains, `laser serve` / `laser perf`, the Python entry point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

import laser
from laser.cli.main import main, parser
from laser.serve import Server

SLOW_SERVER = textwrap.dedent("""
    import sys, time
    import laser
    from laser.runtime.echo import EchoRunner

    class Slow(EchoRunner):
        def _run(self, inputs):
            time.sleep(1.5)
            return super()._run(inputs)

    laser.serve("digits-cnn", backend=Slow, http_port=0, grpc_port=None, socket_port=None, warmup=False, grace_s=20)
""")


def test_sigterm_turns_ready_false_drains_in_flight_requests_and_exits_0(tmp_path):
    script = tmp_path / "serve_slow.py"
    script.write_text(SLOW_SERVER)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True, env=env)
    try:
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            if line.startswith("{") and json.loads(line).get("event") == "listening":
                port = json.loads(line)["port"]
        assert port, "the server did not report its port"
        url = f"http://127.0.0.1:{port}"
        end = time.monotonic() + 60
        while httpx.get(url + "/v2/health/ready").status_code != 200:
            assert time.monotonic() < end
            time.sleep(0.1)
        answer: dict[str, int] = {}
        body = {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.5] * 64}]}
        inflight = threading.Thread(target=lambda: answer.update(
            status=httpx.post(url + "/v2/models/digits-cnn/infer", json=body, timeout=30).status_code))
        inflight.start()
        time.sleep(0.5)  # the request is running now (1.5 s)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        assert httpx.get(url + "/v2/health/ready").status_code == 503  # draining: not ready, still answering
        late = httpx.post(url + "/v2/models/digits-cnn/infer", json=body, timeout=30)
        assert late.status_code == 503 and "shutting down" in late.json()["error"]
        inflight.join(30)
        assert answer == {"status": 200}  # the in-flight request finished
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


@pytest.fixture(scope="module")
def echo_server(digits_artifact):
    with Server([digits_artifact], http_port=0, grpc_port=0, socket_port=0, backend="echo") as s:
        yield s


def test_perf_measures_every_protocol_on_a_loopback_server(echo_server):
    from laser.serve.perf import perf

    s = echo_server
    for url in (s.http_url, f"grpc://{s.grpc_target}", f"laser://127.0.0.1:{s.ports['socket']}"):
        (level,) = perf(url, "digits-cnn", concurrency=(2,), duration_s=0.6, warmup_s=0.1)
        assert level.requests > 0 and level.errors == 0 and level.throughput_rps > 0, url
        assert level.p50_ms <= level.p90_ms <= level.p99_ms


def test_perf_cli_prints_a_table_and_json(echo_server, capsys):
    assert main(["perf", echo_server.http_url, "-m", "digits-cnn", "--concurrency", "1", "--duration", "0.3",
                 "--warmup", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["levels"][0]["concurrency"] == 1 and out["levels"][0]["requests"] > 0


@pytest.mark.parametrize("url", ["http://10.1.2.3:8000", "grpc://example.com:8001", "laser://0.0.0.0:8002"])
def test_perf_refuses_targets_that_are_not_loopback(url, capsys):
    assert main(["perf", url, "-m", "m", "--duration", "1"]) == 2
    assert "loopback" in capsys.readouterr().err


def test_serve_cli_options_map_to_server_settings():
    from laser.cli.serve import serve_options

    args = parser().parse_args(["serve", "repo", "--no-grpc", "--http-port", "9000", "--preferred-batch-sizes",
                                "2,4", "--max-batch-size", "4", "--version-policy", "all", "--max-body-mb", "1"])
    opts = serve_options(args)
    assert opts["grpc_port"] is None and opts["http_port"] == 9000 and opts["socket_port"] == 8002
    assert opts["preferred_batch_sizes"] == (2, 4) and opts["max_batch_size"] == 4
    assert opts["host"] == "127.0.0.1" and opts["token"] is None and opts["model_control"] is False
    assert opts["limits"].max_body_bytes == 1 << 20 and opts["version_policy"] == "all"


def test_laser_serve_is_callable_as_function_and_package(digits_artifact):
    import laser.serve.client  # binds the package as the attribute laser.serve

    server = laser.serve(digits_artifact, backend="echo", http_port=0, grpc_port=None, socket_port=None, block=False)
    try:
        assert httpx.get(server.http_url + "/v2/health/ready").json() == {"ready": True}
    finally:
        server.stop()


def test_packaged_grpc_descriptor_matches_the_proto(tmp_path):
    protoc = pytest.importorskip("grpc_tools.protoc")
    src = Path(laser.__file__).parent.parent
    out = tmp_path / "inference.desc"
    assert protoc.main(["protoc", f"-I{src}", f"--descriptor_set_out={out}",
                        str(src / "laser/serve/proto/inference.proto")]) == 0
    assert out.read_bytes() == (src / "laser/serve/proto/inference.desc").read_bytes(), \
        "inference.desc is stale: regenerate it (see laser/serve/proto/__init__.py)"


@pytest.mark.parametrize("transport", ["http_port", "grpc_port", "socket_port"])
def test_a_busy_port_is_a_clear_config_error(digits_artifact, transport):
    import socket

    from laser.errors import ConfigError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        ports = {"http_port": None, "grpc_port": None, "socket_port": None, transport: busy.getsockname()[1]}
        with pytest.raises(ConfigError, match="pick another"):
            Server([digits_artifact], backend="echo", **ports).start(timeout_s=60)
