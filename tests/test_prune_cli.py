import json

import pytest
import torch

from laser.cli.main import main


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: spin-waiting OpenMP threads on a shared 2-core machine make training 10x+ slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # per test: a TorchRunner (e.g. in an export's parity check) resets it
    yield
    torch.set_num_threads(before)


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_prune_writes_a_bundle_that_info_reads_with_fewer_macs(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "prune", "digits-cnn", "--ratio", "0.5", "-o", tmp_path / "p", "--json")
    d = json.loads(out)
    assert code == 0 and d["macs_after"] < 0.3 * d["macs_before"] and d["layers"]["features.0.0"] == [32, 16]
    code, out, _ = run_cli(capsys, "info", tmp_path / "p", "--json")
    info = json.loads(out)
    assert code == 0 and info["macs"] == d["macs_after"] and info["lineage"][-1]["op"] == "prune"


def test_prune_text_output_labels_counted_and_measured_figures(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "prune", "digits-cnn", "--ratio", "0.25", "--exclude", "features.0.0",
                           "-o", tmp_path / "p")
    assert code == 0
    assert "MACs / sample (counted, batch 1)" in out and "top-1 on digits test (measured)" in out
    assert "features.0.0" not in out and "features.3.0" in out


def test_unstructured_prune_notes_that_dense_runtimes_gain_no_speed(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "prune", "digits-cnn", "--unstructured", "--ratio", "0.5", "-o", tmp_path / "u")
    assert code == 0 and "sparsity of pruned layers (measured)" in out and "gain no speed from zeros" in out


def test_sensitivity_alone_prints_a_table_and_writes_a_png(capsys, tmp_path):
    plot = tmp_path / "sens.png"
    code, out, _ = run_cli(capsys, "prune", "digits-cnn", "--sensitivity", "--plot", plot)
    assert code == 0 and "drop (kept)" in out and "features.1.0" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sensitivity_with_output_picks_per_layer_ratios_within_uniform_macs(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "prune", "digits-cnn", "--sensitivity", "--ratio", "0.5", "-o", tmp_path / "s",
                           "--json")
    d = json.loads(out)
    uniform = json.loads(run_cli(capsys, "prune", "digits-cnn", "--ratio", "0.5", "-o", tmp_path / "u", "--json")[1])
    assert code == 0 and d["macs_after"] <= uniform["macs_after"]
    assert set(d["sensitivity"]["top1"]) == {"features.0.0", "features.1.0", "features.3.0"}
    assert (tmp_path / "s-sensitivity.png").is_file()


def test_distill_cli_trains_the_student_from_the_teacher(capsys, tmp_path):
    run_cli(capsys, "prune", "digits-cnn", "--ratio", "0.5", "-o", tmp_path / "p")
    code, out, _ = run_cli(capsys, "distill", tmp_path / "p", "--teacher", "digits-cnn", "--epochs", "2",
                           "-o", tmp_path / "d", "--json")
    d = json.loads(out)
    assert code == 0 and d["top1_after"] > d["top1_before"] and d["teacher_top1"] > 0.97


@pytest.mark.parametrize(("argv", "message"), [
    (("prune", "digits-cnn", "--ratio", "1.0", "-o", "x"), "ratio must be in [0, 1)"),
    (("prune", "digits-cnn", "--per-layer", "features.0.0:0.5", "-o", "x"), "name=ratio pairs"),
    (("prune", "digits-cnn", "--per-layer", "conv9=0.5", "-o", "x"), "names layer 'conv9'"),
    (("prune", "digits-cnn"), "needs -o DIR"),
    (("search", "digits-cnn", "--latency-budget", "soon", "-o", "x"), "is not a duration"),
])
def test_bad_input_is_one_line_and_a_nonzero_exit(capsys, tmp_path, argv, message):
    code, _, err = run_cli(capsys, *argv)
    assert code != 0 and message in err and err.strip().count("\n") == 0 and "Traceback" not in err
