"""Triton's client library against ``laser serve`` on the models its published examples expect.

The default suite drives the ``simple`` model (INT32 add/sub, a real ONNX bundle built by
tests/triton_models.py) the way Triton's ``simple_*_client.py`` examples do, over HTTP and gRPC, with
inline, binary and shared-memory tensors. The examples themselves (repository
triton-inference-server/client, src/python/examples) are not copied here; to run them unchanged, put
them in a folder and point LASER_TRITON_EXAMPLES at it: each ``simple_*.py`` found runs against the
server and the test lists which passed (the ones in EXPECTED_FAILURES are known to fail, with why).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import triton_models

th = pytest.importorskip("tritonclient.http")
tg = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

from laser.serve import Server  # noqa: E402

EXPECTED_FAILURES = {
    # CUDA shared memory: no GPU path here, registration is refused with one line
    "simple_grpc_cudashm_client.py": "no CUDA shared memory", "simple_http_cudashm_client.py": "no CUDA shared memory",
    "simple_grpc_aio_cudashm_client.py": "no CUDA shared memory", "simple_http_aio_cudashm_client.py": "no CUDA shared memory",
    # their first check counts the models of Triton's own example repository (7 or 8, with its TensorFlow and
    # custom-backend models); the load/unload steps after it run in test_model_control_as_the_example_does_it
    **dict.fromkeys(["simple_http_model_control.py", "simple_grpc_model_control.py", "simple_http_aio_model_control.py",
                     "simple_grpc_aio_model_control.py"], "counts Triton's example repository"),
}

A = np.arange(16, dtype=np.int32)[None]
B = np.full((1, 16), -1, dtype=np.int32)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = triton_models.repository(tmp_path_factory.mktemp("triton-repo"))
    # the health/metadata examples check that the server calls itself "triton" (laser serve --server-name)
    with Server([repo], http_port=0, grpc_port=0, socket_port=None, server_name="triton", model_control=True) as s:
        yield s


def _inputs(mod, binary: bool = True):
    inputs = [mod.InferInput("INPUT0", [1, 16], "INT32"), mod.InferInput("INPUT1", [1, 16], "INT32")]
    if mod is th:
        inputs[0].set_data_from_numpy(A, binary_data=False)
        inputs[1].set_data_from_numpy(B, binary_data=binary)
    else:
        inputs[0].set_data_from_numpy(A)
        inputs[1].set_data_from_numpy(B)
    return inputs


def test_simple_add_sub_over_http_and_grpc(server):
    http = th.InferenceServerClient(server.http_url.removeprefix("http://"))
    outputs = [th.InferRequestedOutput("OUTPUT0", binary_data=True), th.InferRequestedOutput("OUTPUT1", binary_data=False)]
    for outs in (outputs, None):
        r = http.infer("simple", _inputs(th), outputs=outs, query_params={"test_1": 1})
        np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), A + B)
        np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), A - B)
        assert r.as_numpy("OUTPUT0").dtype == np.int32
    assert len(http.get_inference_statistics(model_name="simple")["model_stats"]) == 1
    grpc = tg.InferenceServerClient(server.grpc_target)
    r = grpc.infer("simple", _inputs(tg), outputs=[tg.InferRequestedOutput("OUTPUT0"), tg.InferRequestedOutput("OUTPUT1")],
                   headers={"test": "1"})
    np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), A - B)
    assert len(grpc.get_inference_statistics(model_name="simple").model_stats) == 1
    assert grpc.get_model_config("simple").config.name == "simple" and grpc.is_model_ready("simple")
    assert grpc.get_server_metadata().name == "triton" == http.get_server_metadata()["name"]
    for client, mod in ((http, th), (grpc, tg)):
        with pytest.raises(InferenceServerException) as err:
            client.infer("wrong_model_name", _inputs(mod))
        assert err.value.message().startswith("Request for unknown model")


def test_simple_string_and_identity_on_bytes_tensors(server):
    """simple_grpc_string_infer_client.py's calls: ONNX string tensors behind BYTES inputs and outputs."""
    as_bytes = np.vectorize(lambda v: str(v).encode(), otypes=[np.object_])
    for client, mod in ((th.InferenceServerClient(server.http_url.removeprefix("http://")), th),
                        (tg.InferenceServerClient(server.grpc_target), tg)):
        inputs = [mod.InferInput("INPUT0", [1, 16], "BYTES"), mod.InferInput("INPUT1", [1, 16], "BYTES")]
        inputs[0].set_data_from_numpy(as_bytes(A))
        inputs[1].set_data_from_numpy(as_bytes(B))
        r = client.infer("simple_string", inputs)
        np.testing.assert_array_equal(r.as_numpy("OUTPUT0").astype(np.int32), A + B)
        np.testing.assert_array_equal(r.as_numpy("OUTPUT1").astype(np.int32), A - B)
        for data in (np.array([[b"he\x00llo"] * 16], dtype=np.object_),  # an embedded NUL
                     np.array([[b"\x00\x01\x02\x03"] * 16], dtype=np.bytes_)):  # binary blobs
            inp = mod.InferInput("INPUT0", list(data.shape), "BYTES")
            inp.set_data_from_numpy(data)
            out = client.infer("simple_identity", [inp]).as_numpy("OUTPUT0")
            assert [bytes(v) for v in out.ravel()] == [bytes(v) for v in data.ravel()]


