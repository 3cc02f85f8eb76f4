import json

import pytest

import laser
from laser.cli.main import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "laser 0.1.0" in capsys.readouterr().out


def test_info_json_has_params_macs_flops_bytes(capsys):
    code, out, _ = run_cli(capsys, "info", "digits-cnn", "--json")
    d = json.loads(out)
    assert code == 0
    assert d["flops"] == 2 * d["macs"] and d["macs"] > 1_000_000
    assert d["params"] > 50_000 and d["bytes"] > 0


def test_info_text_labels_macs_and_flops(capsys):
    code, out, _ = run_cli(capsys, "info", "digits-cnn")
    assert code == 0 and "MACs / sample" in out and "FLOPs = 2 x MACs" in out


def test_eval_json_reports_top1_and_top5(capsys):
    code, out, _ = run_cli(capsys, "eval", "digits-cnn", "--data", "digits", "--json")
    d = json.loads(out)
    assert code == 0 and d["top1"] >= 0.97 and d["top5"] >= d["top1"]


def test_errors_are_one_line_and_nonzero_never_a_traceback(capsys):
    code, _out, err = run_cli(capsys, "info", "resnet-eighteen")
    assert code != 0 and "Traceback" not in err
    assert err.strip().count("\n") == 0 and "no model named" in err


def test_train_writes_a_bundle_and_tensorboard_logs(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "train", "digits-cnn", "-o", str(tmp_path / "m"), "--epochs", "2", "--json")
    d = json.loads(out)
    assert code == 0 and (tmp_path / "m" / "laser.json").is_file()
    assert d["test_top1"] > 0.5 and any((tmp_path / "m" / "tensorboard").iterdir())  # one run per -o
    assert laser.load(tmp_path / "m").name == "digits-cnn"  # the logs beside the files keep the bundle valid
    assert not [p for p in tmp_path.iterdir() if p.name != "m"]  # nothing left beside it
