"""How one model is served: the settings a repository applies to each model (defaults, a model's
``config.json``, a load request's overrides) and the version policy that picks its versions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from laser.errors import ConfigError


@dataclass(frozen=True)
class ModelSettings:
    """How one model is served. ``backend`` is a laser backend name or a callable artifact -> Runner."""

    backend: Any = "auto"
    max_batch_size: int = 8  # samples per model execution
    max_queue_delay_ms: float = 2.0  # how long the oldest request may wait for a batch to fill
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 128  # requests waiting per model version; beyond: 503 + Retry-After
    dynamic_batching: bool = True
    version_policy: str = "latest"  # latest | latest:N | all | specific:1,3
    warmup: bool = True
    threads: int | None = None  # runner intra-op threads (default: all cores)
    # Sequence (stateful) models: state input -> the output that updates it, kept per sequence on the server.
    sequence_state: Any = ()  # {"h_in": "h_out"} or (("h_in", "h_out"),)
    max_sequences: int = 64  # sequences in progress at once; beyond: 503
    sequence_idle_s: float = 60.0  # a sequence idle this long is dropped
    weights: str | None = None  # a catalog name's or factory's weights file (as laser.load's weights=)
    random_weights: bool = False  # a catalog name or factory with random weights (structure-only work)
    # A text classifier whose manifest holds its tokenizer takes TEXT (BYTES) and answers LABEL and SCORE;
    # False: it takes token ids as its artifact does.
    text_input: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "preferred_batch_sizes", tuple(int(b) for b in self.preferred_batch_sizes))
        state = self.sequence_state
        pairs = tuple(state.items()) if isinstance(state, Mapping) else tuple(tuple(p) for p in state)
        if any(len(p) != 2 or not all(isinstance(n, str) for n in p) for p in pairs):
            raise ConfigError(f"sequence_state must map state input names to output names, got {state!r}; try "
                              "{'h_in': 'h_out'}")
        object.__setattr__(self, "sequence_state", pairs)
        if not isinstance(self.max_sequences, int) or self.max_sequences < 1:
            raise ConfigError(f"max_sequences must be an integer >= 1, got {self.max_sequences!r}; try 64")
        if not 0 < float(self.sequence_idle_s) <= 86_400:
            raise ConfigError(f"sequence_idle_s must be in (0, 86400], got {self.sequence_idle_s!r}; try 60")
        if not isinstance(self.max_batch_size, int) or self.max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be an integer >= 1, got {self.max_batch_size!r}; try 8")
        if not 0 <= float(self.max_queue_delay_ms) <= 10_000:
            raise ConfigError(f"max_queue_delay_ms must be in [0, 10000], got {self.max_queue_delay_ms!r}; try 2")
        if any(not 1 <= b <= self.max_batch_size for b in self.preferred_batch_sizes):
            raise ConfigError(f"preferred_batch_sizes {list(self.preferred_batch_sizes)} must lie in "
                              f"[1, max_batch_size={self.max_batch_size}]")
        if not isinstance(self.max_queue_size, int) or self.max_queue_size < 1:
            raise ConfigError(f"max_queue_size must be an integer >= 1, got {self.max_queue_size!r}; try 128")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"threads must be an integer >= 1, got {self.threads!r}")
        parse_policy(self.version_policy)

    def override(self, values: Mapping[str, Any], where: str) -> ModelSettings:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown setting(s) {unknown}; known: {sorted(known)}")
        if "backend" in values and not isinstance(values["backend"], str):
            raise ConfigError(f"{where}: 'backend' must be a backend name such as 'onnxruntime'")
        try:
            return replace(self, **values)
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def select(self, versions: Sequence[str]) -> list[str]:
        kind, arg = parse_policy(self.version_policy)
        ordered = sorted(versions, key=int)
        if kind == "all":
            return ordered
        if kind == "latest":
            return ordered[-arg:]
        return [v for v in ordered if int(v) in arg]


def parse_policy(text: str) -> tuple[str, Any]:
    """'latest' | 'latest:N' | 'all' | 'specific:1,3' (or just '1,3')."""
    t = str(text).strip().lower()
    try:
        if t == "all":
            return "all", None
        if t.startswith("latest"):
            n = int(t.partition(":")[2] or 1)
            if n >= 1:
                return "latest", n
        else:
            versions = frozenset(int(v) for v in t.removeprefix("specific:").split(",") if v.strip())
            if versions and min(versions) >= 1:
                return "specific", versions
    except ValueError:
        pass
    raise ConfigError(f"version policy {text!r} is not one of latest, latest:N, all, specific:1,3")
