"""Every Python block of the README runs, and so does every shell line of its CLI tour (README that runs)."""

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_the_two_commands_first():
    text = README.read_text()
    assert text.index("make demo") < text.index("```python")
    assert "make test" in text


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks()
    assert blocks
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})


# -- the CLI tour's shell lines, walked in a fresh directory ---------------------------------------
# Subcommands quick enough for the default suite; the rest (train, quantize, bench, prune, serve, optimize
# ...) run in the full walk (slow). Lines that need published weights run offline here and must fail
# with one line that offers --random-weights.
FAST = ("--version", "info", "eval", "hub list", "hub info", "hub run", "export", "run", "diff", "serve")


def tour_lines() -> list[str]:
    text = README.read_text()
    section = text[text.index("## CLI tour"):]
    section = section[:section.index("\n## ", 1)]
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        lines += [_strip_comment(ln) for ln in joined.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return lines


def _strip_comment(line: str) -> str:
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].strip()
    return line.strip()


def _verb(line: str) -> str:
    words = shlex.split(line)
    if words[0] != "laser":
        return words[0]
    return " ".join(words[1:3]) if words[1] == "hub" else words[1]


def _is_fast(line: str) -> bool:
    return _verb(line) in (*FAST, "python", "printf", "mkdir", "curl", "kill")  # and the inputs, repository, server


def _needs_download(line: str) -> bool:
    return _verb(line) == "hub run" and "--random-weights" not in line and "digits-cnn" not in line


@pytest.fixture
def tour_env(tmp_path, monkeypatch):
    import laser

    src = Path(laser.__file__).resolve().parents[1]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(src), "LASER_OFFLINE": "1", "LASER_CACHE": str(tmp_path / "cache"),
           "PORT": str(_free_port())}
    for key in ("LASER_OFFLINE", "LASER_CACHE", "PORT"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.chdir(tmp_path)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def walk(lines: list[str], env: dict[str, str], capsys) -> list[str]:
    from laser.cli.main import main

    done, server = [], None
    try:
        for line in lines:
            if line.startswith("export PORT="):
                done.append(line)
                continue  # the test picked a free port into PORT
            if line.endswith("&"):
                server = subprocess.Popen(["bash", "-c", "exec " + line[:-1]], env=env, stderr=subprocess.PIPE)
                _wait_ready(int(env["PORT"]), server)
            elif line.startswith("kill %1"):
                assert server is not None
                server.send_signal(signal.SIGTERM)
                assert server.wait(timeout=120) == 0
                server = None
            elif line.startswith("laser ") and not set("$>|&") & set(line):
                try:
                    code = main(shlex.split(line)[1:])
                except SystemExit as exc:  # --version
                    code = exc.code or 0
                err = capsys.readouterr().err
                if _needs_download(line):  # offline: one line naming the way out
                    assert code == 2 and "--random-weights" in err and "Traceback" not in err, (line, err)
                else:
                    assert code in ((0, 3) if _verb(line) == "optimize" else (0,)), (line, err)
            else:
                r = subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True, timeout=900)
                assert r.returncode == 0, (line, r.stderr[-2000:])
            done.append(line)
    finally:
        if server is not None:
            server.kill()
            server.wait()
    return done


def _wait_ready(port: int, server: subprocess.Popen) -> None:
    import urllib.request

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("laser serve did not become ready")


def test_readme_tour_names_its_inputs_and_picks_ports():
    lines = tour_lines()
    made = " ".join(ln for ln in lines if not ln.startswith("laser "))
    for name in ("digit.png", "x.npz", "img.jpg", "reviews.txt", "out/repo/digits-cnn/1"):
        assert name in made, name  # every input of the tour is made before it is used
    assert not [ln for ln in lines if ":8000" in ln or " [" in ln]  # no fixed port, no [optional] syntax


def test_readme_tour_quick_lines_run_as_written(tour_env, capsys):
    lines = [ln for ln in tour_lines() if _is_fast(ln)]
    assert len(walk(lines, tour_env, capsys)) == len(lines) >= 15


@pytest.mark.slow
@pytest.mark.timeout(7200)  # trains, prunes, distils and runs `laser optimize` four times
def test_readme_tour_runs_end_to_end(tour_env, capsys):
    lines = tour_lines()
    assert len(walk(lines, tour_env, capsys)) == len(lines)
