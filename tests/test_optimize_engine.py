"""The optimize loop against a fake measurement: resume, Ctrl-C, time budget, best effort, outputs."""

import json
from dataclasses import dataclass
from typing import ClassVar

import pytest

from laser.artifact import Step
from laser.optimize import Settings, optimize
from laser.optimize.candidates import Recipe
from laser.stages import Stage

SETTINGS = Settings.fast(doctor=False)


@dataclass(frozen=True)
class Tag(Stage):
    """A stand-in compression stage: same model, one more lineage step carrying a tag."""

    op: ClassVar[str] = "tag"
    tag: str = "a"

    def apply(self, artifact):
        return artifact.derive(Step("tag", params=self.params()))


# tag -> (p50 ms, accuracy, bytes): 'fast' is fastest but loses accuracy, 'small' is small and slow,
# 'worse' is slower, bigger and less accurate than the base (dominated)
FIGURES = {"base": (2.0, 0.997, 1000), "fast": (0.5, 0.90, 900), "ok": (1.0, 0.992, 800), "small": (3.0, 0.99, 100),
           "worse": (2.5, 0.95, 1200)}


class FakeMeasure:
    def __init__(self, interrupt_at=None):
        self.calls = []
        self.interrupt_at = interrupt_at

    def __call__(self, art, backend, ref, settings, parent):
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        tag = next((s.params["tag"] for s in art.lineage if s.op == "tag"), "base")
        self.calls.append(tag)
        p50, acc, size = FIGURES[tag]
        return {"name": art.name, "backend": backend, "format": art.format,
                "latency": {"p50_ms": p50, "p90_ms": p50 * 1.1, "p99_ms": p50 * 1.3, "throughput_per_s": 1e3 / p50},
                "accuracy": {"top1": acc}, "size": {"bytes": size, "params": 10, "macs": 100},
                "energy": {"joules_per_inference": 1e-3 * p50, "method": "estimated", "source": "fake"}}


def _tag(art):
    return next((s.params["tag"] for s in art.lineage if s.op == "tag"), "base")


class FakeTimer:
    """The final side-by-side round: per-round ms per call from FIGURES (or ``p50s``), recorded."""

    def __init__(self, p50s=None, spreads=None):
        self.p50s, self.spreads = p50s or {}, list(spreads or [])
        self.sets = []

    def __call__(self, jobs, settings, block, switch):
        self.sets.append(sorted(jobs))
        wobble = self.spreads.pop(0) if self.spreads else 0.0  # relative spread of this set's round medians
        out = {}
        for name, (art, _backend) in jobs.items():
            p50 = self.p50s.get(_tag(art), FIGURES[_tag(art)][0])
            out[name] = [[p50 * (1 + wobble * (i % 2))] * 5 for i in range(5)]
        return out


def recipes():
    return [Recipe(t, (Tag(t),), "torch") for t in ("fast", "ok", "small", "worse")]


def run(tmp_path, measure, budget="accuracy_drop<=1%", timer=None, **kw):
    return optimize("digits-cnn", recipes=recipes(), formats="torch", budget=budget, output=tmp_path,
                    settings=SETTINGS, progress=False, evaluate=measure, timer=timer or FakeTimer(), **kw)


def test_winner_meets_the_budget_and_is_on_the_front(tmp_path):
    result = run(tmp_path, FakeMeasure())
    assert result.feasible and result.winner.candidate.recipe == "ok"  # 'fast' drops 9.7 pts > 1 allowed
    assert result.winner.on_front and not result.winner.violations
    fast = result.get("fast", "torch", "torch")
    assert [v.constraint.metric for v in fast.violations] == ["accuracy_drop"]
    front = {o.candidate.recipe for o in result.front}
    assert front == {"none", "fast", "ok", "small"}
    worse = result.get("worse", "torch", "torch")
    assert not worse.on_front and worse.dominated_by == ["none · torch · torch", "ok · torch · torch"]
    for name in ("report.html", "report.json", "pareto.png", "winner.toml", "winner/laser.json"):
        assert (tmp_path / name).is_file(), name


def test_impossible_budget_returns_best_effort_naming_the_failed_constraint(tmp_path):
    result = run(tmp_path, FakeMeasure(), budget="accuracy_drop<=1%,p50<=0.1ms")
    assert not result.feasible and result.winner is not None
    assert result.winner.candidate.recipe == "ok"  # misses p50 by the least while keeping accuracy
    assert [v.constraint.metric for v in result.winner.violations] == ["p50"]
    text = result.verdict()
    assert "No candidate meets the budget" in text and "p50<=0.1ms" in text and "0.90 ms" in text
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["feasible"] is False and report["winner"] == result.winner.name


def test_resume_skips_measured_candidates(tmp_path):
    first = FakeMeasure()
    run(tmp_path, first)
    assert sorted(first.calls) == ["base", "fast", "ok", "small", "worse"]
    again = FakeMeasure()
    result = run(tmp_path, again)
    assert again.calls == [] and {o.status for o in result.outcomes} == {"cached"}
    assert result.winner.candidate.recipe == "ok"
    fresh = FakeMeasure()
    run(tmp_path, fresh, resume=False)
    assert len(fresh.calls) == 5


def test_ctrl_c_keeps_what_was_measured_and_still_writes_the_report(tmp_path):
    result = run(tmp_path, FakeMeasure(interrupt_at=2))
    assert result.interrupted and len(result.measured) == 2
    skipped = [o for o in result.outcomes if o.status == "skipped"]
    assert len(skipped) == 3 and all("interrupted" in o.error for o in skipped)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["interrupted"] is True and len(report["artifacts"]) == 2
    assert "Interrupted" in (tmp_path / "report.html").read_text()
    resumed = FakeMeasure()
    run(tmp_path, resumed)  # the next run measures only what the interrupted one did not
    assert sorted(resumed.calls) == ["ok", "small", "worse"]