def test_simple_over_system_shared_memory(server):
    import tritonclient.utils.shared_memory as shm

    client = th.InferenceServerClient(server.http_url.removeprefix("http://"))
    client.unregister_system_shared_memory()
    client.unregister_cuda_shared_memory()
    size = A.nbytes
    key = f"/laser_test_simple_{os.getpid()}"
    out_h = shm.create_shared_memory_region("out", key + "_out", 2 * size)
    in_h = shm.create_shared_memory_region("in", key + "_in", 2 * size)
    try:
        shm.set_shared_memory_region(in_h, [A[0]])
        shm.set_shared_memory_region(in_h, [B[0]], offset=size)
        client.register_system_shared_memory("in", key + "_in", 2 * size)
        client.register_system_shared_memory("out", key + "_out", 2 * size)
        inputs = [th.InferInput("INPUT0", [1, 16], "INT32"), th.InferInput("INPUT1", [1, 16], "INT32")]
        inputs[0].set_shared_memory("in", size)
        inputs[1].set_shared_memory("in", size, offset=size)
        outputs = [th.InferRequestedOutput("OUTPUT0", binary_data=True), th.InferRequestedOutput("OUTPUT1", binary_data=True)]
        outputs[0].set_shared_memory("out", size)
        outputs[1].set_shared_memory("out", size, offset=size)
        r = client.infer("simple", inputs, outputs=outputs)
        o1 = r.get_output("OUTPUT1")
        got = shm.get_contents_as_numpy(out_h, np.int32, o1["shape"], offset=size)
        np.testing.assert_array_equal(got, A - B)
        np.testing.assert_array_equal(shm.get_contents_as_numpy(out_h, np.int32, [1, 16]), A + B)
        client.unregister_system_shared_memory()
    finally:
        shm.destroy_shared_memory_region(in_h)
        shm.destroy_shared_memory_region(out_h)


def test_model_control_as_the_example_does_it(server):
    """simple_http_model_control.py's steps (its first check, 7 models in Triton's own example repository,
    is about that repository's contents)."""
    client = th.InferenceServerClient(server.http_url.removeprefix("http://"))
    client.load_model("simple")
    assert client.is_model_ready("simple")
    with pytest.raises(InferenceServerException) as err:
        client.load_model("simple", config='"parameters": {"config": {{"max_batch_size": "16"}}}')
    assert "failed to load" in err.value.message()
    client.load_model("simple", config='{"max_batch_size":"16"}')
    assert client.get_model_config("simple")["max_batch_size"] == 16
    client.unload_model("simple")
    assert not client.is_model_ready("simple")
    with pytest.raises(InferenceServerException) as err:
        client.load_model("wrong_model_name")
    assert "failed to load" in err.value.message()
    client.load_model("simple", config='{"max_batch_size":"8"}')  # as the other tests expect it
    assert client.is_model_ready("simple")


def test_sequences_as_the_sequence_examples_send_them(server):
    """simple_{http,grpc}_sequence_sync_infer_client.py and the gRPC stream one on ``simple_sequence``:
    integer and UUID correlation ids, OUTPUT = INPUT (+1 on a sequence's first request)."""
    import queue
    import uuid

    values = [0, 11, 7, -3]
    expected = [values[0] + 1, *values[1:]]

    def one(mod, value):
        inp = mod.InferInput("INPUT", [1, 1], "INT32")
        inp.set_data_from_numpy(np.full((1, 1), value, np.int32))
        return [inp], [mod.InferRequestedOutput("OUTPUT")]

    for client, mod, sid in ((th.InferenceServerClient(server.http_url.removeprefix("http://")), th, 1000),
                             (tg.InferenceServerClient(server.grpc_target), tg, str(uuid.uuid4()))):
        got = []
        for i, v in enumerate(values):
            inputs, outputs = one(mod, v)
            r = client.infer("simple_sequence", inputs, outputs=outputs, sequence_id=sid, sequence_start=i == 0,
                             sequence_end=i == len(values) - 1)
            got.append(int(r.as_numpy("OUTPUT")[0][0]))
        assert got == expected
    grpc, answers = tg.InferenceServerClient(server.grpc_target), queue.Queue()
    grpc.start_stream(callback=lambda result, error: answers.put(error or result))
    try:
        for sid in (1001, 1002):
            for i, v in enumerate(values):
                inputs, outputs = one(tg, v * (sid - 1000))
                grpc.async_stream_infer("simple_sequence", inputs, outputs=outputs, request_id=f"{sid}_{i}",
                                        sequence_id=sid, sequence_start=i == 0, sequence_end=i == len(values) - 1)
        results = [answers.get(timeout=30) for _ in range(2 * len(values))]
    finally:
        grpc.stop_stream()
    by_seq: dict[str, list[int]] = {}
    for r in results:
        assert not isinstance(r, InferenceServerException), r
        by_seq.setdefault(r.get_response().id.split("_")[0], []).append(int(r.as_numpy("OUTPUT")[0][0]))
    assert by_seq == {"1001": expected, "1002": [2 * values[0] + 1, *(2 * v for v in values[1:])]}


