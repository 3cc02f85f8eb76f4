import pytest
import torch

import laser
from laser.compress.nas import WidthSearch, parse_ms
from laser.compress.sensitivity import Sensitivity, allocate
from laser.errors import BudgetError, ConfigError


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: spin-waiting OpenMP threads on a shared 2-core machine make training 10x+
    slower; the latency figures here are compared with each other at the same thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # per test: a TorchRunner (e.g. in an export's parity check) resets it
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("text", "ms"), [("2ms", 2.0), ("500us", 0.5), ("0.002 s", 2.0), (1.5, 1.5), ("3", 3.0)])
def test_latency_budgets_parse_to_milliseconds(text, ms):
    assert parse_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["fast", "2 parsecs", "-1ms", 0])
def test_bad_latency_budgets_are_refused(text):
    with pytest.raises(ConfigError, match="latency budget"):
        WidthSearch(latency_budget_ms=text)


def synthetic() -> Sensitivity:
    # Layer "a" loses little accuracy per unit saved, "b" a lot: "a" should be pruned first.
    return Sensitivity(data="x", samples=10, criterion="l1", ratios=[0.25, 0.5, 0.75], base_top1=0.9,
                       base_macs=100, top1={"a": [0.89, 0.88, 0.80], "b": [0.70, 0.50, 0.30]},
                       macs={"a": [90, 80, 70], "b": [90, 80, 70]}, widths={"a": [8, 6, 4, 2], "b": [8, 6, 4, 2]})


def additive(per_layer: dict[str, float]) -> float:
    return 100 - sum({0.25: 10, 0.5: 20, 0.75: 30}[r] for r in per_layer.values())


def test_allocation_spends_the_least_sensitive_layer_first():
    sens = synthetic()
    savings = {k: sens.macs_saved(k) for k in sens.layers}
    per_layer, value = allocate(sens, savings, 100, 75, additive, "cost")
    assert per_layer == {"a": 0.75} and value == 70


def test_allocation_re_measures_when_savings_are_not_additive():
    sens = synthetic()
    savings = {k: sens.macs_saved(k) for k in sens.layers}
    calls = []

    def sub_additive(per_layer):  # the real cost falls less than the estimates add up to
        calls.append(dict(per_layer))
        return 100 - 0.8 * (100 - additive(per_layer))

    per_layer, value = allocate(sens, savings, 100, 60, sub_additive, "cost")
    assert value <= 60 and len(calls) >= 2 and per_layer["a"] == 0.75


def test_an_unreachable_target_is_a_budget_error():
    sens = synthetic()
    with pytest.raises(BudgetError, match="cannot bring cost from 100 to 10"):
        allocate(sens, {k: sens.macs_saved(k) for k in sens.layers}, 100, 10, additive, "cost")


def exported_p50(art, batch: int) -> float:
    from laser.compress.nas import _export
    from laser.measure.latency import latency

    with laser.run(_export(art, "legacy"), backend="onnxruntime", threads=1) as runner:
        return min(latency(runner, batch_size=batch, warmup=3, min_iters=20, max_seconds=0.3).p50_ms
                   for _ in range(3))


def test_width_search_meets_the_latency_budget_it_is_given():
    art = laser.load("digits-cnn")
    base = exported_p50(art, batch=32)
    budget = 0.6 * base
    stage = WidthSearch(latency_budget_ms=budget, batch_size=32, threads=1, ratios=(0.5, 0.75),
                        finetune_epochs=1, margin=0.15, max_seconds=0.15)
    out = stage(art)
    r = out.lineage[-1].results
    assert r["budget_met"] and r["final_latency_ms"] <= budget and r["per_layer"]
    assert set(r["lookup_table_ms"]) == {"features.0.0", "features.1.0", "features.3.0"}
    assert r["macs_after"] < r["macs_before"]
    assert r["top1_after"] > 0.9
    # Checked again here, independently: the exported result against the budget (+30 % for noise:
    # the CPU is shared with other jobs; in a quiet run the search lands 15 % under).
    assert exported_p50(out, batch=32) <= 1.3 * budget


def test_width_search_refuses_a_budget_that_no_width_reaches():
    stage = WidthSearch(latency_budget_ms="1ns", batch_size=8, threads=1, ratios=(0.5,), finetune_epochs=0,
                        max_seconds=0.1)
    with pytest.raises(BudgetError, match="cannot bring p50 latency"):
        stage(laser.load("digits-cnn"))


def test_search_and_distill_stages_round_trip_through_a_recipe():
    from laser.compress.distill import Distill
    from laser.stages import stage_from_dict

    search = WidthSearch(latency_budget_ms="1.5ms", ratios=[0.6, 0.3], exclude=["features.0.0"])
    assert search.latency_budget_ms == 1.5 and search.ratios == (0.3, 0.6)
    assert stage_from_dict(search.to_dict()) == search and laser.WidthSearch is WidthSearch
    kd = Distill(teacher="digits-cnn", temperature=2.0, feature_layers=["features.1"])
    assert stage_from_dict(kd.to_dict()) == kd and laser.Distill is Distill
