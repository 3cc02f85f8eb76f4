"""Former home of ``laser.vision_compat`` (torchvision with the CPU build of torch); importable from here too."""

from laser.vision_compat import models, torchvision

__all__ = ["models", "torchvision"]