def test_the_aio_clients_infer_in_parallel(server):
    """simple_{http,grpc}_aio_infer_client.py's calls: two requests at once over asyncio."""
    import asyncio

    import tritonclient.grpc.aio as tga
    import tritonclient.http.aio as tha

    async def main() -> None:
        for mod, url in ((tha, server.http_url.removeprefix("http://")), (tga, server.grpc_target)):
            client = mod.InferenceServerClient(url)
            try:
                results = await asyncio.gather(*(client.infer("simple", _inputs(mod)) for _ in range(2)))
                for r in results:
                    np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), A + B)
                stats = await client.get_inference_statistics(model_name="simple")  # aiohttp asks for gzip here
                assert len(stats["model_stats"] if mod is tha else stats.model_stats) == 1
            finally:
                await client.close()

    asyncio.run(main())


# image_client.py / grpc_image_client.py runs on digits-cnn (FP32 [N, 1, 8, 8], FORMAT_NCHW, 10 logits):
# protocol, async, streaming. image_client.py's HTTP runs read the config with attrdict (not installed here:
# `pip install --target DIR attrdict` and put DIR on PYTHONPATH); without it they are skipped.
IMAGE_RUNS = {"image_client.py": [["-i", "grpc"], ["-i", "grpc", "-a"], ["-i", "grpc", "--streaming"], ["-i", "http"],
                                  ["-i", "http", "-a"]],
              "grpc_image_client.py": [[], ["-a"], ["--streaming"]]}


def _run_example(script: Path, url: str, *args: str) -> tuple[bool, str]:
    run = subprocess.run([sys.executable, str(script), "-u", url, *args], capture_output=True, text=True, timeout=120)
    lines = [ln for ln in (run.stdout + run.stderr).strip().splitlines() if not ln.startswith(("Unclosed", "conn"))]
    return run.returncode == 0, (lines or [""])[-1][:200]


@pytest.mark.skipif(not os.environ.get("LASER_TRITON_EXAMPLES"), reason="set LASER_TRITON_EXAMPLES to a folder of "
                    "Triton's src/python/examples to run them unchanged")
def test_published_examples_run_unchanged(server, tmp_path):
    from PIL import Image

    folder = Path(os.environ["LASER_TRITON_EXAMPLES"])
    scripts = sorted(p for p in folder.glob("simple_*.py"))
    assert scripts, f"no simple_*.py in {folder}"
    results = {}
    for script in scripts:
        url = server.grpc_target if "_grpc_" in script.name else server.http_url.removeprefix("http://")
        results[script.name], last = _run_example(script, url)
        print(f"{script.name}: {'PASS' if results[script.name] else 'FAIL ' + last}")
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (32, 32), "white").save(images / "a.png")
    Image.new("L", (20, 28), 128).save(images / "b.jpg")
    has_attrdict = subprocess.run([sys.executable, "-c", "import importlib.util as u; assert u.find_spec('attrdict')"],
                                  capture_output=True).returncode == 0  # (importing it needs the example's patch)
    with Server(["digits-cnn"], http_port=0, grpc_port=0, socket_port=None, server_name="triton") as s:
        for name, runs in IMAGE_RUNS.items():
            if not (folder / name).is_file():
                continue
            for args in runs:
                if "http" in args and not has_attrdict:
                    continue
                url = s.http_url.removeprefix("http://") if "http" in args else s.grpc_target
                key = " ".join([name, *args])
                results[key], last = _run_example(folder / name, url, "-m", "digits-cnn", "-c", "3", "-b", "2",
                                                  *args, str(images))
                print(f"{key}: {'PASS' if results[key] else 'FAIL ' + last}")
    unexpected = {name for name, ok in results.items() if not ok and name not in EXPECTED_FAILURES}
    assert not unexpected, f"failed: {sorted(unexpected)}"


