import json

from laser.cli.main import main

FAST = ("--seconds", "0.02", "--repeats", "1", "--no-peak", "--threads", "1")


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_bench_json_is_one_report_object(capsys):
    code, out, _ = run_cli(capsys, "bench", "digits-cnn", "--data", "digits", "--batch-sizes", "1,2", "--json", *FAST)
    d = json.loads(out)
    assert code == 0 and len(d["artifacts"]) == 1
    a = d["artifacts"][0]
    assert a["accuracy"]["top1"] > 0.95 and [r["batch_size"] for r in a["latency_sweep"]] == [1, 2]
    assert a["energy"]["method"] in ("measured", "estimated") and a["size"]["flops"] == 2 * a["size"]["macs"]


def test_bench_two_artifacts_prints_a_side_by_side_table_and_writes_the_report(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "bench", "digits-cnn", "digits-cnn", "--report", str(tmp_path / "r"), *FAST)
    assert code == 0
    header = out.splitlines()[0]
    assert header.startswith("| figure | unit |") and header.count("digits-cnn@torch") == 2
    assert "report: " in out and (tmp_path / "r" / "report.html").is_file()
    assert json.loads((tmp_path / "r" / "report.json").read_text())["artifacts"][1]["accuracy"] == {}


def test_robustness_without_data_is_a_one_line_error(capsys):
    code, _, err = run_cli(capsys, "bench", "digits-cnn", "--robustness", *FAST)
    assert code == 2 and "--robustness needs labelled data" in err and err.count("\n") == 1


def test_bad_batch_sizes_are_a_one_line_error(capsys):
    code, _, err = run_cli(capsys, "bench", "digits-cnn", "--batch-sizes", "1,x", *FAST)
    assert code == 2 and "--batch-sizes must be comma-separated integers" in err


def test_unknown_backend_is_reported_with_the_known_ones(capsys):
    code, _, err = run_cli(capsys, "bench", "digits-cnn", "--backends", "tpu", *FAST)
    assert code == 2 and "unknown backend(s) ['tpu']" in err
