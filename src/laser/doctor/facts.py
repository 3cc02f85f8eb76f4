"""What the doctor measures and what it concludes: the Facts its checks read and the Findings they return.

``probes.py`` measures the Facts, ``checks.py`` turns them into Findings; both import this module.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from laser.artifact import Artifact
from laser.timing import NOT_FASTER


@dataclass(frozen=True)
class Finding:
    check: str  # id of the check that fired
    cause: str  # what is wrong, one sentence
    evidence: str  # the measured figures behind it
    fix: str  # what to do
    share: float = 0.0  # fraction of the child's run time the cause accounts for, when measurable

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Profile:
    """ONNX Runtime's per-op profile: microseconds per run by op type, over ``runs`` timed runs."""

    by_op_us: dict[str, float]  # op type -> µs per run
    nodes_by_op: dict[str, int]  # op type -> nodes executed per run
    run_us: float  # median model_run duration, µs
    session_init_us: float | None
    runs: int
    input_dtypes: dict[str, list[str]] = field(default_factory=dict)  # op type -> dtypes of its first input
    input_ranks: dict[str, list[int]] = field(default_factory=dict)  # op type -> ranks of its first input

    @property
    def node_us(self) -> float:
        return sum(self.by_op_us.values())

    def share(self, *ops: str) -> float:
        return sum(self.by_op_us.get(o, 0.0) for o in ops) / self.run_us if self.run_us else 0.0

    def top(self, n: int = 6) -> list[tuple[str, float]]:
        return sorted(self.by_op_us.items(), key=lambda kv: -kv[1])[:n]

    def to_dict(self) -> dict[str, Any]:
        return {"by_op_us": self.by_op_us, "nodes_by_op": self.nodes_by_op, "run_us": self.run_us,
                "session_init_us": self.session_init_us, "runs": self.runs, "input_dtypes": self.input_dtypes,
                "method": "measured: onnxruntime SessionOptions.enable_profiling, node kernel times summed by "
                          f"op type over {self.runs} runs after warm-up, per run"}


@dataclass
class GraphFacts:
    ops: Counter[str]
    fp16_weight_share: float  # fraction of initializer bytes stored as float16
    activation_zero_point_types: Counter[str]  # QuantizeLinear zero-point dtype -> count ("uint8"/"int8")
    channels: list[tuple[str, int]]  # (layer, output channels) of convolutions / linear layers


@dataclass
class Facts:
    """Everything the checks read. Figures in ms unless named otherwise."""

    parent: Artifact
    child: Artifact
    parent_backend: str
    child_backend: str
    parent_p50: float
    child_p50: float
    accuracy_drop_pts: float | None = None
    allowed_drop_pts: float | None = None
    parent_macs: int | None = None
    child_macs: int | None = None
    child_graph: GraphFacts | None = None
    child_profile: Profile | None = None
    parent_profile: Profile | None = None
    cpu_flags: set[str] = field(default_factory=set)
    throughput: dict[str, dict[int, float]] = field(default_factory=dict)  # "parent"/"child" -> batch -> samples/s
    first_call: dict[str, float] = field(default_factory=dict)  # create_ms, first_ms, warm_ms (child)
    slow_below: float = NOT_FASTER  # speed-up under which the child counts as "not faster"
    threads: dict[str, float] = field(default_factory=dict)  # threads, p50_ms (child, default threads),
    #                                                            p50_1_thread_ms, load_1m, cores
    compiled: dict[str, Any] = field(default_factory=dict)  # graphs, graph_breaks, fallback_kernels, recompiles

    @property
    def slow(self) -> bool:
        """Not faster than the parent: the speed checks apply (else only the accuracy check does)."""
        return not self.speedup >= self.slow_below

    @property
    def speedup(self) -> float:
        return self.parent_p50 / self.child_p50 if self.child_p50 else float("nan")

    @property
    def recipe_ops(self) -> list[str]:
        return [s.op for s in self.child.lineage]

    def quantized(self) -> str | None:
        """The quantization method of the child's lineage, if any."""
        for s in reversed(self.child.lineage):
            if s.op in ("quantize", "qat"):
                return str(s.params.get("method", s.op))
        return None
