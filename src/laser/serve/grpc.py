"""gRPC adapter (grpc.aio): ``inference.GRPCInferenceService`` over the Handler.

tritonclient.grpc always sends ``raw_input_contents`` and reads only ``raw_output_contents``, so
outputs are always raw. Message-size limits are set explicitly (gRPC's default 4 MB is smaller than a
batch of 8 ImageNet images), and SO_REUSEPORT is off so a busy port fails loudly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np

from laser.errors import require
from laser.serve import schema
from laser.serve.codec import (
    InferRequest,
    InferResponse,
    InputTensor,
    Limits,
    RequestedOutput,
    bearer_ok,
    check_name,
    model_version,
    parse_shape,
    raw_bytes,
    sequence_of,
    shm_ref,
)
from laser.serve.control import load, unload_params
from laser.serve.errors import GRPC_CODES, ServeError, as_serve_error
from laser.serve.handler import Handler
from laser.serve.proto import RPCS, SERVICE, message
from laser.serve.shm import cuda_refused

PROTOCOL = "grpc"
STREAM_INFLIGHT = 64  # requests of one ModelStreamInfer stream handled at once

# Typed contents field per datatype, for requests that do not use raw_input_contents.
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
            "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
            "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
            "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def _param(p: Any) -> Any:
    which = p.WhichOneof("parameter_choice")
    return getattr(p, which) if which else None


def _params(field: Any) -> dict[str, Any]:
    return {k: _param(v) for k, v in field.items()}


def request_from_proto(msg: Any, limits: Limits, time_remaining: float | None) -> InferRequest:
    """An InferRequest from a ModelInferRequest; parameters are checked by the same schema as JSON's."""
    model, version = model_version(msg.model_name, msg.model_version)
    if len(msg.inputs) > limits.max_inputs or len(msg.outputs) > limits.max_inputs:
        raise ServeError(413, f"{len(msg.inputs)} inputs / {len(msg.outputs)} outputs in one request; at most "
                              f"{limits.max_inputs} of each are accepted")
    iparams = [schema.parse(schema.InputParams, _params(t.parameters), f"input {t.name[:40]!r}") for t in msg.inputs]
    raw = list(msg.raw_input_contents)
    in_body = sum(p.shared_memory_region is None for p in iparams)
    if raw and len(raw) != in_body:
        raise ServeError(400, f"raw_input_contents has {len(raw)} entries for {in_body} inputs sent in the message")
    inputs = []
    for t, p in zip(msg.inputs, iparams):
        shape = parse_shape(list(t.shape), t.name, limits)
        if p.shared_memory_region is not None:
            inputs.append(InputTensor(t.name, t.datatype, shape, shm=shm_ref(p, f"input {t.name!r}")))
        elif raw:
            inputs.append(InputTensor(t.name, t.datatype, shape, raw=raw.pop(0)))
        elif t.datatype in CONTENTS:
            values = getattr(t.contents, CONTENTS[t.datatype])
            inputs.append(InputTensor(t.name, t.datatype, shape,
                                      data=list(values) if t.datatype == "BYTES" else np.asarray(values)))
        else:
            raise ServeError(400, f"input {t.name!r}: datatype {t.datatype[:20]!r} must be sent in raw_input_contents")
    rp = schema.parse(schema.RequestParams, _params(msg.parameters), "the request parameters")
    timeout = rp.timeout
    if time_remaining is not None:  # the gRPC deadline is a timeout too
        timeout = min(timeout or 1 << 62, max(1, int(time_remaining * 1e6)))
    outputs = None
    if msg.outputs:
        outputs = []
        for o in msg.outputs:
            op = schema.parse(schema.OutputParams, _params(o.parameters), f"output {o.name[:40]!r}")
            outputs.append(RequestedOutput(o.name, True, op.classification,
                                           shm_ref(op, f"output {o.name!r}") if op.shared_memory_region else None))
    return InferRequest(model=model, version=version, id=msg.id, inputs=inputs, outputs=outputs,
                        timeout_us=timeout, binary_output=True,
                        sequence=sequence_of(rp.sequence_id, rp.sequence_start, rp.sequence_end),
                        empty_final=rp.triton_enable_empty_final_response)


