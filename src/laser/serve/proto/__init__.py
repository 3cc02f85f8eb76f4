"""The Open Inference Protocol gRPC messages, built at run time from ``inference.desc``.

``inference.desc`` is the FileDescriptorSet compiled from ``inference.proto``. The message classes
live in a private descriptor pool: tritonclient (and others) register the same ``inference.*`` names
in protobuf's default pool, and two files defining one symbol there cannot be imported together.
Built from the descriptor, the classes also work across protobuf 4.x-6.x without generated code.

Regenerate after editing the .proto (grpcio-tools is in the ``dev`` extra)::

    python -m grpc_tools.protoc -I src --descriptor_set_out=src/laser/serve/proto/inference.desc \
        src/laser/serve/proto/inference.proto
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

SERVICE = "inference.GRPCInferenceService"


@functools.cache
def messages() -> dict[str, Any]:
    """Message classes by full name, e.g. ``messages()["inference.ModelInferRequest"]``."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    data = (resources.files(__name__) / "inference.desc").read_bytes()
    files = list(descriptor_pb2.FileDescriptorSet.FromString(data).file)
    pool = descriptor_pool.DescriptorPool()
    for f in files:
        pool.Add(f)
    return message_factory.GetMessages(files, pool=pool)


def message(name: str) -> Any:
    """One message class by short name: ``message("ModelInferRequest")``."""
    return messages()[f"inference.{name}"]


# Unary RPC name -> (request message, response message), as in the service definition. The one streaming
# RPC, ModelStreamInfer, takes ModelInferRequest and answers ModelStreamInferResponse.
RPCS = {
    name: (name + "Request", name + "Response")
    for name in ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
                 "ModelConfig", "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload", "ModelStatistics",
                 "SystemSharedMemoryStatus", "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister",
                 "CudaSharedMemoryStatus", "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister")
}
