"""Parity of ``laser import`` per source format on the tiny framework models of the slow tests.

    LASER_FRAMEWORKS_PYTHON=.venv-frameworks/bin/python .venv/bin/python bench/import_parity.py [--out DIR]

Builds the models with the real frameworks (tests/frameworks_models.py, in the frameworks Python), imports
each with ``laser import --json`` and prints, per format, the converter's max |diff| and top-1 agreement
against the source framework's own outputs, and OpenVINO's (where its frontend reads the format), on
4 seeded N(0,1) example inputs (the method is recorded in each bundle's laser.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("cnn_savedmodel", "cnn.keras", "cnn.h5", "cnn.tflite", "pd_old/cnn.pdmodel", "pd_pir/cnn.json")


def _fmt(r: dict | None) -> str:
    if r is None or "max_abs_diff" not in r:
        return (r or {}).get("note", "-")
    return f"{r['max_abs_diff']:.2g} / {100 * r['top1_agreement']:.0f} %"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="where to build the models (default: a temporary directory)")
    args = ap.parse_args()
    python = os.environ.get("LASER_FRAMEWORKS_PYTHON")
    if not python:
        sys.exit("set LASER_FRAMEWORKS_PYTHON to the frameworks venv's python (make frameworks-venv)")
    out = Path(args.out or tempfile.mkdtemp(prefix="laser-parity-"))
    for which in ("tf", "paddle"):
        subprocess.run([python, str(ROOT / "tests" / "frameworks_models.py"), str(out), which], check=True,
                       capture_output=True)
    print(f"{'source':<20} {'converter':<12} {'converter vs source (max|diff| / top-1)':<42} OpenVINO vs source")
    for src in SOURCES:
        done = subprocess.run([sys.executable, "-m", "laser.cli.main", "import", str(out / src), "--json",
                               "-o", str(out / "bundles" / src.replace("/", "_"))], capture_output=True, text=True)
        if done.returncode:
            print(f"{src:<20} failed: {done.stderr.strip()[-200:]}")
            continue
        r = json.loads(done.stdout)
        p = r["parity_vs_source"]
        conv = json.loads((out / "bundles" / src.replace("/", "_") / "laser.json").read_text())["lineage"][-1]
        print(f"{src:<20} {conv['params']['converter']:<12} {_fmt(p['vs_source']):<42} "
              f"{_fmt(p.get('openvino_vs_source') or p['vs_openvino'])}")
    print(f"method: {p['method']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
