"""Import torchvision with the CPU build of torch.

PyPI's torchvision 0.28 is a CUDA build: with the CPU torch its compiled ops (``torchvision._C``) do not
load, and ``import torchvision`` then crashes registering fake kernels for ``torchvision::nms`` and
``torchvision::qnms``, whose schemas only the C extension defines. Defining the two schemas first lets
the import finish: models and transforms work; ``torchvision.ops.nms`` does not (use ``laser.hub.nms``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from laser.errors import require

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIBS: list = []  # keep the Library objects alive, or the schemas are dropped


def torchvision() -> ModuleType:
    """``import torchvision``, working around the missing C extension on CPU-only torch."""
    import sys

    if "torchvision" in sys.modules and hasattr(sys.modules["torchvision"], "models"):
        return sys.modules["torchvision"]
    import torch

    if not _extension_loads():
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for name, schema in _SCHEMAS.items():
            if not _has_op(name):
                lib.define(schema)
        _LIBS.append(lib)
    return require("torchvision", "vision")


def _has_op(name: str) -> bool:
    import torch

    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def _extension_loads() -> bool:
    """True when torchvision's own C extension is usable (then it defines the schemas itself)."""
    import importlib.util

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # not installed: let require() give the install hint
    import glob
    import os

    import torch

    for path in glob.glob(os.path.join(spec.submodule_search_locations[0], "_C*.so")):
        try:
            torch.ops.load_library(path)
            return True
        except (OSError, RuntimeError):
            return False
    return False


def models() -> ModuleType:
    torchvision()
    return importlib.import_module("torchvision.models")