def response_to_proto(resp: InferResponse) -> Any:
    msg = message("ModelInferResponse")(model_name=resp.model, model_version=resp.version, id=resp.id)
    for out in resp.outputs:
        t = msg.outputs.add()
        t.name, t.datatype = out.name, out.datatype
        t.shape.extend(out.shape)
        if out.shm is not None:  # written into shared memory; an empty entry keeps the indexes aligned
            t.parameters["shared_memory_region"].string_param = out.shm.region
            t.parameters["shared_memory_offset"].int64_param = out.shm.offset
            t.parameters["shared_memory_byte_size"].int64_param = out.shm.byte_size
            msg.raw_output_contents.append(b"")
        else:
            msg.raw_output_contents.append(raw_bytes(out))
    return msg


def decode(req_type: Any, data: bytes) -> Any:
    """A request message from its wire bytes; bytes that do not parse as ``req_type`` are a 400."""
    from google.protobuf.message import DecodeError

    try:
        return req_type.FromString(data)
    except (DecodeError, ValueError, TypeError) as exc:
        raise ServeError(400, f"the message does not decode as {req_type.DESCRIPTOR.name}: {str(exc)[:80]}") from None


def _config_to_proto(cfg: dict[str, Any]) -> Any:
    c = message("ModelConfig")(name=cfg["name"], platform=cfg["platform"], backend=cfg["backend"],
                               max_batch_size=cfg["max_batch_size"])
    dtypes = message("ModelInput").DESCRIPTOR.fields_by_name["data_type"].enum_type.values_by_name
    formats = message("ModelInput").Format
    for t in cfg["input"]:
        c.input.add(name=t["name"], data_type=dtypes[t["data_type"]].number, dims=t["dims"],
                    format=formats.Value(t.get("format", "FORMAT_NONE")))
    for t in cfg["output"]:
        c.output.add(name=t["name"], data_type=dtypes[t["data_type"]].number, dims=t["dims"])
    for entry, t in [*zip(c.input, cfg["input"]), *zip(c.output, cfg["output"])]:
        if "reshape" in t:
            entry.reshape.SetInParent()
            entry.reshape.shape.extend(t["reshape"]["shape"])
    policy = cfg["version_policy"]
    if "latest" in policy:
        c.version_policy.latest.num_versions = policy["latest"]["num_versions"]
    elif "all" in policy:
        c.version_policy.all.SetInParent()
    else:
        c.version_policy.specific.versions.extend(policy["specific"]["versions"])
    if "dynamic_batching" in cfg:
        db = cfg["dynamic_batching"]
        c.dynamic_batching.preferred_batch_size.extend(db["preferred_batch_size"])
        c.dynamic_batching.max_queue_delay_microseconds = db["max_queue_delay_microseconds"]
    if "sequence_batching" in cfg:
        sb = cfg["sequence_batching"]
        c.sequence_batching.max_sequence_idle_microseconds = sb["max_sequence_idle_microseconds"]
        c.sequence_batching.oldest.max_candidate_sequences = sb["oldest"]["max_candidate_sequences"]
        for st in sb["state"]:
            c.sequence_batching.state.add(input_name=st["input_name"], output_name=st["output_name"],
                                          data_type=dtypes[st["data_type"]].number, dims=st["dims"])
    if cfg.get("model_transaction_policy", {}).get("decoupled"):
        c.model_transaction_policy.decoupled = True
    for key, value in cfg.get("parameters", {}).items():
        c.parameters[key].string_value = value["string_value"]
    return c


