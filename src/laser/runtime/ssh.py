"""SSH backend: the artifact runs on another Linux machine (a Raspberry Pi, a Jetson, an emulated ARM64 box).

``SSHRunner(artifact, on="ssh://USER@HOST[:PORT]")`` starts one ``ssh`` process (OpenSSH's client, so
``~/.ssh/config``, agents and ``ProxyJump`` work; ``BatchMode=yes`` so it never prompts, ``ConnectTimeout``
so it never hangs; extra options from ``LASER_SSH_OPTS``) that runs ``device_runner.py`` with the device's own
``python3`` (``LASER_SSH_PYTHON`` to pick another; ``LASER_SSH_TIMEOUT`` seconds per request, default 120). The bundle's files are copied through that connection into a
temp dir on the device, loaded with the runtime the device has (onnxruntime, OpenVINO or ExecuTorch), and
each call is one request/answer over it. Latency is laser's own timing loop run on the device
(``time_calls``: warm-up, then inference calls back to back, each timed with ``time.perf_counter_ns`` there), so
the figures are the device's, without the network in them; ``laser.measure`` records the device's fingerprint
as the report's hardware.
When the device's python runs under qemu user-mode emulation, every timing is labelled ``emulated``.

Nothing is left behind: the device runner removes its temp dir and exits on ``close()``, on end of input,
when its SSH session dies, or after ten idle minutes; every wait here has a deadline and kills ``ssh`` when
it passes.
"""

from __future__ import annotations

import io
import json
import os
import select
import shlex
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from laser.artifact import Artifact
from laser.errors import BackendError, ConfigError, DependencyError, NotFoundError
from laser.runtime.base import Runner

CONNECT_TIMEOUT_S = 10
# The device reads this many digits (the runner's length), then the runner's source, and runs it.
BOOTSTRAP = ("import os,sys\n"
             "def r(n):\n b=b''\n while len(b)<n:\n  c=os.read(0,n-len(b))\n  if not c:sys.exit(4)\n  b+=c\n return b\n"
             "exec(compile(r(int(r(10))),'laser_device_runner.py','exec'),{'__name__':'__main__'})")
FIX_PYTHON = "install it there (Debian/Raspberry Pi OS: sudo apt-get install -y python3 python3-pip)"


def _timeout(given: float | None) -> float:
    """Seconds each request to the device may take: ``timeout=``, else ``LASER_SSH_TIMEOUT``, else 120."""
    text = os.environ.get("LASER_SSH_TIMEOUT", "120") if given is None else str(given)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"the SSH request timeout must be a number of seconds > 0, got {text!r} (LASER_SSH_TIMEOUT)")
    return value


class DeviceError(BackendError):
    """The SSH device cannot be reached, refuses the key, or lacks python3 or a runtime."""


