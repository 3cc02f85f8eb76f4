"""The Handler: one request lifecycle shared by every transport.

decode (the transport's parser, run inside the lifecycle so its errors are counted) → validate against
the model's spec (names, datatypes, shapes, byte sizes, batch limit) → queue in the model's batcher
(dynamic batching, bounded queue, deadline) → run → encode (selected outputs, classification).
HTTP, gRPC and the socket protocol are thin adapters that parse and serialise around ``Handler.infer``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from laser import __version__
from laser.serve.batching import Load
from laser.serve.codec import (
    InferRequest,
    InferResponse,
    Limits,
    OutputTensor,
    RequestedOutput,
    ShmRef,
    classification,
    datatype_of,
    raw_bytes,
    to_array,
)
from laser.serve.errors import ServeError, as_serve_error
from laser.serve.metrics import Metrics
from laser.serve.repository import ModelVersion, Repository
from laser.serve.settings import ModelSettings, parse_policy
from laser.serve.shm import SharedMemory
from laser.serve.tasks import TASKS, deadline

log = logging.getLogger("laser.serve")
DECOUPLED_STREAMS = 16  # decoupled requests producing at once; more wait for a thread

EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration", "model_repository", "statistics",
              "system_shared_memory", "sequence", "laser_tasks"]


class Handler:
    def __init__(self, repository: Repository, *, metrics: Metrics | None = None, limits: Limits | None = None,
                 model_control: bool = False, name: str = "laser", load: Load | None = None):
        self.repository = repository
        self.metrics = metrics or Metrics()
        self.limits = limits or Limits()
        self.model_control = model_control
        self.name = name
        self.draining = False
        self.load = load or repository.load_now or Load()  # the count the batchers read
        self.shm = SharedMemory()  # registered system shared-memory regions
        self.metrics.count_inflight(lambda: self.load.inflight)
        self._idle: asyncio.Event | None = None

    @property
    def inflight(self) -> int:
        return self.load.inflight

    # -- health and metadata ----------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Ready: not draining, the initial load is done and at least one model version serves."""
        return (not self.draining and self.repository.loaded
                and any(self.repository.versions(n) for n in self.repository.names()))

    def server_metadata(self) -> dict[str, Any]:
        return {"name": self.name, "version": __version__, "extensions": EXTENSIONS}

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            return self.repository.get(name, version).state == "READY" and not self.draining
        except ServeError as err:
            if err.status == 404 and not version:
                raise
            return False

    def model_metadata(self, name: str, version: str = "") -> dict[str, Any]:
        mv = self.repository.get(name, version)
        return {
            "name": mv.name,
            "versions": [v.version for v in self.repository.versions(name)],
            "platform": f"laser_{mv.artifact.format}",
            "inputs": [_tensor_meta(t) for t in _inputs(mv)],
            "outputs": [_tensor_meta(t) for t in _outputs(mv)],
        }

    def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        """Triton's model configuration (JSON form): what perf_analyzer and clients read."""
        mv = self.repository.get(name, version)
        s = mv.settings
        skip = 1 if mv.batchable else 0  # dims exclude the batch dim when max_batch_size > 0

        def tensor(t: Any, reshape: bool = False) -> dict[str, Any]:
            entry = {"name": t.name, "data_type": "TYPE_" + datatype_of(t.dtype).replace("BYTES", "STRING"),
                     "dims": [d if isinstance(d, int) else -1 for d in t.shape[skip:]]}
            if reshape and _reshaped(mv, t):  # Triton's way to write an input with no dims besides the batch
                entry.update(dims=[1], reshape={"shape": []})
            return entry

        kind, arg = parse_policy(s.version_policy)
        policy: dict[str, Any] = {"latest": {"num_versions": arg}} if kind == "latest" else (
            {"all": {}} if kind == "all" else {"specific": {"versions": sorted(arg)}})
        config: dict[str, Any] = {
            "name": mv.name, "platform": f"laser_{mv.artifact.format}", "backend": mv.backend,
            "version_policy": policy, "max_batch_size": mv.max_batch_size,
            "input": [tensor(t, reshape=True) for t in _inputs(mv)], "output": [tensor(t) for t in _outputs(mv)],
        }
        layout = _image_format(mv.artifact.preprocessing, config["input"])
        if layout:
            config["input"][0]["format"] = layout
        execution = mv.execution
        config["parameters"] = {"laser_execution": {"string_value": execution.strategy},
                                "laser_batch1_call_ms": {"string_value": "" if execution.call_ms is None
                                                         else f"{execution.call_ms:.4f}"},
                                "laser_execution_method": {"string_value": execution.method}}
        if mv.batcher.dynamic:
            config["dynamic_batching"] = {"preferred_batch_size": list(s.preferred_batch_sizes),
                                          "max_queue_delay_microseconds": int(s.max_queue_delay_ms * 1000)}
        if mv.decoupled:
            config["model_transaction_policy"] = {"decoupled": True}
        if mv.sequences is not None:
            config["sequence_batching"] = mv.sequences.config(
                lambda dtype: datatype_of(dtype).replace("BYTES", "STRING"), mv.spec, skip)
        return config

    def statistics(self, name: str = "", version: str = "") -> dict[str, Any]:
        """Triton's statistics extension: every loaded version of every model, of one model, or one version."""
        if not name and version:
            raise ServeError(400, "statistics for a version need the model name too")
        if version:
            versions = [self.repository.get(name, version)]
        else:
            versions = [mv for n in ([name] if name else self.repository.names()) for mv in self.repository.versions(n)]
        return {"model_stats": [self.metrics.statistics(mv.name, mv.version) for mv in versions]}

    # -- the request lifecycle ----------------------------------------------------------------
    async def infer(self, protocol: str, request: InferRequest | Callable[[], Any]) -> InferResponse:
        """Run one inference request; ``request`` may be a (sync or async) decoder, run inside the
        lifecycle so that malformed requests are counted like any other outcome."""
        return await self._lifecycle(protocol, self._infer, request)

    async def task(self, protocol: str, task: str, name: str, version: str, payload: bytes | Callable[[], Any],
                   params: Mapping[str, str]) -> dict[str, Any]:
        """A task endpoint (e.g. classify an image): the artifact's own pre/post-processing."""
        if task not in TASKS:
            raise ServeError(404, f"unknown task {task!r}; tasks: {sorted(TASKS)}")
        return await self._lifecycle(protocol, self._task, task, name, version, payload, params)

    async def _lifecycle(self, protocol: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        t0 = time.perf_counter()
        labels = ["", ""]  # model, version: set once the model is known (bounded label values)
        outcome = "error"
        self.load.inflight += 1
        try:
            if self.draining:
                raise ServeError(503, "the server is shutting down; retry on another replica", retry_after=5)
            result = await fn(labels, *args)
            outcome = "success"
            return result
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception as exc:
            err = as_serve_error(exc)
            outcome = err.outcome
            raise err from None
        finally:
            self.load.inflight -= 1
            self.metrics.observe_request(labels[0], labels[1], protocol, outcome, time.perf_counter() - t0)
            if self.inflight == 0 and self._idle is not None:
                self._idle.set()

    async def stream(self, protocol: str, request: InferRequest | Callable[[], Any],
                     emit: Callable[[InferResponse, bool], Awaitable[None]]) -> None:
        """Run one request of a stream: ``emit(response, final)`` once per response. A decoupled model
        answers with each output its runner yields (final False), then, when the request asks for it
        (``triton_enable_empty_final_response``), an empty response with final True; any other model
        answers once, final."""
        await self._lifecycle(protocol, self._stream, request, emit)

    async def _stream(self, labels: list[str], request: InferRequest | Callable[[], Any],
                      emit: Callable[[InferResponse, bool], Awaitable[None]]) -> None:
        req, mv = await self._open(labels, request)
        if not mv.decoupled:
            await emit(await self._run(mv, req), True)
            return
        feeds, _ = self._feeds(mv, req)
        wanted = self._wanted(mv, req)
        loop, items = asyncio.get_running_loop(), asyncio.Queue()  # type: ignore[var-annotated]
        stop = threading.Event()

        def produce() -> None:  # a worker thread walks the runner's generator
            try:
                for out in mv.runner.stream(feeds):
                    if stop.is_set():
                        return
                    loop.call_soon_threadsafe(items.put_nowait, (True, out))
                loop.call_soon_threadsafe(items.put_nowait, (False, None))
            except Exception as exc:
                loop.call_soon_threadsafe(items.put_nowait, (False, exc))

        worker = loop.run_in_executor(_stream_pool(), produce)
        try:
            while (item := await items.get())[0]:
                await emit(self._response(mv, req, wanted, item[1]), False)
            if item[1] is not None:
                raise item[1]
        finally:
            stop.set()
            if worker.done():
                worker.result()
        if req.empty_final:
            await emit(InferResponse(mv.name, mv.version, [], id=req.id), True)

    async def _open(self, labels: list[str], request: InferRequest | Callable[[], Any]) -> tuple[InferRequest, Any]:
        req = request() if callable(request) else request
        if inspect.isawaitable(req):
            req = await req
        mv = self.repository.get(req.model, req.version)
        labels[:] = [mv.name, mv.version]
        if req.sequence is not None and mv.sequences is None:
            raise ServeError(400, f"model {mv.name!r} is not a sequence (stateful) model: its config has no "
                                  "sequence_batching; drop sequence_id, sequence_start and sequence_end")
        return req, mv

    async def _infer(self, labels: list[str], request: InferRequest | Callable[[], Any]) -> InferResponse:
        req, mv = await self._open(labels, request)
        if mv.decoupled:
            raise ServeError(400, f"model {mv.name!r} is decoupled (one request, several responses): this end point "
                                  "doesn't support models with decoupled transaction policy; use gRPC ModelStreamInfer")
        return await self._run(mv, req)

    async def _run(self, mv: ModelVersion, req: InferRequest) -> InferResponse:
        feeds, n = self._feeds(mv, req)
        wanted = self._wanted(mv, req)
        due = deadline(req.timeout_us)
        if mv.sequences is not None:
            results = await mv.sequences.run(req.sequence, feeds, lambda f: mv.batcher.submit(f, n, due))
        else:
            results = await mv.batcher.submit(feeds, n, due)
        return self._response(mv, req, wanted, results)

    def _wanted(self, mv: ModelVersion, req: InferRequest) -> list[RequestedOutput]:
        known = [t.name for t in _outputs(mv)]
        wanted = req.outputs or [RequestedOutput(name) for name in known]
        seen: set[str] = set()
        for out in wanted:
            if out.name not in known:
                raise ServeError(400, f"model {mv.name!r} has no output {out.name!r}; outputs: {sorted(known)}")
            if out.name in seen:
                raise ServeError(400, f"output {out.name!r} is requested twice; name each output once")
            seen.add(out.name)
        return wanted

    def _response(self, mv: ModelVersion, req: InferRequest, wanted: list[RequestedOutput],
                  results: Mapping[str, np.ndarray]) -> InferResponse:
        outputs = []
        for out in wanted:
            arr = np.asarray(results[out.name])
            binary = req.binary_output if out.binary is None else out.binary
            if out.classification:
                arr = classification(arr, out.classification, mv.artifact.labels)
            tensor = OutputTensor(out.name, datatype_of(arr.dtype), tuple(arr.shape), arr, binary)
            if out.shm is not None:  # into the client's shared memory instead of the response
                data = raw_bytes(tensor)
                self.shm.write(out.shm, data, f"output {out.name!r}")
                tensor.shm = ShmRef(out.shm.region, out.shm.offset, len(data))
            outputs.append(tensor)
        return InferResponse(mv.name, mv.version, outputs, id=req.id)

    def _feeds(self, mv: ModelVersion, req: InferRequest) -> tuple[dict[str, np.ndarray], int]:
        specs = {t.name: t for t in _inputs(mv)}  # a sequence model's state inputs come from the server
        feeds: dict[str, np.ndarray] = {}
        for t in req.inputs:
            spec = specs.get(t.name)
            if spec is None:
                raise ServeError(400, f"model {mv.name!r} has no input {t.name!r}; inputs: {list(specs)}")
            if t.name in feeds:
                raise ServeError(400, f"input {t.name!r} is given twice")
            if t.shm is not None:
                t.raw = self.shm.read(t.shm, f"input {t.name!r}")
            want = datatype_of(spec.dtype)
            if t.datatype != want:
                raise ServeError(400, f"input {t.name!r} is {t.datatype}, model {mv.name!r} expects {want}")
            arr = to_array(t, self.limits)
            if _reshaped(mv, spec) and arr.ndim == len(spec.shape) + 1 and arr.shape[-1] == 1:
                arr = arr.reshape(arr.shape[:-1])  # [n, 1] as the config's dims [1], reshape [] say
            feeds[t.name] = arr
        # names complete, ranks, fixed dims, shared dim names (InputError -> 400)
        mv.spec.check_inputs(mv.sequences.check(feeds) if mv.sequences is not None else feeds)
        validate = getattr(mv.runner, "validate", None)  # a runner's own checks (e.g. texts are UTF-8), before
        if validate is not None:                          # the request joins a batch it would fail
            validate(feeds)
        if not mv.batchable:
            return feeds, 1
        n = int(next(iter(feeds.values())).shape[0])
        if not 1 <= n <= mv.max_batch_size:
            raise ServeError(400, f"batch of {n} samples; model {mv.name!r} takes 1 to {mv.max_batch_size} per "
                                  "request (max_batch_size); split the request")
        return feeds, n

    async def _task(self, labels: list[str], task: str, name: str, version: str, payload: Any,
                    params: Mapping[str, str]) -> dict[str, Any]:
        mv = self.repository.get(name, version)
        labels[:] = [mv.name, mv.version]
        body = payload() if callable(payload) else payload
        if inspect.isawaitable(body):
            body = await body
        result = await TASKS[task](mv, body, params)
        return {"model_name": mv.name, "model_version": mv.version, **result}

    # -- shutdown -----------------------------------------------------------------------------
    def begin_drain(self) -> None:
        """Ready goes false and new requests get 503; requests already in flight finish."""
        self.draining = True
        log.info("draining: ready=false, %d request(s) in flight", self.inflight, extra={"event": "draining"})

    async def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for in-flight requests to finish; True when none is left."""
        if self._idle is None:
            self._idle = asyncio.Event()
        if self.inflight == 0:
            return True
        self._idle.clear()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return self.inflight == 0
        return True


@functools.cache
def _stream_pool() -> ThreadPoolExecutor:
    """Threads that walk decoupled models' generators (apart from the loop's default pool, which loads models)."""
    return ThreadPoolExecutor(DECOUPLED_STREAMS, thread_name_prefix="laser-decoupled")


def compose(models: Sequence[Any], settings: ModelSettings, *, limits: Limits | None = None,
            model_control: bool = False, name: str = "laser") -> Handler:
    """The serving stack the in-process Server and every Ray replica run alike: one metrics registry, one
    count of the requests in the server, the repository of model versions and the Handler over them."""
    metrics, load = Metrics(), Load()
    repository = Repository(list(models), settings, metrics=metrics, load=load)
    return Handler(repository, metrics=metrics, limits=limits, model_control=model_control, load=load, name=name)


def _inputs(mv: ModelVersion) -> list[Any]:
    """The inputs a client sends: a sequence model's state inputs are fed by the server."""
    hidden = mv.sequences.state_inputs if mv.sequences is not None else set()
    return [t for t in mv.spec.inputs if t.name not in hidden]


