"""How serving failures become answers: an HTTP status, a gRPC code, a socket error frame.

``ServeError`` is the one serving-specific member of the ``LaserError`` family: it carries the status a
transport answers with (and ``Retry-After`` for 503). Other laser errors map to a status by class;
anything else is a bug, answered with a generic 500 while the details (traceback) go to the log.
Messages shown to clients never carry file-system paths.
"""

from __future__ import annotations

import logging
import re

from laser.errors import ArtifactError, BackendError, ConfigError, InputError, LaserError, NotFoundError

log = logging.getLogger("laser.serve")

# Outcome label of each status in the request counter (bounded label values).
OUTCOMES = {400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not_found", 413: "too_large",
            499: "cancelled", 500: "error", 503: "unavailable", 504: "deadline"}

GRPC_CODES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
              413: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 503: "UNAVAILABLE",
              504: "DEADLINE_EXCEEDED"}


class ServeError(LaserError):
    """A request the server answers with ``status`` (400, 404, 413, 503, 504...) and ``message``."""

    def __init__(self, status: int, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def outcome(self) -> str:
        return OUTCOMES.get(self.status, "error")


# An absolute path (two or more components) anywhere in a message: keep only its last component.
_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s'\"/]+/)+([^\s'\"/]*)")


def public_message(text: str) -> str:
    """The message with absolute paths reduced to their last component (clients never see paths)."""
    return _PATH.sub(lambda m: m.group(1) or "…", text)


def as_serve_error(exc: BaseException) -> ServeError:
    """The ServeError a transport answers ``exc`` with; unexpected exceptions are logged here."""
    if isinstance(exc, ServeError):
        return exc
    if isinstance(exc, (InputError, ConfigError)):
        return ServeError(400, public_message(str(exc)))
    if isinstance(exc, NotFoundError):
        return ServeError(404, public_message(str(exc)))
    if isinstance(exc, (ArtifactError, BackendError, LaserError)):
        log.error("model error: %s", exc, exc_info=exc)
        return ServeError(500, public_message(str(exc)))
    log.error("internal error while serving a request", exc_info=exc)
    return ServeError(500, "internal server error; the server log has the details")