def servicer(handler: Handler) -> dict[str, Callable[[Any, Any], Awaitable[Any]]]:
    """RPC name -> coroutine(request message, context) -> response message."""
    from google.protobuf import json_format

    M = message
    limits = handler.limits

    async def server_live(req: Any, ctx: Any) -> Any:
        return M("ServerLiveResponse")(live=True)

    async def server_ready(req: Any, ctx: Any) -> Any:
        return M("ServerReadyResponse")(ready=handler.ready)

    async def model_ready(req: Any, ctx: Any) -> Any:
        return M("ModelReadyResponse")(ready=handler.model_ready(*model_version(req.name, req.version)))

    async def server_metadata(req: Any, ctx: Any) -> Any:
        return M("ServerMetadataResponse")(**handler.server_metadata())

    async def model_metadata(req: Any, ctx: Any) -> Any:
        meta = handler.model_metadata(*model_version(req.name, req.version))
        resp = M("ModelMetadataResponse")(name=meta["name"], versions=meta["versions"], platform=meta["platform"])
        for key in ("inputs", "outputs"):
            for t in meta[key]:
                getattr(resp, key).add(**t)
        return resp

    async def model_infer(req: Any, ctx: Any) -> Any:
        resp = await handler.infer(PROTOCOL, lambda: request_from_proto(req, limits, ctx.time_remaining()))
        return response_to_proto(resp)

    async def model_config(req: Any, ctx: Any) -> Any:
        return M("ModelConfigResponse")(config=_config_to_proto(handler.model_config(*model_version(req.name, req.version))))

    async def model_statistics(req: Any, ctx: Any) -> Any:
        name, version = model_version(req.name, req.version) if req.name else ("", req.version)
        return json_format.ParseDict(handler.statistics(name, version), M("ModelStatisticsResponse")())

    async def repository_index(req: Any, ctx: Any) -> Any:
        resp = M("RepositoryIndexResponse")()
        for row in handler.repository.index(ready=req.ready):
            resp.models.add(**row)
        return resp

    def control(action: str, response: str) -> Callable[[Any, Any], Awaitable[Any]]:
        async def run(req: Any, ctx: Any) -> Any:
            if not handler.model_control:
                raise ServeError(403, "model control is disabled; start the server with --model-control")
            model = model_version(req.model_name, "")[0]
            params = {k: _param(v) for k, v in req.parameters.items()}
            if action == "load":
                await load(handler.repository, model, params)
            else:
                unload_params(params)
                await handler.repository.unload(model)
            return M(response)()
        return run

    return {"ServerLive": server_live, "ServerReady": server_ready, "ModelReady": model_ready,
            "ServerMetadata": server_metadata, "ModelMetadata": model_metadata, "ModelInfer": model_infer,
            "ModelConfig": model_config, "RepositoryIndex": repository_index, "ModelStatistics": model_statistics,
            **_shm_servicer(handler),
            "RepositoryModelLoad": control("load", "RepositoryModelLoadResponse"),
            "RepositoryModelUnload": control("unload", "RepositoryModelUnloadResponse")}


def _shm_servicer(handler: Handler) -> dict[str, Callable[[Any, Any], Awaitable[Any]]]:
    """The system (and refused CUDA) shared-memory RPCs."""
    M = message

    async def shm_status(req: Any, ctx: Any) -> Any:
        resp = M("SystemSharedMemoryStatusResponse")()
        for row in handler.shm.status(req.name and check_name("shared memory region name", req.name)):
            resp.regions[row["name"]].CopyFrom(M("SystemSharedMemoryStatusResponse").RegionStatus(**row))
        return resp

    async def shm_register(req: Any, ctx: Any) -> Any:
        handler.shm.register(req.name, req.key, req.offset, req.byte_size)
        return M("SystemSharedMemoryRegisterResponse")()

    async def shm_unregister(req: Any, ctx: Any) -> Any:
        handler.shm.unregister(req.name and check_name("shared memory region name", req.name))
        return M("SystemSharedMemoryUnregisterResponse")()

    async def cuda_status(req: Any, ctx: Any) -> Any:
        return M("CudaSharedMemoryStatusResponse")()  # none can be registered here

    async def cuda_refuse(req: Any, ctx: Any) -> Any:
        raise cuda_refused()

    async def cuda_unregister(req: Any, ctx: Any) -> Any:
        return M("CudaSharedMemoryUnregisterResponse")()  # none can be registered, so none is left

    return {"SystemSharedMemoryStatus": shm_status, "SystemSharedMemoryRegister": shm_register,
            "SystemSharedMemoryUnregister": shm_unregister, "CudaSharedMemoryStatus": cuda_status,
            "CudaSharedMemoryRegister": cuda_refuse, "CudaSharedMemoryUnregister": cuda_unregister}


