"""Deployment outside Python: ``laser deploy cpp`` writes (and builds) a C++17 program that runs an artifact.

    >>> project = laser.deploy.cpp_project(artifact, "out/cpp", build=True)
    >>> project["binary"]   # out/cpp/build/laser-run --input x.npy --output y.npy [--bench 100]
"""

from __future__ import annotations

from laser.deploy.cpp import CPP_FORMATS, build_project, cpp_project

__all__ = ["CPP_FORMATS", "build_project", "cpp_project"]
