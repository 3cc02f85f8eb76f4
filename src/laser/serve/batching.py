"""Dynamic batching: one bounded queue and one worker per model version.

Requests wait in a FIFO queue. The worker takes the oldest live request and adds compatible ones (same
non-batch shapes and dtypes) until the batch holds ``max_batch_size`` samples, reaches the largest
preferred size, or ``max_queue_delay_ms`` has passed since the oldest arrived; when the queue runs
empty on a preferred size it goes at once. Inputs are concatenated on dim 0, run on one thread (the
runner keeps all cores busy with its own intra-op threads) and the outputs are split back.

A full queue answers 503 at once; a request whose deadline passed is dropped before compute (504);
a request whose client went away (its future cancelled) is removed from the queue.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from laser.errors import ConfigError
from laser.serve.errors import ServeError
from laser.serve.metrics import Metrics

log = logging.getLogger("laser.serve")

Arrays = dict[str, np.ndarray]

# A model whose batch-1 call takes under this many seconds (measured once, at load) runs on the event loop
# itself: the hop to the worker thread and back costs ~100 µs, more than such a model (a tiny CNN, the echo
# backend), and a lone request skips the queue; batches of it stay on the loop while batch-1 time × samples
# stays under the same bound.
INLINE_S = 200e-6


class Load:
    """Requests inside the server now (decoding, queued, running, encoding): the Handler counts them, the
    batchers read them (waiting for a batch to fill only pays when another request can arrive)."""

    def __init__(self) -> None:
        self.inflight = 0


@dataclass(frozen=True)
class Execution:
    """How a model version runs its batches, decided once at load from a measured batch-1 call."""

    strategy: str  # "inline": on the event loop, lone requests skip the queue; "thread": the worker thread
    call_ms: float | None  # batch-1 call time, median of 5 after warm-up (None: not measured)
    method: str

    @classmethod
    def measure(cls, run: Callable[[Arrays], Arrays], feeds: Arrays) -> Execution:
        from laser.timing import side_by_side

        t0 = time.perf_counter()
        run(feeds)
        first = time.perf_counter() - t0
        if first > 10 * INLINE_S:  # clearly a worker-thread model: no need to time it more
            return cls("thread", first * 1e3, "measured at load: one batch-1 call after warm-up")
        times = side_by_side({"call": lambda: run(feeds)}, rounds=1, block=5, switch=0, warmup=0)["call"]
        ms = float(np.median(times))
        return cls("inline" if ms / 1e3 < INLINE_S else "thread", ms,
                   "measured at load: median of 5 batch-1 calls after warm-up")

    @classmethod
    def unmeasured(cls) -> Execution:
        return cls("thread", None, "not measured (warm-up off): the worker thread, which never blocks the loop")

    @property
    def inline(self) -> bool:
        return self.strategy == "inline"

    def inline_for(self, samples: int) -> bool:
        """Whether a batch of ``samples`` runs on the loop: an inline model's batch-1 time × samples (an upper
        bound: per-sample time falls with the batch) stays under INLINE_S."""
        return self.inline and self.call_ms is not None and self.call_ms / 1e3 * samples < INLINE_S

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "call_ms": self.call_ms, "method": self.method}


@dataclass(eq=False)
class _Item:
    feeds: Mapping[str, np.ndarray]
    n: int  # samples (dim 0)
    key: tuple  # what must match to share a batch: names, per-sample shapes, dtypes
    future: asyncio.Future
    enqueued: float  # time.monotonic()
    deadline: float | None


class Batcher:
    def __init__(self, run: Callable[[Arrays], Arrays], *, model: str, version: str, max_batch_size: int,
                 max_queue_delay_ms: float = 0.0, preferred_batch_sizes: Sequence[int] = (),
                 max_queue_size: int = 128, dynamic: bool = True, batched: bool = True,
                 metrics: Metrics | None = None, load: Load | None = None, execution: Execution | None = None):
        # batched=False: the model has no batch dim; every request runs alone, outputs returned whole.
        if max_batch_size < 1 or max_queue_size < 1 or max_queue_delay_ms < 0:
            raise ConfigError(f"batcher needs max_batch_size >= 1, max_queue_size >= 1, max_queue_delay_ms >= 0; "
                              f"got {max_batch_size}, {max_queue_size}, {max_queue_delay_ms}")
        self.model, self.version = model, version
        self._run_fn = run
        self.max_batch_size = max_batch_size
        self.delay_s = max_queue_delay_ms / 1000.0
        self.preferred = frozenset(b for b in preferred_batch_sizes if b <= max_batch_size)
        self.flush_size = max(self.preferred, default=max_batch_size)
        self.max_queue_size = max_queue_size
        self.batched = batched
        self.dynamic = dynamic and batched
        # Waiting for a batch to fill only pays when another request can arrive in time: not when the
        # server holds no request outside this batch (``load``: decoding, queued, running, encoding;
        # concurrency 1 goes at once) and not when requests have been arriving further apart than the
        # delay left (e.g. each spends 5 ms in image preprocessing first).
        self._load = load
        self.execution = execution or Execution.unmeasured()
        self._last_arrival = 0.0
        self._gap = float("inf")  # seconds between arrivals, exponential moving average
        self._queue: collections.deque[_Item] = collections.deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"laser-{model}-{version}")
        self._task: asyncio.Task | None = None
        self._busy = False  # the worker holds a batch (forming or running)
        self._closing = False
        m = metrics
        self._m = None if m is None else (m.queue_seconds.labels(model, version), m.compute_seconds.labels(model, version),
                                          m.batch_size.labels(model, version), m.queue_depth.labels(model, version))
        self.stats = None if m is None else m.new_stats(model, version)  # Triton's statistics extension

    # -- producer side ------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.model}-{self.version}")

    async def submit(self, feeds: Mapping[str, np.ndarray], n: int, deadline: float | None = None) -> Arrays:
        """Queue one request of ``n`` samples; its outputs when its batch has run."""
        if self._closing:
            raise ServeError(503, f"model {self.model!r} version {self.version} is being unloaded; retry",
                             retry_after=1)
        if len(self._queue) >= self.max_queue_size:
            raise ServeError(503, f"model {self.model!r} queue is full ({self.max_queue_size} requests waiting); "
                                  "retry later", retry_after=1)
        now = time.monotonic()
        if self._last_arrival:
            gap = min(now - self._last_arrival, 4 * self.delay_s)  # an idle spell counts as a long gap, bounded
            self._gap = gap if self._gap == float("inf") else 0.8 * self._gap + 0.2 * gap
        self._last_arrival = now
        if deadline is not None and deadline <= now:
            raise ServeError(504, "the request's timeout passed before it was queued; it was not run")
        if self.execution.inline and not self._busy and not self._queue and self._alone(1):
            return self._run_alone(feeds, n)
        key = tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(feeds.items()))
        item = _Item(feeds, n, key, asyncio.get_running_loop().create_future(), now, deadline)
        self._queue.append(item)
        item.future.add_done_callback(lambda f: self._discard(item) if f.cancelled() else None)
        self._wakeup.set()
        if self._m:
            self._m[3].set(len(self._queue))
        if deadline is None:
            return await item.future
        try:
            return await asyncio.wait_for(item.future, deadline - now)
        except TimeoutError:
            waited = (time.monotonic() - now) * 1000
            raise ServeError(504, f"the request's timeout passed after {waited:.1f} ms waiting for model "
                                  f"{self.model!r}; it was dropped") from None

    def _discard(self, item: _Item) -> None:
        # The client went away or its deadline passed: take the request out of the queue.
        with contextlib.suppress(ValueError):  # ValueError: already taken into a batch
            self._queue.remove(item)

    # -- worker side --------------------------------------------------------------------------
    def _pop_live(self, peek: bool = False) -> _Item | None:
        q, now = self._queue, time.monotonic()
        while q:
            item = q[0]
            if item.future.done():  # cancelled: client gone
                q.popleft()
            elif item.deadline is not None and item.deadline <= now:
                q.popleft()
                item.future.set_exception(ServeError(504, "the request's timeout passed while it waited in the "
                                                          "queue; it was dropped before compute"))
            else:
                return item if peek else q.popleft()
        return None

    async def _loop(self) -> None:
        while True:
            first = self._pop_live()
            if first is None:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            self._busy = True
            batch, size = [first], first.n
            if self.dynamic:
                flush_at = first.enqueued + self.delay_s
                while size < self.flush_size:
                    nxt = self._pop_live(peek=True)
                    if nxt is None:
                        timeout = flush_at - time.monotonic()
                        if size in self.preferred or timeout <= 0 or self._closing or self._alone(len(batch)) or (
                                self._last_arrival + self._gap > flush_at):
                            break
                        self._wakeup.clear()
                        try:
                            await asyncio.wait_for(self._wakeup.wait(), timeout)
                        except TimeoutError:
                            break
                        continue
                    if nxt.key != first.key or size + nxt.n > self.max_batch_size:
                        break
                    self._queue.popleft()
                    batch.append(nxt)
                    size += nxt.n
            try:
                await self._run(batch, size)
            except Exception as exc:  # pragma: no cover - _run answers every item itself
                log.error("batcher failure", exc_info=exc)
            finally:
                self._busy = False

    def _alone(self, requests: int) -> bool:
        """The server holds no request beyond these ``requests`` (unknown without a Load: assume others)."""
        return self._load is not None and self._load.inflight <= requests

    def _run_alone(self, feeds: Mapping[str, np.ndarray], n: int) -> Arrays:
        """The only request in the server, for a tiny model: run it right here, with no queue and no
        worker task in between (what makes concurrency-1 latency of small models low)."""
        self._busy = True
        try:
            if self._m:
                self._m[0].observe(0.0)
            t0 = time.perf_counter()
            joined = _concat([feeds])
            outputs, seconds = self._timed(joined)
            outputs = self._finish(outputs, seconds, n)
            if self.stats:
                self.stats.queued(0.0)
                self.stats.executed(n, 1, time.perf_counter() - t0 - seconds, seconds, 0.0)
            return outputs
        except ServeError:
            raise
        except Exception as exc:
            raise _run_error(self.model, exc) from None
        finally:
            self._busy = False

    def _finish(self, outputs: Arrays, seconds: float, size: int) -> Arrays:
        """Bookkeeping after a model call: metrics, the batch-dim check."""
        if self._m:
            self._m[1].observe(seconds)
            self._m[2].observe(size)
        if self.batched:
            _check_batch(outputs, size)
        return outputs

    async def _run(self, batch: list[_Item], size: int) -> None:
        live = [it for it in batch if not it.future.done()]
        if not live:
            return
        start = time.monotonic()
        if self._m:
            for it in live:
                self._m[0].observe(start - it.enqueued)
            self._m[3].set(len(self._queue))
        if self.stats:
            for it in live:
                self.stats.queued(start - it.enqueued)
        t0 = time.perf_counter()
        feeds = _concat([it.feeds for it in live])
        input_s = time.perf_counter() - t0
        size = sum(it.n for it in live)
        try:
            if self.execution.inline_for(size):
                timed = self._timed(feeds)  # cheaper than the hop to the worker thread and back
            else:
                timed = await asyncio.get_running_loop().run_in_executor(self._executor, self._timed, feeds)
            outputs = self._finish(*timed, size)
            infer_s = timed[1]
        except Exception as exc:
            if len(live) > 1:  # isolate the request that broke the batch: run each alone
                for it in live:
                    await self._run([it], it.n)
                return
            err = exc if isinstance(exc, ServeError) else _run_error(self.model, exc)
            if not live[0].future.done():
                live[0].future.set_exception(err)
            return
        t1 = time.perf_counter()
        if not self.batched:
            if not live[0].future.done():
                live[0].future.set_result(outputs)
        else:
            offset = 0
            for it in live:
                if not it.future.done():
                    it.future.set_result({k: v[offset:offset + it.n] for k, v in outputs.items()})
                offset += it.n
        if self.stats:
            self.stats.executed(size, len(live), input_s, infer_s, time.perf_counter() - t1)

    def _timed(self, feeds: Arrays) -> tuple[Arrays, float]:
        t0 = time.perf_counter()
        out = self._run_fn(feeds)
        return out, time.perf_counter() - t0

    async def close(self, timeout: float = 30.0) -> None:
        """Stop taking requests, let queued ones finish (up to ``timeout`` s), release the thread."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
            for it in list(self._queue):
                if not it.future.done():
                    it.future.set_exception(ServeError(503, f"model {self.model!r} was unloaded", retry_after=1))
        self._executor.shutdown(wait=False)


def _concat(parts: list[Mapping[str, np.ndarray]]) -> Arrays:
    if len(parts) == 1:  # no copy; torch wants writable arrays (frombuffer views are read-only)
        return {k: v if v.flags.writeable else v.copy() for k, v in parts[0].items()}
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}


def _check_batch(outputs: Mapping[str, np.ndarray], size: int) -> None:
    for name, arr in outputs.items():
        if arr.ndim == 0 or arr.shape[0] != size:
            raise ServeError(500, f"output {name!r} has shape {list(arr.shape)} for a batch of {size}; "
                                  "the model does not keep the batch dim (serve it with max_batch_size 1)")


def _run_error(model: str, exc: BaseException) -> ServeError:
    from laser.errors import InputError

    if isinstance(exc, InputError):
        return ServeError(400, str(exc))
    log.error("model %s failed to run", model, exc_info=exc)
    return ServeError(500, f"model {model!r} failed to run this request; the server log has the details")
