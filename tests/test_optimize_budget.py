import math

import pytest

from laser.errors import BudgetError
from laser.optimize.budget import Budget, Objective, fmt, parse_constraint, parse_duration


def test_units_are_converted_to_one_canonical_unit():
    b = Budget.parse("accuracy_drop<=1%, p50<=500us, size<=2MB, energy<=0.5mJ, params<=1.5M, throughput>=1000/s")
    limits = {c.metric: c.limit for c in b.constraints}
    assert limits == {"accuracy_drop": 1.0, "p50": 0.5, "size": 2e6, "energy": 0.5e-3, "params": 1.5e6,
                      "throughput": 1000.0}
    assert parse_constraint("size<=2MiB").limit == 2 * 1024 * 1024
    assert parse_constraint("p99<2s").limit == 2000.0 and parse_constraint("p99<2s").op == "<"
    assert parse_constraint("accuracy>=97.5%").limit == pytest.approx(0.975)


def test_check_names_each_failed_constraint_and_by_how_much():
    b = Budget.parse("p50<=5ms,size<=1MB,accuracy_drop<=1%")
    violations = b.check({"p50_ms": 7.5, "bytes": 900_000, "accuracy_drop_pts": 0.4})
    assert [v.constraint.metric for v in violations] == ["p50"]
    v = violations[0]
    assert v.excess == pytest.approx(2.5) and v.relative == pytest.approx(0.5)
    assert "p50<=5ms" in v.message() and "2.50 ms" in v.message() and "+50 %" in v.message()


def test_an_unmeasured_figure_is_a_violation_not_a_pass():
    violations = Budget.parse("energy<=1mJ").check({"p50_ms": 1.0})
    assert len(violations) == 1 and violations[0].value is None and math.isinf(violations[0].excess)
    assert "not measured" in violations[0].message()


def test_shortfall_is_zero_when_feasible_and_grows_with_the_miss():
    b = Budget.parse("p50<=5ms")
    assert b.shortfall({"p50_ms": 4.0}) == 0
    assert b.shortfall({"p50_ms": 6.0}) < b.shortfall({"p50_ms": 9.0})


def test_lower_bounds_fail_when_under():
    b = Budget.parse("throughput>=100/s")
    assert not b.check({"throughput_per_s": 150.0})
    assert "under the limit" in b.check({"throughput_per_s": 50.0})[0].message()


@pytest.mark.parametrize(("text", "match"), [
    ("p50<=5", "no unit"),
    ("p50<=5 parsecs", "unknown unit 'parsecs'"),
    ("latncy<=5ms", "did you mean latency"),
    ("p50 5ms", "needs a comparison"),
    ("p50==5ms", "never meets an exact value"),
    ("size<=-1MB", ">= 0"),
    ("<=5ms", "cannot read budget term"),
])
def test_bad_budget_terms_say_what_and_how_to_fix(text, match):
    with pytest.raises(BudgetError, match=match):
        Budget.parse(text)


def test_empty_budget_has_no_constraint():
    assert Budget.parse("").constraints == () and Budget.parse(None).text == "(no constraint)"


def test_objective_direction_and_unknown_objective():
    assert Objective("accuracy").score({"accuracy": 0.9}) < Objective("accuracy").score({"accuracy": 0.8})
    assert Objective("p50").score({"p50_ms": 1.0}) < Objective("p50").score({"p50_ms": 2.0})
    assert Objective("p50").score({}) == math.inf
    with pytest.raises(BudgetError, match="unknown objective"):
        Objective("speed")


def test_durations():
    assert parse_duration("10m") == 600 and parse_duration("1h30m") == 5400 and parse_duration("90s") == 90
    assert parse_duration(None) is None
    for bad in ("10", "ten minutes", "0s"):
        with pytest.raises(BudgetError):
            parse_duration(bad)


def test_human_formatting_keeps_units():
    assert fmt(0.05, "time") == "50.0 µs" and fmt(5.2, "time") == "5.20 ms"
    assert fmt(2 * 1024 * 1024, "bytes") == "2.00 MiB" and fmt(5e-4, "energy") == "500 µJ" and fmt(2e-3, "energy") == "2 mJ"
