"""`mmedge bench --remote`: the same worker, run on a device over ssh.

The bundle is copied once (by its manifest's sha256, `runtime/remote.py`), the input files into a
scratch folder that is removed afterwards, and the worker command line — which carries everything
the worker needs — is run through ssh with the device's Python; its progress lines and JSON come
back over the ssh pipes exactly as from a local worker.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..remote import REMOTE_CACHE, SshTarget, copy_inputs, ensure_bundle, remove_folder
from .settings import BenchSettings


@dataclass(frozen=True)
class RemoteRun:
    url: str
    target: SshTarget
    python: str = "python3"  # the device's Python with mmedge[runtime] installed
    cache: str = REMOTE_CACHE  # the device's bundle cache folder

    @classmethod
    def from_options(cls, url: str, python: str = "python3", identity: str | None = None,
                     options: tuple[str, ...] = (), cache: str | None = None) -> "RemoteRun":
        return cls(url=url, target=SshTarget.parse(url, identity=identity, options=tuple(options)), python=python,
                   cache=cache or REMOTE_CACHE)


class RemoteInputs:
    """The run's input files on the device for as long as the `with` block lasts."""

    def __init__(self, remote: RemoteRun, settings: BenchSettings):
        self.remote, self.settings = remote, settings
        self.folder: str | None = None

    def __enter__(self) -> BenchSettings:
        local = [Path(p) for p in self.settings.images] + ([Path(self.settings.video)] if self.settings.video else [])
        self.folder, paths = copy_inputs(self.remote.target, local)
        images = tuple(paths[:len(self.settings.images)])
        video = paths[-1] if self.settings.video else None
        return replace(self.settings, images=images, video=video)

    def __exit__(self, *exc) -> None:
        remove_folder(self.remote.target, self.folder)


def remote_worker_command(remote: RemoteRun, worker_argv: list[str]) -> list[str]:
    """ssh argv running the worker command (its first word, the local Python, replaced by the device's)."""
    return remote.target.ssh_command([remote.python, *worker_argv[1:]])


def place_bundle(remote: RemoteRun, bundle: str) -> tuple[str, bool]:
    """(the bundle's folder on the device, whether it was copied now)."""
    return ensure_bundle(remote.target, bundle, cache=remote.cache)
