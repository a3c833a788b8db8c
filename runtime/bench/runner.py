"""The parent side of `mmedge bench`: check everything up front, then one worker process per
bundle, one after the other (never in parallel: they would time each other), with progress."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import deque
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

from mmedge.bundle import open_bundle
from mmedge.errors import BenchError, BenchWorkerError, VideoError

from ..images import load_image
from .report import build_report
from .remote_run import RemoteInputs, RemoteRun, place_bundle, remote_worker_command
from .settings import BenchSettings
from .worker import STEP_PREFIX

WORKER_MODULE = "mmedge.runtime.bench.worker"
ERROR_PREFIX = "mmedge bench worker: error: "


def check_request(bundles: list[str], settings: BenchSettings, json_out: str | None = None,
                  plot_out: str | None = None) -> None:
    """Refuse, before any measurement, what would fail later: missing or damaged bundles (manifest
    only; the worker checks the hashes while loading), audio bundles, unreadable images, a missing
    video or a bundle that takes none, unwritable outputs, --plot without matplotlib."""
    if not bundles:
        raise BenchError("no bundle given; name one or more bundle folders (mmedge bench BUNDLE [BUNDLE ...])")
    for path in bundles:
        manifest = open_bundle(path, check_hashes=False).manifest
        if manifest.modality != "image":
            raise BenchError(f"{path}: a {manifest.modality} bundle ({manifest.family}); mmedge bench times image and "
                             "video bundles only so far")
        if settings.video is not None and manifest.video is None:
            raise BenchError(f"{path}: this bundle ({manifest.family}) takes no videos; drop --video or bench a bundle "
                             "of a family with a video path (LLaVA-OneVision, Qwen2-VL, Qwen2.5-VL)")
    for image in settings.images:
        load_image(image)
    if settings.video is not None and not Path(settings.video).exists():
        raise VideoError(f"{settings.video}: no such file or folder; give a video file or a folder of frame images")
    for option, out in (("--json", json_out), ("--plot", plot_out)):
        if out is not None:
            check_output_path(out, option)
    if plot_out is not None:
        from .plot import require_matplotlib

        require_matplotlib()


def check_output_path(path: str, option: str) -> None:
    p = Path(path)
    if p.is_dir():
        raise BenchError(f"{option} {path}: is a folder; give a file path to write")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise BenchError(f"{option} {path}: the folder {parent} does not exist; create it or write elsewhere")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise BenchError(f"{option} {path}: not writable; choose a path you may write")


def worker_command(bundle: str, settings: BenchSettings, python: str = sys.executable) -> list[str]:
    """The worker's command line: everything it needs is on it (a remote runner prefixes ssh)."""
    return [python, "-m", WORKER_MODULE, str(bundle), *settings.worker_argv(), "--progress"]


def steps_per_bundle(settings: BenchSettings) -> int:
    """Progress steps a worker reports: the cold load, the warm-up and timed runs, the warm loads."""
    return 1 + settings.warmup + 2 * settings.reps


def run_worker(command: list[str], bundle: str, on_step: Callable[[str], None] = lambda label: None) -> dict:
    """Run one worker; its progress lines go to `on_step`, its JSON line is returned."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout: list[str] = []
    # stdout drains on its own thread, so that neither pipe can fill up while the other is read.
    reader = threading.Thread(target=lambda: stdout.append(proc.stdout.read()), daemon=True)
    reader.start()
    tail: deque[str] = deque(maxlen=40)
    for line in proc.stderr:
        if line.startswith(STEP_PREFIX):
            on_step(line[len(STEP_PREFIX):].strip())
        else:
            tail.append(line.rstrip("\n"))
    rc = proc.wait()
    reader.join()
    if rc != 0:
        errors = [line[len(ERROR_PREFIX):] for line in tail if line.startswith(ERROR_PREFIX)]
        detail = errors[-1] if errors else "\n".join(list(tail)[-15:]) or "no output"
        raise BenchWorkerError(f"{bundle}: the bench worker failed (exit {rc}): {detail}")
    lines = [line for line in "".join(stdout).splitlines() if line.strip()]
    try:
        out = json.loads(lines[-1])
        out["machine"], out["result"]  # noqa: B018  (the keys the parent needs)
    except (IndexError, ValueError, KeyError, TypeError):
        raise BenchWorkerError(f"{bundle}: the bench worker printed no result line; its stderr ends with: "
                               + " | ".join(list(tail)[-5:])) from None
    return out


def run_bench(bundles: list[str], settings: BenchSettings, progress: bool = True, remote: RemoteRun | None = None) -> dict:
    """Measure every bundle in its own worker, in order; the report (`report.build_report`).
    With `remote`, the workers run on that device (bundles and inputs copied there first)."""
    with (RemoteInputs(remote, settings) if remote else nullcontext(settings)) as worker_settings:
        results, machines = _measure_all(bundles, settings, worker_settings, progress, remote)
    return build_report(machines, settings, results, remote=remote.url if remote else None)


def _measure_all(bundles, settings, worker_settings, progress, remote):
    from tqdm import tqdm

    results, machines = [], []
    per_bundle = steps_per_bundle(settings)
    with tqdm(total=per_bundle * len(bundles), unit="step", file=sys.stderr, disable=not progress,
              dynamic_ncols=True) as bar:
        for i, bundle in enumerate(bundles):
            bar.set_description(f"{i + 1}/{len(bundles)} {Path(bundle).name}")

            def on_step(label: str) -> None:
                bar.set_postfix_str(label, refresh=False)
                bar.update(1)

            placed = {}
            if remote is None:
                command = worker_command(str(Path(bundle).resolve()), worker_settings)
            else:
                bar.set_postfix_str("copying the bundle", refresh=True)
                where, copied = place_bundle(remote, bundle)
                placed = {"remote": {"url": remote.url, "path": where, "copied": copied}}
                command = remote_worker_command(remote, worker_command(where, worker_settings))
            out = run_worker(command, bundle, on_step)
            machines.append(out["machine"])
            results.append({"bundle": str(bundle), **out["result"], **placed})
    return results, machines
