"""The models Triton's published client examples expect, built as real laser bundles (tiny torch modules
exported to ONNX): ``simple`` (INT32 add/sub of INPUT0 and INPUT1, 16 values a sample). Used by
tests/test_serve_triton_examples.py."""

from __future__ import annotations

from pathlib import Path

import torch


class AddSub(torch.nn.Module):
    """OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1: Triton's ``simple`` model."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a + b, a - b


def simple(dtype: str = "int32"):
    from laser.artifact import Artifact
    from laser.export import export
    from laser.spec import ModelSpec, TensorSpec

    spec = ModelSpec(inputs=[TensorSpec("INPUT0", dtype, ("batch", 16), value_range=(-100, 100)),
                             TensorSpec("INPUT1", dtype, ("batch", 16), value_range=(-100, 100))],
                     outputs=[TensorSpec("OUTPUT0", dtype, ("batch", 16)), TensorSpec("OUTPUT1", dtype, ("batch", 16))])
    art = Artifact.from_module(AddSub().eval(), name="simple", task="generic", spec=spec, architecture=None)
    return export(art, to="onnx")


def repository(root: Path) -> Path:
    """``root/<model>/1/`` for every model here; the repository root."""
    simple().save(root / "simple" / "1")
    return root
