from laser.optimize import pareto


def test_front_keeps_only_non_dominated_candidates():
    pts = [
        {"accuracy": 0.99, "p50_ms": 10.0, "bytes": 100},  # most accurate
        {"accuracy": 0.97, "p50_ms": 2.0, "bytes": 30},  # fastest and smallest
        {"accuracy": 0.96, "p50_ms": 3.0, "bytes": 40},  # dominated by #1
        {"accuracy": 0.99, "p50_ms": 12.0, "bytes": 100},  # dominated by #0
    ]
    assert pareto.front(pts) == [0, 1]
    assert pareto.dominated_by(pts, 2, pareto.axes_for(pts)) == [1]


def test_equal_candidates_do_not_dominate_each_other():
    pts = [{"accuracy": 0.9, "p50_ms": 1.0}, {"accuracy": 0.9, "p50_ms": 1.0}]
    assert pareto.front(pts) == [0, 1]


def test_an_axis_missing_for_one_candidate_is_not_used():
    pts = [{"accuracy": 0.9, "p50_ms": 1.0, "energy_j": 1e-3}, {"accuracy": 0.8, "p50_ms": 2.0}]
    assert pareto.axes_for(pts) == ["accuracy", "p50_ms"]
    assert pareto.front(pts) == [0]


def test_plot_writes_a_png(tmp_path):
    pts = [{"label": "a", "p50_ms": 1.0, "accuracy": 0.9, "bytes": 10, "backend": "torch", "on_front": True,
            "winner": True},
           {"label": "b", "p50_ms": 2.0, "accuracy": 0.8, "bytes": 20, "backend": "onnxruntime", "on_front": False}]
    path = pareto.plot(pts, tmp_path / "p.png", p50_limit_ms=1.5, accuracy_floor=0.85)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
