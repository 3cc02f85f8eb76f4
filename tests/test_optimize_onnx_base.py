"""optimize on an ONNX base (a hub card or an imported .onnx): the recipes that apply, int8-mixed, the budget flag."""

from __future__ import annotations

import pytest

from laser.optimize import candidates as cands
from laser.optimize.api import _recipe_names
from laser.optimize.budget import Budget


def test_an_onnx_base_gets_the_onnx_recipes_by_default():
    names, notes = _recipe_names(None, "ocr-lines", "onnx")
    assert "int8-mixed" in names and not any(n.startswith("prune") or n == "search" for n in names) and not notes
    names, notes = _recipe_names(None, None, "onnx")  # no data: nothing to measure the drop with
    assert "int8-mixed" not in names and "int8-mixed" in notes[0]
    assert _recipe_names(None, "digits", "torch")[0] == list(cands.DEFAULT_RECIPES)


def test_int8_mixed_searches_on_the_val_split_with_the_runs_budget():
    ctx = cands.Context(source="pp-ocrv4-rec", base_format="onnx", data="ocr-lines",
                        accuracy_drop_pts=Budget.parse("p50<=5ms,accuracy_drop<=0.5%").allowed_drop_pts())
    (stage,) = cands.build_recipe("int8-mixed", ctx).stages
    assert stage.max_accuracy_drop == 0.5 and stage.data == "ocr-lines:val" and stage.calibration == "ocr-lines"
    with pytest.raises(cands.Unavailable, match="labelled dataset"):
        cands.build_recipe("int8-mixed", cands.Context(source="m", base_format="onnx", data=None,
                                                       accuracy_drop_pts=1.0))
    assert Budget.parse("p50<=5ms").allowed_drop_pts() is None


def test_max_accuracy_drop_replaces_the_budgets_accuracy_term(monkeypatch, tmp_path):
    import laser.optimize as opt
    from laser.cli.main import main
    from laser.errors import ConfigError

    seen = {}

    def fake(model, **kw):
        seen.update(kw)
        raise ConfigError("stopped here")

    monkeypatch.setattr(opt, "optimize", fake)
    assert main(["optimize", "m", "--data", "d", "--budget", "accuracy_drop<=3%,p50<=5ms", "--max-accuracy-drop",
                 "0.5", "-o", str(tmp_path)]) == 2
    assert seen["budget"] == "accuracy_drop<=0.5%,p50<=5ms"
    assert main(["optimize", "m", "--max-accuracy-drop", "-1", "-o", str(tmp_path)]) == 2
