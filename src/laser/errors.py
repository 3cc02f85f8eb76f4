"""One exception family. Every message says what was wrong, the value seen, and what to do.

The CLI turns any ``LaserError`` into one readable line and a non-zero exit code; servers turn them
into 4xx answers. Anything that is not a ``LaserError`` is a bug in laser.
"""

from __future__ import annotations


class LaserError(Exception):
    """Base class of every error laser raises on purpose."""

    exit_code = 1


class ConfigError(LaserError, ValueError):
    """A parameter, option or recipe value is invalid (caught at construction)."""

    exit_code = 2


class NotFoundError(LaserError, LookupError):
    """A model name, file, backend, dataset or layer does not exist."""

    exit_code = 2


class ArtifactError(LaserError):
    """A bundle on disk is missing a file, has an altered file, or has a bad manifest."""


class UnsafeCheckpointError(ArtifactError):
    """A file can only be read by unpickling, which can run arbitrary code."""


class DependencyError(LaserError, ImportError):
    """An optional dependency is not installed; the message carries the install hint."""


class InputError(LaserError, ValueError):
    """Inputs do not match the model's spec (name, dtype, shape) or cannot be read."""


class ExportError(LaserError):
    """A model could not be exported to the requested format."""


class ParityError(LaserError):
    """An exported or compressed artifact disagrees with its parent beyond tolerance."""


class BackendError(LaserError):
    """A runtime backend cannot run this artifact (format, provider, device)."""


class BudgetError(LaserError):
    """A requested constraint or budget cannot be parsed or cannot be met."""


def require(module: str, extra: str, pip_name: str | None = None):
    """Import an optional dependency or fail with the exact install hint.

    >>> ort = require("onnxruntime", "onnx")
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        name = pip_name or module.split(".")[0]
        raise DependencyError(
            f"{module!r} is not installed ({exc}); install it with "
            f"`pip install 'laser[{extra}]'` (or `pip install {name}`)"
        ) from exc
