"""A throwaway SSH "device" for the ``--on ssh://`` tests: Debian's OpenSSH server on 127.0.0.1, on a free port,
as the current user, with its own host key, client key, sshd_config and known_hosts in a temp dir (the system's
sshd is not touched), stopped by ``stop()``.

Every session runs ``device.sh``, which gives the remote command the environment the client names with
``SetEnv LASER_DEVICE=...`` (``options(kind)``): ``x86`` (this venv's python3, with numpy + onnxruntime),
``arm64`` (Debian arm64 python3 under qemu-aarch64-static, see scripts/arm64-device.sh), ``noruntime`` / ``nonumpy``
(a python3 whose onnxruntime and openvino / numpy imports fail), ``hang`` (a python3 that never answers) or
``nopython`` (no python3 on the PATH).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
INSTALL = "apt-get install -y openssh-server"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "laser-test", "-f", str(path)],
                   check=True, timeout=30)


class Device:
    def __init__(self, root: Path, arm64_root: Path | None = None):
        if not os.access(SSHD, os.X_OK) or not shutil.which("ssh-keygen") or not shutil.which("ssh"):
            pytest.skip(f"OpenSSH server/client missing: {INSTALL}")
        self.root, self.port, self.user = root, _free_port(), getpass.getuser()
        self.key = root / "client_key"
        for key in (root / "host_key", self.key, root / "other_key"):
            _keygen(key)
        (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
        host_pub = (root / "host_key.pub").read_text().split()
        (root / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self.tmp = root / "device-tmp"  # the device's TMPDIR: what the runner leaves behind shows up here
        self.tmp.mkdir()
        self._device_script(arm64_root)
        (root / "sshd_config").write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {root / 'host_key'}",
            f"PidFile {root / 'sshd.pid'}", f"AuthorizedKeysFile {root / 'authorized_keys'}",
            "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "UsePAM no", "StrictModes no", "PermitRootLogin prohibit-password", f"AllowUsers {self.user}",
            "AcceptEnv LASER_DEVICE", f"ForceCommand /bin/sh {root / 'device.sh'}", "LogLevel ERROR", ""]))
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation dir, absent until sshd ran once
        self.log = open(root / "sshd.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(root / 'sshd.log').read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("sshd did not listen within 10 s")

    def _device_script(self, arm64_root: Path | None) -> None:
        bins = {"x86": Path(sys.executable).parent, "nopython": self.root / "empty-bin"}
        if arm64_root is not None:
            bins["arm64"] = arm64_root / "laser-bin"
        bins["nopython"].mkdir()
        bins["hang"] = self.root / "hang-bin"  # a python3 that never answers (and ends by itself in 5 s)
        bins["hang"].mkdir()
        (bins["hang"] / "python3").write_text("#!/bin/sh\nexec /bin/sleep 5\n")
        (bins["hang"] / "python3").chmod(0o755)
        # This venv's python3 with some packages made unimportable (a package dir whose import raises).
        for kind, hidden in (("noruntime", ("onnxruntime", "openvino")), ("nonumpy", ("numpy",))):
            bins[kind] = self.root / f"{kind}-bin"
            shadow = self.root / f"{kind}-shadow"
            for module in hidden:
                (shadow / module).mkdir(parents=True)
                (shadow / module / "__init__.py").write_text(f"raise ImportError('{module} is not installed')\n")
            bins[kind].mkdir()
            (bins[kind] / "python3").write_text(f"#!/bin/sh\nPYTHONPATH={shadow} exec {sys.executable} \"$@\"\n")
            (bins[kind] / "python3").chmod(0o755)
        cases = "\n".join(f"  {k}) PATH={v}:/usr/bin:/bin ;;" for k, v in bins.items() if k != "nopython")
        (self.root / "device.sh").write_text(
            "case \"$LASER_DEVICE\" in\n" + cases + f"\n  nopython) PATH={bins['nopython']} ;;\n"
            "  *) echo \"device.sh: unknown LASER_DEVICE '$LASER_DEVICE'\" >&2; exit 64 ;;\nesac\n"
            f"export PATH TMPDIR={self.tmp}\nexec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n")

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def options(self, kind: str = "x86") -> str:
        """LASER_SSH_OPTS for a session on this device as ``kind`` (trusting only its own host key)."""
        return (f"-F /dev/null -o UserKnownHostsFile={self.root / 'known_hosts'} -o StrictHostKeyChecking=yes "
                f"-o SetEnv=LASER_DEVICE={kind}")

    def leftovers(self) -> list[str]:
        """Temp dirs the device runner left on the device (none once a session ended)."""
        return sorted(p.name for p in self.tmp.iterdir() if p.name.startswith("laser-device-"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()
