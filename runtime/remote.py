"""Run something on a remote device over OpenSSH: `ssh://user@host[:port]` targets, bundles copied once.

The device needs only sshd and the light runtime install (`pip install 'mmedge[runtime]'`); this
side needs the OpenSSH client (`ssh`, `scp`). A bundle is copied to
`~/.cache/mmedge/bundles/<sha256 of its manifest.json>/` on the device — the manifest lists every
file's sha256, so its own hash names the bundle's whole content — through a `.partial` folder that is
renamed into place when complete, so an interrupted copy is never taken for a bundle. A bundle already
there is not copied again.
"""
from __future__ import annotations

import hashlib
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mmedge.errors import RemoteError

REMOTE_CACHE = ".cache/mmedge/bundles"  # relative to the remote user's home
# Seconds for one ssh round trip that does no real work (connect, test, rename).
QUICK_TIMEOUT = 60


@dataclass(frozen=True)
class SshTarget:
    user: str | None
    host: str
    port: int | None = None
    identity: str | None = None  # a private key file (ssh -i)
    options: tuple[str, ...] = field(default=())  # extra `-o Key=Value` options

    @classmethod
    def parse(cls, url: str, identity: str | None = None, options: tuple[str, ...] = ()) -> "SshTarget":
        """`ssh://[user@]host[:port]`; anything else is a RemoteError saying the expected form."""
        parts = urlsplit(url)
        if parts.scheme != "ssh" or not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise RemoteError(f"remote {url!r}: expected ssh://[user@]host[:port], e.g. ssh://pi@raspberrypi.local:22")
        try:
            port = parts.port
        except ValueError:
            raise RemoteError(f"remote {url!r}: the port must be a number in 1..65535") from None
        for option in options:
            if "=" not in option or option.startswith("-"):
                raise RemoteError(f"ssh option {option!r}: expected Key=Value (passed to ssh as -o Key=Value)")
        return cls(user=parts.username, host=parts.hostname, port=port, identity=identity, options=tuple(options))

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def _common(self, port_flag: str) -> list[str]:
        args = ["-o", "BatchMode=yes"]  # never prompt for a password: fail with a message instead
        if self.port:
            args += [port_flag, str(self.port)]
        if self.identity:
            args += ["-i", self.identity]
        for option in self.options:
            args += ["-o", option]
        return args

    def ssh_command(self, remote_command: list[str]) -> list[str]:
        """ssh argv running `remote_command` (each word quoted for the remote shell)."""
        return ["ssh", *self._common("-p"), self.destination, " ".join(shlex.quote(w) for w in remote_command)]

    def scp_command(self, sources: list[Path], remote_dir: str) -> list[str]:
        return ["scp", "-q", "-r", *self._common("-P"), *map(str, sources), f"{self.destination}:{remote_dir}"]


def run_checked(argv: list[str], what: str, timeout: float) -> subprocess.CompletedProcess:
    """Run an ssh/scp command; a failure is a RemoteError carrying its stderr's last lines."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise RemoteError(f"{argv[0]} not found: install the OpenSSH client (Debian: openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise RemoteError(f"{what}: no answer within {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RemoteError(f"{what} failed (exit {proc.returncode}): {tail or 'no message'}")
    return proc


def bundle_id(bundle_dir: str | Path) -> str:
    """The sha256 of the bundle's manifest.json: it names every file by its own sha256."""
    manifest = Path(bundle_dir) / "manifest.json"
    if not manifest.is_file():
        raise RemoteError(f"{bundle_dir}: no manifest.json; give a bundle folder written by `mmedge export`")
    return hashlib.sha256(manifest.read_bytes()).hexdigest()


def ensure_bundle(target: SshTarget, bundle_dir: str | Path, cache: str = REMOTE_CACHE,
                  timeout: float = 3600) -> tuple[str, bool]:
    """(the bundle's folder on the device, whether it was copied now). Copies into a `.partial`
    folder and renames it into place, so only complete bundles are ever found there. `cache` is
    the device's bundle cache folder (relative to the remote home, or absolute)."""
    bundle_dir = Path(bundle_dir)
    key = bundle_id(bundle_dir)
    final, partial = f"{cache}/{key}", f"{cache}/{key}.partial"
    check = target.ssh_command(["test", "-f", f"{final}/manifest.json"])
    try:
        present = subprocess.run(check, capture_output=True, text=True, timeout=QUICK_TIMEOUT).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        present = False
    if present:
        return final, False
    run_checked(target.ssh_command(["sh", "-c", f"rm -rf {shlex.quote(partial)} && mkdir -p {shlex.quote(partial)}"]),
                f"preparing {target.destination}:{partial}", QUICK_TIMEOUT)
    run_checked(target.scp_command(sorted(bundle_dir.iterdir()), partial), f"copying {bundle_dir} to {target.destination}",
                timeout)
    run_checked(target.ssh_command(["mv", partial, final]), f"finishing the copy on {target.destination}", QUICK_TIMEOUT)
    return final, True


def copy_inputs(target: SshTarget, files: list[Path], timeout: float = 600) -> tuple[str | None, list[str]]:
    """Input files (images, videos) copied to a fresh folder on the device: (the folder, their
    remote paths); remove the folder with `remove_folder` when done."""
    if not files:
        return None, []
    folder = run_checked(target.ssh_command(["mktemp", "-d"]), f"making a folder on {target.destination}",
                         QUICK_TIMEOUT).stdout.strip()
    remote = [f"{folder}/{i}-{Path(f).name}" for i, f in enumerate(files)]
    for local, there in zip(files, remote):
        run_checked(target.scp_command([Path(local)], there), f"copying {local} to {target.destination}", timeout)
    return folder, remote


def remove_folder(target: SshTarget, folder: str | None) -> None:
    if folder:
        subprocess.run(target.ssh_command(["rm", "-rf", folder]), capture_output=True, timeout=QUICK_TIMEOUT)