def test_time_budget_stops_starting_candidates(tmp_path):
    result = run(tmp_path, FakeMeasure(), time_budget=1e-9)
    assert result.timed_out and not result.measured
    assert all("time budget" in o.error for o in result.outcomes)
    assert "Nothing was measured" in result.verdict()


def test_a_failing_candidate_is_reported_not_fatal(tmp_path):
    measure = FakeMeasure()

    def flaky(art, backend, ref, settings, parent):
        if any(s.params.get("tag") == "small" for s in art.lineage):
            raise RuntimeError("kernel exploded")
        return measure(art, backend, ref, settings, parent)

    result = run(tmp_path, flaky)
    small = result.get("small", "torch", "torch")
    assert small.status == "failed" and "kernel exploded" in small.error
    assert result.winner.candidate.recipe == "ok"


def test_unknown_recipe_and_backend_are_clear_errors(tmp_path):
    from laser.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown recipe 'prune-fast'"):
        optimize("digits-cnn", recipes="prune-fast", output=tmp_path, settings=SETTINGS, progress=False)
    with pytest.raises(ConfigError, match="unknown backend"):
        optimize("digits-cnn", backends="tensorflow", output=tmp_path, settings=SETTINGS, progress=False)


@dataclass(frozen=True)
class Broken(Stage):
    op: ClassVar[str] = "broken"
    calls: ClassVar[list] = []

    def apply(self, artifact):
        from laser.errors import ConfigError

        Broken.calls.append(1)
        raise ConfigError("this stage cannot handle the model")


def test_a_failing_stage_is_tried_once_and_fails_every_candidate_built_on_it(tmp_path):
    Broken.calls.clear()
    result = optimize("digits-cnn", recipes=[Recipe("broken", (Broken(),), "torch")], formats="torch,onnx",
                      output=tmp_path, settings=SETTINGS, progress=False, evaluate=FakeMeasure())
    failed = [o for o in result.outcomes if o.candidate.recipe == "broken"]
    assert len(failed) >= 2 and all(o.status == "failed" and "cannot handle" in o.error for o in failed)
    assert len(Broken.calls) == 1


@dataclass(frozen=True)
class Chatty(Stage):
    op: ClassVar[str] = "chatty"

    def apply(self, artifact):
        import logging

        logging.getLogger("laser.export").warning("TorchScript is deprecated upstream")
        return artifact.derive(Step("chatty"))


def test_stage_log_warnings_are_kept_with_the_candidate_not_printed(tmp_path, caplog):
    result = optimize("digits-cnn", recipes=[Recipe("chatty", (Chatty(),), "torch")], formats="torch",
                      output=tmp_path, settings=SETTINGS, progress=False, evaluate=FakeMeasure())
    chatty = result.get("chatty", "torch", "torch")
    assert chatty.warnings == ["laser.export: TorchScript is deprecated upstream"]
    assert not [r for r in caplog.records if "deprecated" in r.getMessage()]  # never reached the root logger
    assert "What the stages warned about" in (tmp_path / "report.html").read_text()


def test_ratios_and_the_winner_come_from_the_final_side_by_side_round(tmp_path):
    # screening caught the eager baseline in a busy moment (9 ms); the final round times it at 2 ms
    measure = FakeMeasure()

    def busy_baseline(art, backend, ref, settings, parent):
        entry = measure(art, backend, ref, settings, parent)
        if _tag(art) == "base":
            entry["latency"]["p50_ms"] = 9.0
        return entry

    timer = FakeTimer(p50s={"ok": 1.6})  # and 'ok' is a little slower side by side than it screened
    result = run(tmp_path, busy_baseline, timer=timer)
    assert result.finals is not None and len(timer.sets) == 1
    eager, ok = result.eager, result.get("ok", "torch", "torch")
    assert eager.final and eager.metrics["p50_ms"] == 2.0 and eager.metrics["screen_p50_ms"] == 9.0
    assert ok.final and ok.speedup_vs_eager == 2.0 / 1.6  # both from the same rounds, never 9.0 / 1.0
    assert result.winner is ok and ok.metrics["timing"] == "final"
    worse = result.get("worse", "torch", "torch")
    assert not worse.final and worse.speedup_vs_eager is None  # screening only: no ratio is quoted
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["finals"]["finalists"] and "interleaved rounds" in report["finals"]["method"]


def test_the_baseline_is_retimed_even_when_the_screening_comes_from_the_cache(tmp_path):
    run(tmp_path, FakeMeasure())
    timer = FakeTimer(p50s={"base": 4.0})
    result = run(tmp_path, FakeMeasure(), timer=timer)
    assert {o.status for o in result.outcomes} == {"cached"}
    assert timer.sets and result.eager.metrics["p50_ms"] == 4.0


def test_a_noisy_final_set_is_taken_again_whole(tmp_path):
    timer = FakeTimer(spreads=[0.9, 0.0])  # the first set's round medians spread 90 %: too wide
    result = run(tmp_path, FakeMeasure(), timer=timer)
    assert len(timer.sets) == 2 and timer.sets[0] == timer.sets[1]  # the same finalists, all of them again
    assert result.finals["sets"] == 2 and result.finals["worst_spread_pct"] == 0.0
