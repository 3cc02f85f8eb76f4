"""The fake backend: no model, no dependencies. Returns outputs shaped as the spec says, computed
deterministically from the inputs, so pipelines, servers and tests run without heavy runtimes.

Each output is filled with the mean of the first input's row (per batch element; for string inputs
the mean byte length), cast to the output dtype (string outputs: the value as text); dynamic dims other than the batch take their size from the first input when it shares
the dim name, else 1.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from laser.runtime.base import Runner


class EchoRunner(Runner):
    backend = "echo"

    def _run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        first_spec = self.spec.inputs[0]
        first = np.asarray(inputs[first_spec.name])
        sizes: dict[str, int] = {d: int(first.shape[i]) for i, d in first_spec.dynamic_dims.items()}
        batch = int(first.shape[0]) if first.ndim else 1
        if first.dtype.kind == "O":  # strings: the byte lengths stand for the values
            first = np.vectorize(len, otypes=[np.float64])(first) if first.size else first.astype(np.float64)
        row_mean = first.reshape(batch, -1).astype(np.float64).mean(axis=1) if first.size else np.zeros(batch)
        out = {}
        for t in self.spec.outputs:
            shape = tuple(int(d if isinstance(d, int) else sizes.get(d, batch if i == 0 else 1))
                          for i, d in enumerate(t.shape))
            arr = np.broadcast_to(row_mean.reshape((batch,) + (1,) * (len(shape) - 1)), shape)
            if t.np_dtype.kind == "O":  # string outputs: the value as text
                arr = np.vectorize(lambda v: f"{v:g}".encode(), otypes=[object])(arr)
            out[t.name] = np.ascontiguousarray(arr.astype(t.np_dtype))
        return out
