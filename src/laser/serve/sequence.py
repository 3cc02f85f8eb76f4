"""Sequence batching for stateful models: state kept per sequence on the server (Triton's implicit state).

A model version is a sequence model when its settings name state pairs (``sequence_state``: state input
-> state output, e.g. a recurrent cell's ``h_in`` -> ``h_out``). Clients send only the other inputs with a
correlation id (``sequence_id``) and ``sequence_start`` / ``sequence_end`` flags; the server feeds each
state input from the sequence's last state output (zeros at the start) and keeps the new one. Requests
of one sequence run one at a time, in arrival order; requests of different sequences share batches in
the model's batcher, oldest first (Triton's "oldest" strategy). A sequence idle for ``sequence_idle_s``
is dropped; at most ``max_sequences`` live at once (beyond: 503 + Retry-After).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from laser.errors import ConfigError
from laser.serve.codec import SequenceFlags
from laser.serve.errors import ServeError

Arrays = dict[str, np.ndarray]


@dataclass(eq=False)
class _Sequence:
    state: Arrays
    last_used: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ended: bool = False


class Sequences:
    """The live sequences of one model version."""

    def __init__(self, spec: Any, pairs: Mapping[str, str], *, max_sequences: int, idle_s: float, batched: bool):
        inputs, outputs = {t.name: t for t in spec.inputs}, {t.name: t for t in spec.outputs}
        for i, o in pairs.items():
            if i not in inputs or o not in outputs:
                raise ConfigError(f"sequence_state {i!r} -> {o!r}: the model has inputs {sorted(inputs)} and outputs "
                                  f"{sorted(outputs)}; name a state input and the output that updates it")
        self.pairs = dict(pairs)
        self.max_sequences, self.idle_s, self.batched = max_sequences, idle_s, batched
        try:  # one sample's zero state per state input (batch dim 1 when the model batches)
            self.zeros = {i: np.zeros(inputs[i].concrete_shape(batch=1), inputs[i].np_dtype) for i in pairs}
        except ConfigError as exc:
            raise ConfigError(f"a state tensor needs fixed dims besides the batch: {exc}") from None
        self._live: dict[int | str, _Sequence] = {}

    @property
    def state_inputs(self) -> set[str]:
        return set(self.pairs)

    @property
    def state_outputs(self) -> set[str]:
        return set(self.pairs.values())

    def _sweep(self, now: float) -> None:
        for sid in [s for s, seq in self._live.items() if now - seq.last_used > self.idle_s and not seq.lock.locked()]:
            del self._live[sid]

    def _open(self, flags: SequenceFlags) -> _Sequence:
        now = time.monotonic()
        self._sweep(now)
        seq = self._live.get(flags.id)
        if flags.start:
            if seq is None:
                if len(self._live) >= self.max_sequences:
                    raise ServeError(503, f"{self.max_sequences} sequences are in progress (max_sequences); end one "
                                          "or retry later", retry_after=1)
                seq = self._live[flags.id] = _Sequence({k: v.copy() for k, v in self.zeros.items()})
            else:  # a start on a live id begins it afresh, once the requests before it have run
                seq.ended = False
        elif seq is None or seq.ended:
            raise ServeError(400, f"sequence {str(flags.id)[:40]!r} is not in progress (never started, ended or idle "
                                  f"longer than {self.idle_s:g} s); send its first request with sequence_start")
        seq.last_used = now
        return seq

    def check(self, feeds: Arrays) -> Arrays:
        """The client's inputs with the zero state beside them, for the spec's checks; a request of a
        sequence carries one sample."""
        for name, arr in feeds.items():
            if self.batched and (arr.ndim == 0 or arr.shape[0] != 1):
                raise ServeError(400, f"a request of a sequence carries one sample (batch 1); input {name!r} has "
                                      f"shape {list(arr.shape)}")
        return {**feeds, **self.zeros}

    async def run(self, flags: SequenceFlags | None, feeds: Arrays,
                  submit: Callable[[Arrays], Awaitable[Arrays]]) -> Arrays:
        """Run one request of a sequence: state in, model, state kept; the outputs without the state ones."""
        if flags is None or flags.id in (0, ""):
            raise ServeError(400, "this is a sequence (stateful) model: every request needs a non-zero sequence_id, "
                                  "with sequence_start on the first and sequence_end on the last")
        seq = self._open(flags)
        async with seq.lock:
            if flags.start:
                seq.state = {k: v.copy() for k, v in self.zeros.items()}
            outputs = await submit({**feeds, **seq.state})
            seq.state = {i: np.array(outputs[o], copy=True) for i, o in self.pairs.items()}
            seq.last_used = time.monotonic()
            if flags.end:
                seq.ended = True
                if self._live.get(flags.id) is seq:
                    del self._live[flags.id]
        return {k: v for k, v in outputs.items() if k not in self.state_outputs}

    def config(self, datatype: Callable[[Any], str], spec: Any, skip: int) -> dict[str, Any]:
        """Triton's sequence_batching block of the model configuration."""
        inputs = {t.name: t for t in spec.inputs}
        return {"max_sequence_idle_microseconds": int(self.idle_s * 1e6),
                "oldest": {"max_candidate_sequences": self.max_sequences},
                "state": [{"input_name": i, "output_name": o, "data_type": "TYPE_" + datatype(inputs[i].dtype),
                           "dims": list(self.zeros[i].shape[skip:])} for i, o in self.pairs.items()]}
