"""Dynamic batching: batches form, are split back, bounded queue, deadlines, cancellation."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from laser.runtime.echo import EchoRunner
from laser.serve import ServeError, Server
from laser.serve.batching import Batcher, Execution, Load


class Recorder:
    """A run function that doubles its input and records every batch it was given."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.batches: list[np.ndarray] = []

    def __call__(self, feeds):
        time.sleep(self.delay_s)
        x = feeds["x"]
        if np.isnan(x).any():
            raise ValueError("NaN input")
        self.batches.append(x.copy())
        return {"y": x * 2}


def _x(value: float, n: int = 1, width: int = 3) -> dict[str, np.ndarray]:
    return {"x": np.full((n, width), value, dtype=np.float32)}


def run(coro):
    return asyncio.run(coro)



def _load(inflight: int) -> Load:
    load = Load()
    load.inflight = inflight
    return load


def test_concurrent_requests_share_batches_and_get_their_own_rows_back():
    rec = Recorder()

    async def main():
        b = Batcher(rec, model="m", version="1", max_batch_size=4, max_queue_delay_ms=200)
        b.start()
        outs = await asyncio.gather(*(b.submit(_x(i), 1) for i in range(6)))
        await b.close()
        return outs

    outs = run(main())
    assert [len(x) for x in rec.batches] == [4, 2]
    for i, out in enumerate(outs):
        np.testing.assert_array_equal(out["y"], np.full((1, 3), 2 * i))


def test_preferred_batch_size_goes_without_waiting_for_the_delay():
    rec = Recorder()

    async def main():
        b = Batcher(rec, model="m", version="1", max_batch_size=8, max_queue_delay_ms=5000, preferred_batch_sizes=[2])
        b.start()
        t0 = time.monotonic()
        await asyncio.gather(b.submit(_x(1), 1), b.submit(_x(2), 1))
        waited = time.monotonic() - t0
        await b.close()
        return waited

    assert run(main()) < 2.0
    assert [len(x) for x in rec.batches] == [2]


def test_a_lone_request_does_not_wait_when_nothing_else_is_in_flight():
    rec = Recorder()

    async def main():
        b = Batcher(rec, model="m", version="1", max_batch_size=8, max_queue_delay_ms=5000, load=_load(1))
        b.start()
        t0 = time.monotonic()
        await b.submit(_x(1), 1)
        waited = time.monotonic() - t0
        await b.close()
        return waited

    assert run(main()) < 2.0


def test_sparse_arrivals_do_not_wait_for_a_batch_that_cannot_fill():
    rec = Recorder()

    async def main():
        # Others are in flight (e.g. still in image preprocessing) but arrive 150 ms apart: waiting the
        # 100 ms delay would only add latency.
        b = Batcher(rec, model="m", version="1", max_batch_size=8, max_queue_delay_ms=100, load=_load(5))
        b.start()
        waits = []
        for i in range(4):
            t0 = time.monotonic()
            await b.submit(_x(i), 1)
            waits.append(time.monotonic() - t0)
            await asyncio.sleep(0.15)
        await b.close()
        return waits

    waits = run(main())
    assert max(waits[1:]) < 0.05, waits


def test_requests_with_different_sample_shapes_never_share_a_batch():
    rec = Recorder()

    async def main():
        b = Batcher(rec, model="m", version="1", max_batch_size=8, max_queue_delay_ms=100)
        b.start()
        await asyncio.gather(b.submit(_x(1, width=3), 1), b.submit(_x(2, width=5), 1), b.submit(_x(3, width=3), 1))
        await b.close()

    run(main())
    assert sorted(x.shape for x in rec.batches) == [(1, 3), (1, 5), (1, 3)] or \
        sorted(x.shape for x in rec.batches) == [(1, 3), (1, 3), (1, 5)]
    assert all(len({row.shape for row in batch}) == 1 for batch in rec.batches)


def test_a_full_queue_answers_503_with_retry_after():
    rec = Recorder(delay_s=0.3)

    async def main():
        b = Batcher(rec, model="m", version="1", max_batch_size=1, max_queue_size=2, dynamic=False)
        b.start()
        results = await asyncio.gather(*(b.submit(_x(i), 1) for i in range(5)), return_exceptions=True)
        await b.close()
        return results

    errors = [r for r in run(main()) if isinstance(r, ServeError)]
    assert errors and all(e.status == 503 and e.retry_after for e in errors)
    assert "queue is full" in str(errors[0])


