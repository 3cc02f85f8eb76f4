"""Measurement: the LASER figures (Latency, Accuracy, Size, Energy, Robustness).

``laser.measure(artifacts, backends=None, data=None, ...) -> Report``; the pieces live in
latency.py, accuracy.py, size.py, energy.py, robustness.py, hardware.py and report.py.

``laser.measure`` is this package *and* callable: importing a submodule (``laser.measure.latency``)
makes Python bind the package as the attribute ``laser.measure``, so the package itself forwards
calls to ``measure`` rather than a function shadowing it (which would break ``laser.measure.latency``).
"""


from laser._callable import make_callable
from laser.measure.bench import measure
from laser.measure.report import Report

make_callable(__name__, measure)  # laser.measure(...) works as package and as function

__all__ = ["Report", "measure"]