def _outputs(mv: ModelVersion) -> list[Any]:
    hidden = mv.sequences.state_outputs if mv.sequences is not None else set()
    return [t for t in mv.spec.outputs if t.name not in hidden]


def _image_format(pre: Mapping[str, Any], inputs: list[dict[str, Any]]) -> str:
    """Triton's input ``format`` of an image model: where the channels of its one (C, H, W) or (H, W, C)
    input are, from the manifest's preprocessing (mode L: 1 channel, else 3); "" when not an image input."""
    if pre.get("type") != "image" or len(inputs) != 1 or len(inputs[0]["dims"]) != 3:
        return ""
    channels, dims = 1 if pre.get("mode") == "L" else 3, inputs[0]["dims"]
    if dims[0] == channels:
        return "FORMAT_NCHW"
    return "FORMAT_NHWC" if dims[-1] == channels else ""


def _reshaped(mv: ModelVersion, t: Any) -> bool:
    """An input with no dims besides the batch (or a scalar of a model without one): Triton configures it as
    dims [1] with reshape [], and clients send it with that trailing 1 (or without it)."""
    return len(t.shape) == (1 if mv.batchable else 0)


def _tensor_meta(t: Any) -> dict[str, Any]:
    return {"name": t.name, "datatype": datatype_of(t.dtype), "shape": [d if isinstance(d, int) else -1 for d in t.shape]}