def test_an_expired_request_is_dropped_before_compute_with_504():
    rec = Recorder(delay_s=0.3)

    async def main():
        b = Batcher(rec, model="m", version="1", max_batch_size=1, dynamic=False)
        b.start()
        slow = asyncio.ensure_future(b.submit(_x(1), 1))
        await asyncio.sleep(0.05)  # the worker is busy with `slow` now
        with pytest.raises(ServeError) as err:
            await b.submit(_x(7), 1, deadline=time.monotonic() + 0.05)
        await slow
        await b.close()
        return err.value

    err = run(main())
    assert err.status == 504
    assert all(not (batch == 7).any() for batch in rec.batches)  # never computed


def test_a_cancelled_request_leaves_the_queue_and_is_never_run():
    rec = Recorder(delay_s=0.3)

    async def main():
        b = Batcher(rec, model="m", version="1", max_batch_size=1, dynamic=False)
        b.start()
        busy = asyncio.ensure_future(b.submit(_x(1), 1))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(b.submit(_x(9), 1))
        await asyncio.sleep(0.01)
        depth_before = b.depth
        gone.cancel()  # what a client disconnect does
        await asyncio.sleep(0.01)
        depth_after = b.depth
        await busy
        await b.close()
        return depth_before, depth_after

    assert run(main()) == (1, 0)
    assert all(not (batch == 9).any() for batch in rec.batches)


def test_a_request_that_breaks_its_batch_fails_alone():
    rec = Recorder()

    async def main():
        b = Batcher(rec, model="m", version="1", max_batch_size=4, max_queue_delay_ms=200)
        b.start()
        results = await asyncio.gather(b.submit(_x(1), 1), b.submit(_x(np.nan), 1), b.submit(_x(3), 1),
                                       return_exceptions=True)
        await b.close()
        return results

    good1, bad, good3 = run(main())
    assert isinstance(bad, ServeError) and bad.status == 500 and "server log" in str(bad)
    np.testing.assert_array_equal(good1["y"], np.full((1, 3), 2.0))
    np.testing.assert_array_equal(good3["y"], np.full((1, 3), 6.0))


def test_fast_models_run_on_the_loop_and_slow_ones_on_the_worker_thread():
    threads: dict[str, list[str]] = {"fast": [], "slow": []}

    def make(kind: str, delay_s: float):
        def run(feeds):
            threads[kind].append(threading.current_thread().name)
            if delay_s:
                time.sleep(delay_s)
            return {"y": feeds["x"]}
        return run

    async def main():
        for kind, delay in (("fast", 0.0), ("slow", 0.001)):
            fn = make(kind, delay)
            execution = Execution.measure(fn, _x(0))  # what loading a model version does, once
            threads[kind].clear()
            b = Batcher(fn, model=kind, version="1", max_batch_size=1, dynamic=False, execution=execution)
            b.start()
            for i in range(30):
                await b.submit(_x(i), 1)
            await b.close()

    run(main())
    assert threads["fast"] and all(name == "MainThread" for name in threads["fast"])  # decided at load, not per call
    assert all(name.startswith("laser-slow") for name in threads["slow"])


# -- through the server -------------------------------------------------------------------------
class SlowEcho(EchoRunner):
    """Echo that takes 40 ms per call whatever the batch: batching is what makes it fast."""

    delay_s = 0.04

    def _run(self, inputs):
        time.sleep(self.delay_s)
        return super()._run(inputs)