def parse_target(on: str) -> tuple[str, int | None]:
    """``ssh://[USER@]HOST[:PORT]`` -> (``[USER@]HOST``, PORT or None)."""
    parts = urlsplit(on)
    if parts.scheme != "ssh" or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(f"--on takes ssh://[USER@]HOST[:PORT], got {on!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"the port in {on!r} is not a number from 1 to 65535") from exc
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return (f"{parts.username}@{host}" if parts.username else host), port


def ssh_command(on: str, identity: str | None = None) -> list[str]:
    """The ``ssh`` argv (without the remote command) for a target URL."""
    target, port = parse_target(on)
    if shutil.which("ssh") is None:
        raise DependencyError("--on ssh:// needs OpenSSH's client here: apt-get install -y openssh-client")
    argv = ["ssh", "-T", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
    if port:
        argv += ["-p", str(port)]
    if identity:
        if not Path(identity).expanduser().is_file():
            raise NotFoundError(f"--identity {identity}: no such key file; give the private key, e.g. ~/.ssh/id_ed25519")
        argv += ["-i", str(Path(identity).expanduser()), "-o", "IdentitiesOnly=yes"]
    argv += shlex.split(os.environ.get("LASER_SSH_OPTS", ""))
    return [*argv, "--", target]


def diagnose(on: str, stderr: str, rc: int | None) -> str:
    """One line saying why the SSH session failed, and what to do about it."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("Warning: Permanently")]
    said = lines[-1] if lines else f"ssh exited with {rc}"
    low = stderr.lower()
    if "permission denied" in low or "too many authentication failures" in low:
        return (f"{on} refused the key ({said}): put your public key in ~/.ssh/authorized_keys on the device "
                "(ssh-copy-id USER@HOST) or pass --identity KEYFILE")
    if "host key verification failed" in low or "remote host identification has changed" in low:
        return (f"{on}: the device's host key is not trusted ({said}): connect once with `ssh` to check and accept it, "
                "or add it with ssh-keyscan to ~/.ssh/known_hosts")
    if any(s in low for s in ("connection refused", "timed out", "no route to host", "could not resolve",
                              "network is unreachable", "connection closed", "name or service not known")):
        return (f"cannot reach {on} ({said}): check the device is on, the address and port are right and sshd "
                "runs there")
    if rc == 127 or "not found" in low:
        return f"the device {on} has no python3 ({said}): {FIX_PYTHON}"
    return f"the SSH session to {on} failed ({said})"


class Link:
    """One SSH session to the device runner: bootstrap, the device's fingerprint (``hello``), request/answer."""

    on = ""
    fmt = "onnx"  # the artifact format the session is for (what to tell the user to install)
    found: dict[str, str | None]  # probe(): the runtimes that import on the device

    def _connect(self, on: str, identity: str | None, timeout: float | None) -> None:
        self.on, self.timeout = on, _timeout(timeout)
        python = os.environ.get("LASER_SSH_PYTHON", "python3")
        argv = [*ssh_command(on, identity), f"exec {shlex.quote(python)} -c {shlex.quote(BOOTSTRAP)}"]
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, bufsize=0)
        try:
            source = (Path(__file__).parent / "device_runner.py").read_bytes()
            self._write(b"%010d" % len(source) + source, CONNECT_TIMEOUT_S + self.timeout)
            hello, _ = self._receive(CONNECT_TIMEOUT_S + self.timeout)
            if "error" in hello:
                raise self._device_error(hello)
        except BaseException:
            self.close()
            raise
        self.fingerprint: dict[str, Any] = hello["hello"]
        self.emulated: str | None = self.fingerprint.get("emulated")

    def _request(self, header: dict[str, Any], payload: bytes = b"") -> tuple[dict[str, Any], bytes]:
        head = json.dumps(header).encode()
        self._write(struct.pack(">I", len(head)) + head + struct.pack(">Q", len(payload)) + payload, self.timeout)
        answer, data = self._receive(self.timeout)
        if "error" in answer:
            raise self._device_error(answer)
        return answer, data

    def _device_error(self, answer: dict[str, Any]) -> Exception:
        if answer["error"] == "missing":
            module = answer.get("module", "?")
            pip = {"onnx": "onnxruntime", "ort": "onnxruntime", "executorch": "executorch"}.get(self.fmt)
            wanted = f"{pip} numpy" if module in ("onnxruntime", "openvino", "executorch") and pip else module
            return DependencyError(f"the device {self.on} has no {module} in its python3: run "
                                   f"`python3 -m pip install {wanted}` on the device (or set LASER_SSH_PYTHON "
                                   "to a python that has it)")
        return DeviceError(f"on {self.on}: {answer.get('message', answer['error'])}")

    def _write(self, data: bytes, timeout: float) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        fd, view, deadline = self._proc.stdin.fileno(), memoryview(data), time.monotonic() + timeout
        os.set_blocking(fd, False)
        try:
            while view:
                _, ready, _ = select.select([], [fd], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    raise self._fail(f"sending to the device took over {timeout:g} s")
                view = view[os.write(fd, view[: 1 << 16]):]
        except (BrokenPipeError, ConnectionResetError):
            raise self._fail("the connection closed") from None

    def _read(self, n: int, deadline: float) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        fd, chunks, left = self._proc.stdout.fileno(), [], n
        while left:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise self._fail("no answer from the device in time")
            chunk = os.read(fd, left)
            if not chunk:
                raise self._fail("the connection closed")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _receive(self, timeout: float) -> tuple[dict[str, Any], bytes]:
        deadline = time.monotonic() + timeout
        (n,) = struct.unpack(">I", self._read(4, deadline))
        header = json.loads(self._read(n, deadline))
        (m,) = struct.unpack(">Q", self._read(8, deadline))
        return header, self._read(m, deadline)

    def _fail(self, what: str) -> Exception:
        """Stop ssh and say why the session failed (from ssh's stderr), as one line."""
        rc = self._stop(grace=2.0)
        self._stderr.seek(0)
        stderr = self._stderr.read().decode(errors="replace")
        if rc is None or (rc == 0 and not stderr.strip()):
            return DeviceError(f"{what} ({self.on}, {self.timeout:g} s per request); the session was stopped: check "
                               "the device, or allow more with LASER_SSH_TIMEOUT=SECONDS")
        return DeviceError(diagnose(self.on, stderr, rc))

    def _stop(self, grace: float) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        try:
            return proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()  # the device runner sees its session end and cleans up by itself
            proc.wait(timeout=5)
            return None
        finally:
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                head = json.dumps({"op": "close"}).encode()
                self._write(struct.pack(">I", len(head)) + head + struct.pack(">Q", 0), 5.0)
            except BackendError:
                pass
        self._stop(grace=10.0)
        self._stderr.close()

    def runtimes(self) -> dict[str, str | None]:
        """The device's runtimes that import there: name -> version (None: absent or broken)."""
        answer, _ = self._request({"op": "runtimes"})
        return dict(answer["runtimes"])

    def hardware(self) -> dict[str, Any]:
        """The device's fingerprint in ``laser.measure.hardware.fingerprint``'s shape (no peak benchmarks)."""
        import hashlib

        from laser.runtime.hardware import ISA_FLAGS

        fp = self.fingerprint
        flags = set() if self.emulated else set(fp.get("cpu_flags") or ())  # emulated: the host's flags
        model = fp.get("cpu_model", "?") + (f" (EMULATED {fp.get('arch')}: {self.emulated})" if self.emulated else "")
        hw: dict[str, Any] = {"cpu": {"model": model, "logical_cores": fp.get("logical_cores"), "usable_cores": fp.get("usable_cores"),
                      "isa": [f for f in ISA_FLAGS if f in flags], "arch": fp.get("arch")},
              "gpus": [], "os": fp.get("os"), "python": fp.get("python"), "device": self.on,
              "emulated": self.emulated, "runtimes": {k: v for k, v in (fp.get("runtimes") or {}).items() if v}}
        hw["hostname_hash"] = hashlib.sha256(str(fp.get("hostname", "")).encode()).hexdigest()[:12]
        return hw

class SSHRunner(Link, Runner):
    backend = "ssh"
    remote = True  # laser.measure: timings and hardware come from the device, energy is estimated

    def __init__(self, artifact: Artifact, threads: int | None = None, device: str = "cpu", *, on: str = "",
                 identity: str | None = None, runtime: str = "auto", timeout: float | None = None):
        if not on:
            raise ConfigError("the ssh backend needs a device: on='ssh://USER@HOST[:PORT]' (--on on the command line)")
        if artifact.format not in ("onnx", "ort", "executorch"):
            raise BackendError(f"--on ssh:// runs onnx, ort and executorch artifacts; {artifact.name!r} is "
                               f"{artifact.format}: export it first (laser export {artifact.name} --to onnx)")
        Runner.__init__(self, artifact, threads, device)
        self.fmt = artifact.format
        self._connect(on, identity, timeout)
        try:
            self.threads = threads or int(self.fingerprint.get("usable_cores") or 1)
            self._upload(artifact)
            loaded, _ = self._request({"op": "load", "model": self._model_rel, "format": artifact.format,
                                       "runtime": runtime, "threads": self.threads,
                                       "inputs": self.spec.input_names, "outputs": self.spec.output_names})
        except BaseException:
            self.close()
            raise
        self.runtime, self.runtime_version = loaded["runtime"], loaded["version"]
        self.backend = f"ssh:{self.runtime}" + ":emulated" * bool(self.emulated)

    # -- protocol ------------------------------------------------------------------------------
    def _upload(self, artifact: Artifact) -> None:
        model = artifact.model_file.resolve()
        files = {rel: p for rel, p in artifact.files.items() if p.is_file()} or {model.name: model}
        self._model_rel = next((rel for rel, p in files.items() if p.resolve() == model), model.name)
        for rel, path in files.items():
            self._request({"op": "file", "name": Path(rel).as_posix()}, path.read_bytes())

    # -- Runner --------------------------------------------------------------------------------
    def _feeds(self, inputs: Mapping[str, np.ndarray]) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **{t.name: np.ascontiguousarray(inputs[t.name]) for t in self.spec.inputs})  # type: ignore[arg-type]
        return buf.getvalue()

    def _run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        _, data = self._request({"op": "run"}, self._feeds(inputs))
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
        return {n: out[n] for n in self.spec.output_names if n in out} or out

    def time_calls(self, inputs: Mapping[str, np.ndarray], warmup: int, warmup_seconds: float, min_iters: int,
                   max_seconds: float, iters: int | None) -> tuple[list[int], int, float, int]:
        """``laser.measure.latency.time_calls`` run on the device: (per-call ns, wall ns, CPU s, warm-ups done)."""
        self.spec.check_inputs(inputs)
        params = {"warmup": warmup, "warmup_seconds": warmup_seconds, "min_iters": min_iters,
                  "max_seconds": max_seconds, "iters": iters}
        timeout = self.timeout
        self.timeout += warmup_seconds + max_seconds  # the loop's own time budget, on top of the per-request one
        try:
            answer, data = self._request({"op": "time", **params}, self._feeds(inputs))
        finally:
            self.timeout = timeout
        samples = np.load(io.BytesIO(data), allow_pickle=False)
        return [int(v) for v in samples], int(answer["wall_ns"]), float(answer["cpu_s"]), int(answer["warmup_done"])

    @property
    def timing_method(self) -> str:
        clock = "time.perf_counter_ns on the device around each inference call, back to back there (no SSH in it)"
        return f"emulated ({self.emulated}): {clock}" if self.emulated else f"measured: {clock}"

    def describe(self) -> dict[str, object]:
        fp = getattr(self, "fingerprint", {})
        return {**super().describe(), "device": self.on, "runtime": getattr(self, "runtime", None),
                "runtime_version": getattr(self, "runtime_version", None), "arch": fp.get("arch"),
                "cpu": fp.get("cpu_model"), "emulated": getattr(self, "emulated", None),
                "timing": self.timing_method if hasattr(self, "emulated") else None}


def probe(on: str, identity: str | None = None, timeout: float | None = None) -> Link:
    """A session to the device that has said hello and which runtimes import there (``.runtimes``); ``close()`` it."""
    link = Link()
    link._connect(on, identity, timeout)
    try:
        link.found = link.runtimes()
    except BaseException:
        link.close()
        raise
    return link
