"""The structure of every JSON body the server reads, as pydantic models of the Open Inference Protocol.

HTTP bodies and the socket protocol's JSON header are validated here before anything else looks at them,
so a wrongly-typed field anywhere (a datatype that is not a string, a shape of floats, a boolean flag
given as a list) is one 400 naming the field instead of an exception deep in the codec. Fields are strict
(no "1" -> 1 coercion). Request, input and output objects refuse unknown keys; their ``parameters``
objects accept custom keys (the parameters extension) but type the ones the protocol defines.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from laser.serve.errors import ServeError

NonNegative = Annotated[StrictInt, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Params(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class SharedMemoryRef(_Params):
    """A tensor that lives in a registered shared-memory region instead of the body."""

    shared_memory_region: StrictStr | None = None
    shared_memory_byte_size: NonNegative | None = None
    shared_memory_offset: NonNegative = 0


class InputParams(SharedMemoryRef):
    binary_data_size: NonNegative | None = None


class OutputParams(SharedMemoryRef):
    binary_data: StrictBool | None = None
    classification: NonNegative = 0


class RequestParams(_Params):
    timeout: NonNegative | None = None  # microseconds
    priority: NonNegative = 0
    binary_data_output: StrictBool = False
    sequence_id: NonNegative | StrictStr | None = None
    sequence_start: StrictBool = False
    sequence_end: StrictBool = False
    triton_enable_empty_final_response: StrictBool = False  # a decoupled model's stream ends with an empty answer


class InputBody(_Strict):
    name: StrictStr
    datatype: StrictStr
    shape: list[NonNegative]
    parameters: InputParams = InputParams()
    data: Any = None


class OutputBody(_Strict):
    name: StrictStr
    parameters: OutputParams = OutputParams()


class InferBody(_Strict):
    id: StrictStr | StrictInt = ""
    parameters: RequestParams = RequestParams()
    inputs: list[InputBody] = Field(min_length=1)
    outputs: list[OutputBody] | None = None


class SocketBody(InferBody):
    """The socket protocol's JSON header: a REST inference request that also names its model, or an op."""

    model_name: StrictStr
    model_version: StrictStr = ""


class SocketOp(_Strict):
    op: StrictStr
    model_name: StrictStr = ""
    model_version: StrictStr = ""


class IndexBody(_Strict):
    repository_name: StrictStr = ""
    ready: StrictBool = False


class LoadBody(_Strict):
    """Triton's load request: ``parameters.config`` (a JSON model configuration) and ``file:`` overrides."""

    parameters: dict[str, StrictStr | StrictBool | StrictInt] = {}


class RegisterBody(_Strict):
    """System shared memory registration."""

    key: StrictStr
    offset: NonNegative = 0
    byte_size: NonNegative


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], obj: Any, what: str) -> M:
    """``obj`` as ``model``, or a 400 naming the first wrong field (``inputs.0.datatype: ...``)."""
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"]) or "(the body)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ServeError(400, f"{what}: field {where!r}: {first['msg']}{more}") from None