def test_string_inputs_with_a_value_range_get_numeric_examples_and_a_model_no_backend_runs_is_one_error(
        tmp_path, monkeypatch):
    import laser
    from laser.errors import BackendError
    from laser.runtime import auto, run

    monkeypatch.setattr(auto, "_DECISIONS", {})  # decide afresh (the server's load cached a decision)

    art = triton_models.simple_string(tmp_path)  # no value_range: example inputs are words, Cast fails
    with pytest.raises(BackendError, match="no backend could run 'simple_string'"):
        run(art, backend="auto")
    bundle = art.save(tmp_path / "bundle")
    triton_models.numbers_in(bundle.location, (-5, 5))
    feeds = laser.load(bundle.location).spec.example_inputs(batch=2)
    values = [int(v) for v in feeds["INPUT0"].ravel()]
    assert feeds["INPUT0"].shape == (2, 16) and all(-5 <= v < 5 for v in values)


def test_inputs_without_dims_besides_the_batch_are_configured_with_reshape_as_triton_writes_them(tmp_path):
    art = triton_models.doubler(tmp_path)
    with Server([art], http_port=0, grpc_port=0, socket_port=None, backend="onnxruntime") as s:
        http, grpc = th.InferenceServerClient(s.http_url.removeprefix("http://")), tg.InferenceServerClient(s.grpc_target)
        cfg = http.get_model_config("doubler")
        assert (cfg["input"][0]["dims"], cfg["input"][0]["reshape"]) == ([1], {"shape": []})
        assert cfg["output"][0]["dims"] == [] and "reshape" not in cfg["output"][0]  # outputs come as the model gives them
        pcfg = grpc.get_model_config("doubler").config
        assert list(pcfg.input[0].dims) == [1] and pcfg.input[0].HasField("reshape") and not pcfg.input[0].reshape.shape
        assert not pcfg.output[0].HasField("reshape")
        x = np.arange(3, dtype=np.float32)
        for client, mod in ((http, th), (grpc, tg)):
            for shape in ([3, 1], [3]):  # as the config says, and as the model takes it
                inp = mod.InferInput("x", shape, "FP32")
                inp.set_data_from_numpy(x.reshape(shape))
                np.testing.assert_array_equal(client.infer("doubler", [inp]).as_numpy("y"), 2 * x)


def test_a_decoupled_model_streams_one_response_per_value_and_unary_calls_are_refused(server):
    """simple_grpc_custom_repeat.py's calls on ``repeat_int32`` (torch module with a ``stream`` generator)."""
    import queue

    grpc = tg.InferenceServerClient(server.grpc_target)
    http = th.InferenceServerClient(server.http_url.removeprefix("http://"))
    assert http.get_model_config("repeat_int32")["model_transaction_policy"] == {"decoupled": True}
    assert grpc.get_model_config("repeat_int32").config.model_transaction_policy.decoupled
    values = np.arange(100, 105, dtype=np.int32)

    def inputs(mod):
        ins = [mod.InferInput("IN", [5], "INT32"), mod.InferInput("DELAY", [5], "UINT32"),
               mod.InferInput("WAIT", [1], "UINT32")]
        for inp, arr in zip(ins, (values, np.full(5, 20, np.uint32), np.zeros(1, np.uint32))):
            inp.set_data_from_numpy(arr)
        return ins

    got: queue.Queue = queue.Queue()
    grpc.start_stream(callback=lambda result, error: got.put(error or result))
    try:
        grpc.async_stream_infer("repeat_int32", inputs(tg), request_id="r1", enable_empty_final_response=True)
        grpc.async_stream_infer("simple", _inputs(tg), request_id="s1")  # an ordinary model: one final answer
        answers = [got.get(timeout=30) for _ in range(7)]
    finally:
        grpc.stop_stream()
    assert not [a for a in answers if isinstance(a, InferenceServerException)], answers
    by_id: dict[str, list] = {}
    for a in answers:
        r = a.get_response()
        by_id.setdefault(r.id, []).append((r.parameters["triton_final_response"].bool_param, a))
    assert [final for final, _ in by_id["r1"]] == [False] * 5 + [True]
    assert [int(a.as_numpy("OUT")[0]) for _, a in by_id["r1"][:5]] == values.tolist()
    assert by_id["r1"][5][1].get_response().outputs == []  # the empty final response
    assert [final for final, _ in by_id["s1"]] == [True]
    np.testing.assert_array_equal(by_id["s1"][0][1].as_numpy("OUTPUT0"), A + B)
    for client, mod in ((http, th), (grpc, tg)):
        with pytest.raises(InferenceServerException, match="decoupled transaction policy"):
            client.infer("repeat_int32", inputs(mod))
