"""Packages that are also the function of the public API (``laser.export``, ``laser.measure``,
``laser.serve``, ``laser.optimize``).

``laser.export(art, to="onnx")`` must work whether the attribute ``laser.export`` is the function (from
the lazy table in ``laser/__init__.py``) or the package: Python sets the parent's attribute to the
package as soon as any submodule (``laser.export.validate`` ...) is imported. So the package is made
callable, forwarding to its function.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


class CallablePackage(types.ModuleType):
    __call_target__: Callable[..., Any]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__call_target__(*args, **kwargs)


def make_callable(module_name: str, target: Callable[..., Any]) -> None:
    """Make the (already imported) package ``module_name`` callable as ``target``."""
    module = sys.modules[module_name]
    module.__call_target__ = target  # type: ignore[attr-defined]
    module.__class__ = CallablePackage