def stream_infer(handler: Handler) -> Callable[[AsyncIterator[bytes], Any], AsyncIterator[Any]]:
    """ModelStreamInfer: each request of the stream runs through the Handler as soon as it arrives (up to
    STREAM_INFLIGHT at once; reading pauses beyond), each answer is sent when ready, matched by ``id``. A
    request that fails is answered in the stream with ``error_message``; the stream itself goes on."""
    Request, Answer = message("ModelInferRequest"), message("ModelStreamInferResponse")
    limits = handler.limits

    async def run(requests: AsyncIterator[bytes], ctx: Any) -> AsyncIterator[Any]:
        answers: asyncio.Queue = asyncio.Queue()
        slots = asyncio.Semaphore(STREAM_INFLIGHT)
        tasks: set[asyncio.Task] = set()

        async def one(data: bytes) -> None:
            got: list[Any] = []

            def parse() -> InferRequest:
                got.append(decode(Request, data))
                return request_from_proto(got[0], limits, ctx.time_remaining())
            async def emit(resp: InferResponse, final: bool) -> None:
                msg = response_to_proto(resp)
                msg.parameters["triton_final_response"].bool_param = final
                answers.put_nowait(Answer(infer_response=msg))
            try:
                await handler.stream(PROTOCOL, parse, emit)
            except ServeError as err:
                answers.put_nowait(Answer(error_message=str(err), infer_response=message("ModelInferResponse")(
                    id=got[0].id if got else "", model_name=got[0].model_name if got else "")))
            finally:
                slots.release()

        async def read() -> None:
            try:
                async for data in requests:
                    await slots.acquire()
                    task = asyncio.ensure_future(one(data))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                while tasks:
                    await asyncio.wait(set(tasks))
            finally:
                answers.put_nowait(None)  # the client closed its side and every answer is queued

        reader = asyncio.ensure_future(read())
        try:
            while (answer := await answers.get()) is not None:
                yield answer
            reader.result()  # a broken stream ends the call with its error
        finally:
            reader.cancel()
            for task in list(tasks):
                task.cancel()

    return run


async def start_server(handler: Handler, host: str, port: int, token: str | None = None) -> tuple[Any, int]:
    """A started grpc.aio server on ``host:port`` (0: a free port) and the port it bound."""
    grpc = require("grpc", "serve", "grpcio")
    size = handler.limits.max_body_bytes + (1 << 16)  # tensors + message framing
    server = grpc.aio.server(options=[("grpc.max_send_message_length", size),
                                      ("grpc.max_receive_message_length", size), ("grpc.so_reuseport", 0)])
    token_bytes = token.encode() if token else None

    async def authenticate(ctx: Any) -> None:
        if token_bytes is not None:
            auth = str(dict(ctx.invocation_metadata() or ()).get("authorization", ""))
            if not bearer_ok(auth.encode(), token_bytes):
                await ctx.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token; send "
                                                                 "metadata 'authorization: Bearer <token>'")

    def wrap(fn: Callable[[Any, Any], Awaitable[Any]], req_type: Any) -> Callable[[bytes, Any], Awaitable[Any]]:
        async def call(data: bytes, ctx: Any) -> Any:
            await authenticate(ctx)
            try:
                return await fn(decode(req_type, data), ctx)
            except Exception as exc:
                err = as_serve_error(exc)
            code = getattr(grpc.StatusCode, GRPC_CODES.get(err.status, "INTERNAL"))
            trailing = (("retry-after", str(err.retry_after)),) if err.retry_after else ()
            await ctx.abort(code, str(err), trailing_metadata=trailing)
        return call

    handlers = {}
    for name, fn in servicer(handler).items():
        req_type, resp_type = (message(m) for m in RPCS[name])
        # The message is decoded inside the call, so that one that does not parse is INVALID_ARGUMENT.
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            wrap(fn, req_type), request_deserializer=None, response_serializer=resp_type.SerializeToString)
    streaming = stream_infer(handler)

    async def stream(requests: AsyncIterator[bytes], ctx: Any) -> AsyncIterator[Any]:
        await authenticate(ctx)
        async for answer in streaming(requests, ctx):
            yield answer

    handlers["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
        stream, request_deserializer=None, response_serializer=message("ModelStreamInferResponse").SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:  # grpcio >= 1.5x raises; older versions return 0
        bound = 0
    if bound == 0:
        from laser.errors import ConfigError

        raise ConfigError(f"cannot listen for gRPC on {host}:{port} (address in use?); pick another --grpc-port")
    await server.start()
    return server, bound
