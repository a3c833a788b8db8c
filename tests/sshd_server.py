"""An OpenSSH server on loopback for the remote-device tests, started by the test itself.

Keys and configuration live in a temporary folder; the server runs in the foreground (`sshd -D`)
for as long as the fixture does and accepts only the generated client key."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass(frozen=True)
class LoopbackSshd:
    url: str  # ssh://user@127.0.0.1:port
    identity: Path
    options: tuple[str, ...]
    home: Path  # a scratch folder on the "device" (the same machine)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sshd(root: Path):
    """Yields a LoopbackSshd; skips (saying why) where OpenSSH's server is not installed."""
    if not Path(SSHD).is_file() or not shutil.which("ssh-keygen") or not shutil.which("ssh"):
        pytest.skip("OpenSSH server not installed (Debian: openssh-server; ./setup.sh installs it when run as root)")
    root.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
    shutil.copy(root / "client_key.pub", root / "authorized_keys")
    port = _free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPidFile {root / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")], stdout=subprocess.DEVNULL,
                            stderr=open(root / "sshd.log", "w"))
    deadline = time.monotonic() + 120  # a failure guard: sshd answers in well under a second
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited: {(root / 'sshd.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                proc.terminate()
                pytest.fail(f"sshd did not listen on port {port} in 120 s: {(root / 'sshd.log').read_text()[-2000:]}")
            time.sleep(0.1)
    user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    options = ("StrictHostKeyChecking=no", f"UserKnownHostsFile={root / 'known_hosts'}", "LogLevel=ERROR")
    home = root / "device"
    home.mkdir()
    try:
        yield LoopbackSshd(url=f"ssh://{user}@127.0.0.1:{port}", identity=root / "client_key", options=options, home=home)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