def _batch_sizes(metrics: str) -> dict[str, float]:
    return {line.split('le="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines() if line.startswith("laser_batch_size_bucket")}


def test_concurrent_load_is_batched_and_overflow_and_deadlines_are_refused(digits_artifact):
    import httpx
    import tritonclient.http as th

    x = np.zeros((1, 1, 8, 8), np.float32)
    body = {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": x.ravel().tolist()}]}
    with Server([digits_artifact], http_port=0, grpc_port=0, socket_port=None, backend=SlowEcho, warmup=False,
                max_batch_size=8, max_queue_delay_ms=20, max_queue_size=8) as s:
        statuses: list[int] = []

        def client(n: int) -> None:
            with httpx.Client(base_url=s.http_url, timeout=30) as c:
                statuses.extend(c.post("/v2/models/digits-cnn/infer", json=body).status_code for _ in range(n))

        threads = [threading.Thread(target=client, args=(4,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert statuses.count(200) == 32
        with httpx.Client(base_url=s.http_url) as c:
            buckets = _batch_sizes(c.get("/metrics").text)
        assert buckets["1.0"] < buckets["+Inf"], buckets  # some executions held more than one request

        # Overflow: 8 waiting at most; 30 at once -> some get 503 with Retry-After.
        async def burst():
            async with httpx.AsyncClient(base_url=s.http_url, timeout=30) as c:
                return await asyncio.gather(*(c.post("/v2/models/digits-cnn/infer", json=body) for _ in range(30)))

        answers = asyncio.run(burst())
        full = [r for r in answers if r.status_code == 503]
        assert full and full[0].headers["retry-after"] == "1" and "queue is full" in full[0].json()["error"]
        assert all(r.status_code in (200, 503) for r in answers)

        # The same over gRPC is UNAVAILABLE (mapped back to 503 by laser's client).
        from laser.serve.client import GrpcClient

        grpc_errors: list[int] = []

        def grpc_call() -> None:
            with GrpcClient(s.grpc_target) as g:
                try:
                    g.infer("digits-cnn", {"input": x})
                except ServeError as exc:
                    grpc_errors.append(exc.status)

        threads = [threading.Thread(target=grpc_call) for _ in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert grpc_errors and set(grpc_errors) == {503}

        # Deadline: a 1 ms timeout (tritonclient's `timeout`, microseconds) behind a busy worker -> 504.
        client = th.InferenceServerClient(s.http_url.removeprefix("http://"))
        inp = th.InferInput("input", [1, 1, 8, 8], "FP32")
        inp.set_data_from_numpy(x)
        with httpx.Client(base_url=s.http_url, timeout=30) as c:
            blocker = threading.Thread(target=c.post, args=("/v2/models/digits-cnn/infer",), kwargs={"json": body})
            blocker.start()
            time.sleep(0.01)
            with pytest.raises(Exception) as err:
                client.infer("digits-cnn", [inp], timeout=1000)
            blocker.join(30)
        assert "504" in str(err.value.status()) and "timeout passed" in str(err.value)
        assert client.infer("digits-cnn", [inp]).as_numpy("logits").shape == (1, 10)


class CountingSlowEcho(EchoRunner):
    calls = 0

    def _run(self, inputs):
        type(self).calls += 1
        time.sleep(0.5)
        return super()._run(inputs)


def test_an_http_client_that_disconnects_is_removed_from_the_queue(digits_artifact):
    import httpx

    body = {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}]}
    with Server([digits_artifact], http_port=0, grpc_port=None, socket_port=None, backend=CountingSlowEcho,
                warmup=False, max_batch_size=1) as s:
        url = s.http_url + "/v2/models/digits-cnn/infer"
        blocker = threading.Thread(target=httpx.post, args=(url,), kwargs={"json": body, "timeout": 30})
        blocker.start()
        time.sleep(0.15)  # the worker is busy with the blocker now
        with pytest.raises(httpx.TimeoutException):
            httpx.post(url, json=body, timeout=0.15)  # gives up while queued: the connection closes
        blocker.join(30)
        time.sleep(0.7)  # had it stayed queued, it would have run by now
        metrics = httpx.get(s.http_url + "/metrics").text
    assert CountingSlowEcho.calls == 1
    assert 'laser_requests_total{model="digits-cnn",outcome="cancelled",protocol="http",version="1"} 1.0' in metrics


def test_execution_is_inline_for_a_tiny_model_and_threaded_for_a_slow_one():
    feeds = {"x": np.ones((1, 4), np.float32)}
    tiny = Execution.measure(lambda f: {"y": f["x"]}, feeds)
    assert tiny.strategy == "inline" and tiny.inline_for(1) and tiny.call_ms is not None
    assert not tiny.inline_for(10**9)  # a huge batch of even a tiny model goes to the worker thread
    slow = Execution.measure(Recorder(delay_s=0.005), feeds)
    assert slow.strategy == "thread" and not slow.inline_for(1) and slow.call_ms >= 5.0
    assert Execution.unmeasured().strategy == "thread"
