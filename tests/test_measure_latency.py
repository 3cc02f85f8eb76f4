import time

import numpy as np
import pytest

from laser.errors import ConfigError
from laser.measure.latency import LatencyResult, latency, offline, repeated, single_stream, sweep
from laser.spec import ModelSpec, TensorSpec

SPEC = ModelSpec(inputs=(TensorSpec("x", "float32", ("batch", 4)),), outputs=(TensorSpec("y", "float32", ("batch", 4)),))


class SleepRunner:
    """A runner whose call takes ``base_ms`` plus ``per_sample_ms`` per sample in the batch."""

    spec = SPEC
    threads = 1

    def __init__(self, base_ms=2.0, per_sample_ms=0.0):
        self.base_ms, self.per_sample_ms, self.calls = base_ms, per_sample_ms, 0

    def __call__(self, inputs):
        self.calls += 1
        n = len(inputs["x"])
        time.sleep((self.base_ms + self.per_sample_ms * n) / 1000)
        return {"y": inputs["x"]}


def test_latency_of_a_2ms_runner_is_about_2ms_with_ordered_percentiles():
    r = latency(SleepRunner(2.0), warmup=2, min_iters=20, max_seconds=0)
    assert 1.9 <= r.p50_ms <= 10.0  # sleep(2 ms) wakes late on a busy CPU, never early
    assert r.p50_ms <= r.p90_ms <= r.p99_ms
    assert r.iters == 20 and r.batch_size == 1 and r.threads == 1 and r.scenario == "single-stream"
    assert r.ci95_ms > 0 and r.std_ms >= 0 and abs(r.mean_ms - np.mean(r.samples_ms)) < 1e-3
    # throughput counts samples over the wall time of the timed calls
    assert r.throughput_per_s == pytest.approx(r.iters / r.wall_seconds)
    assert "perf_counter_ns" in r.method


def test_warmup_calls_are_not_timed_and_fixed_count_is_exact():
    runner = SleepRunner(0.1)
    r = latency(runner, warmup=5, iters=7, warmup_seconds=0)
    assert r.iters == 7 and runner.calls == 12
    starts = []
    timed_warmup = SleepRunner(1.0)
    timed_warmup.spec = SPEC

    def stamped(feeds):
        starts.append(time.perf_counter())
        return SleepRunner.__call__(timed_warmup, feeds)

    stamped.spec = SPEC
    latency(stamped, warmup=1, iters=1, warmup_seconds=0.05)
    assert len(starts) >= 3 and starts[-1] - starts[0] >= 0.05  # the one timed call began >= 50 ms in


def test_time_budget_keeps_running_past_min_iters():
    r = latency(SleepRunner(1.0), warmup=0, min_iters=2, max_seconds=0.1, warmup_seconds=0)
    assert r.iters > 2 and r.wall_seconds >= 0.1


def test_batch_size_comes_from_given_inputs_and_throughput_counts_samples():
    feeds = {"x": np.zeros((8, 4), np.float32)}
    r = latency(SleepRunner(2.0), inputs=feeds, warmup=1, iters=10)
    assert r.batch_size == 8 and r.scenario == "offline"
    assert r.throughput_per_s == pytest.approx(80 / r.wall_seconds)


def test_offline_picks_the_batch_size_with_the_highest_throughput():
    runner = SleepRunner(base_ms=3.0, per_sample_ms=0.05)  # fixed cost dominates: bigger batches win
    best = offline(runner, batch_sizes=(1, 16), warmup=1, iters=5)
    assert best.batch_size == 16 and best.scenario == "offline" and "best throughput" in best.method
    results = sweep(runner, (1, 4), warmup=0, iters=3)
    assert [r.batch_size for r in results] == [1, 4] and results[0].scenario == "single-stream"


def test_single_stream_is_batch_one():
    assert single_stream(SleepRunner(0.1), warmup=0, iters=3).batch_size == 1


def test_repeated_reports_spread_of_p50():
    rep = repeated(SleepRunner(1.0), repeats=3, warmup=1, iters=5)
    assert len(rep.runs) == 3 and rep.spread_pct >= 0
    assert rep.median_run.p50_ms == sorted(rep.p50s)[1]
    assert rep.to_dict()["spread_pct"] == rep.spread_pct


def test_result_round_trips_through_a_dict():
    r = latency(SleepRunner(0.1), warmup=0, iters=3)
    assert LatencyResult.from_dict(r.to_dict()) == r


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"min_iters": 0}, {"warmup": -1}, {"iters": 0}])
def test_bad_settings_are_config_errors(kwargs):
    with pytest.raises(ConfigError, match="need batch_size"):
        latency(SleepRunner(0.1), **kwargs)


def test_torch_runner_latency_uses_spec_example_inputs(digits_artifact):
    from laser.runtime import run

    with run(digits_artifact, backend="torch") as runner:
        r = latency(runner, batch_size=4, warmup=2, iters=5)
    assert r.batch_size == 4 and r.threads == runner.threads and r.p50_ms > 0


def test_side_by_side_rounds_start_one_callable_later_each_time():
    from laser.timing import side_by_side

    order = []
    calls = {n: (lambda n=n: order.append(n)) for n in "abc"}
    side_by_side(calls, rounds=3, block=1, switch=0, warmup=0)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # no callable always follows the same one
