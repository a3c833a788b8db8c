"""Reading a bundle safely and writing one atomically.

Reading: the manifest is parsed and validated, every part path is checked to stay inside the
bundle, and every file's sha256 is compared to the manifest before any model parser sees a
byte of it. Writing: parts go into a hidden staging folder beside the destination that is
renamed into place only when complete, so an interrupted export never leaves something that
looks like a bundle.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import IntegrityError, ManifestError, OutputPathError, UnsafePathError
from .manifest import FOLDER_KINDS, MANIFEST_NAME, MAX_MANIFEST_BYTES, Manifest

_CHUNK = 1 << 20
STAGING_PREFIX = ".mmedge-staging-"
# Inside a staging folder: the pid of the exporting process, so a later export can tell a
# folder left by a killed export from one still being written.
OWNER_FILE = ".mmedge-owner"
# renameat2(2) (linux/fs.h): swap two existing paths in one step.
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def tree_files(folder: Path, what: str) -> list[Path]:
    """The regular files of a folder artifact (a Core ML .mlpackage), sorted; links are refused."""
    files = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise UnsafePathError(f"{what}: {path.relative_to(folder)} is a symlink; bundles hold regular files only")
        if path.is_file():
            files.append(path)
    return files


def sha256_artifact(path: Path, what: str = "part") -> str:
    """sha256 of a file, or of a folder as its sorted (relative path, file sha256) lines."""
    if not path.is_dir():
        return sha256_file(path)
    h = hashlib.sha256()
    for file in tree_files(path, what):
        h.update(f"{file.relative_to(path).as_posix()}\0{sha256_file(file)}\n".encode())
    return h.hexdigest()


def artifact_size(path: Path, what: str = "part") -> int:
    return sum(f.stat().st_size for f in tree_files(path, what)) if path.is_dir() else path.stat().st_size


def contained_path(root: Path, relative: str, what: str) -> Path:
    """Resolve `relative` inside `root`, refusing anything that leaves it (.., absolute, symlinks)."""
    if not relative or "\x00" in relative:
        raise UnsafePathError(f"{what}: empty or NUL-containing path {relative!r}")
    rel = Path(relative)
    if not rel.parts:
        raise UnsafePathError(f"{what}: path {relative!r} names no file; parts must be files inside the bundle")
    if rel.is_absolute() or relative.startswith(("/", "\\")) or ".." in rel.parts or ":" in rel.parts[0]:
        raise UnsafePathError(f"{what}: path {relative!r} must be relative and stay inside the bundle")
    root_real = root.resolve()
    candidate = root / rel
    real = candidate.resolve()
    if real != root_real and root_real not in real.parents:
        raise UnsafePathError(f"{what}: {relative!r} resolves to {real}, outside the bundle {root_real}")
    if candidate.is_symlink():
        raise UnsafePathError(f"{what}: {relative!r} is a symlink; bundles hold regular files only")
    return candidate


@dataclass
class Bundle:
    """An opened, integrity-checked bundle."""

    root: Path
    manifest: Manifest
    hashes_checked: bool = True  # every part's sha256 matched the manifest at open

    def verified_sha256(self, part) -> str | None:
        """The part's hash if `open_bundle` compared it with the file's bytes, else None."""
        return part.sha256 if self.hashes_checked else None

    def path_of(self, role: str) -> Path:
        return self.root / self.manifest.parts[role].file

    def path_for(self, part) -> Path:
        return self.root / part.file


def read_manifest(root: Path) -> Manifest:
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder; expected a bundle folder written by `mmedge export`")
    path = root / MANIFEST_NAME
    # Before is_file(), which follows links: a dangling link is a symlink, not a missing file.
    if path.is_symlink():
        raise UnsafePathError(f"{path}: is a symlink; bundles hold regular files only")
    if not path.is_file():
        raise ManifestError(f"{path}: missing; {root} is not an mmedge bundle (or its export was interrupted)")
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path}: {size} bytes, larger than any manifest ({MAX_MANIFEST_BYTES}); not a bundle")
    try:
        return Manifest.from_json(path.read_bytes())
    except RecursionError:
        # json.loads recurses per nesting level; a few kB of '[' would otherwise escape as a traceback.
        raise ManifestError(f"{path}: JSON nested too deeply to be a manifest; the bundle is corrupted, re-export it") from None


def _check_single_link(path: Path, label: str) -> None:
    """A hard link makes a bundle file the same inode as a name elsewhere, which can change it after
    the hash check (or expose a file the bundle should not reach): bundles hold files of their own."""
    links = os.lstat(path).st_nlink
    if links > 1:
        raise UnsafePathError(f"{label}: {path.name} has {links} hard links; bundles hold files of their own "
                              "(copy the bundle with `cp -r` or `rsync` without hard links)")


def _check_nothing_unlisted(root: Path, listed: set[Path], folders: set[Path]) -> None:
    """No links anywhere in the bundle, and no model file the manifest does not list (a parser could
    be pointed at it, e.g. ONNX external data, without it ever being hashed)."""
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        if here in folders:
            dirs[:] = []  # a folder artifact: tree_files checks it
            continue
        for name in dirs + files:
            path = here / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                raise UnsafePathError(f"{rel} is a symlink inside the bundle; bundles hold regular files only")
            if name in files and path not in listed and path.name != MANIFEST_NAME and _looks_like_a_model(name):
                raise IntegrityError(f"{rel} is in the bundle but not in its manifest; every model file of a bundle is "
                                     "listed and hashed: remove it, or re-export the bundle")


# File names a model parser may read: weights, graphs, external data, pickles.
MODEL_SUFFIXES = (".gguf", ".onnx", ".ort", ".pte", ".ptd", ".mlmodel", ".mlpackage", ".safetensors", ".bin", ".pt",
                  ".pth", ".pkl", ".pickle", ".ckpt", ".data", ".onnx_data", ".npy", ".npz", ".tflite", ".weights")


def _looks_like_a_model(name: str) -> bool:
    lower = name.lower()
    return any(lower.endswith(suffix) for suffix in MODEL_SUFFIXES) or ".onnx." in lower


def open_bundle(root: str | Path, check_hashes: bool = True) -> Bundle:
    """Validate manifest, paths, links and hashes. Nothing else in mmedge opens model files before this."""
    root = Path(root)
    manifest = read_manifest(root)
    listed, folders = {root / MANIFEST_NAME}, set()
    for label, part in manifest.all_parts():
        path = contained_path(root, part.file, f"{label}.file")
        is_folder = part.kind in FOLDER_KINDS
        if not (path.is_dir() if is_folder else path.is_file()):
            raise IntegrityError(f"{label}: {'folder' if is_folder else 'file'} {part.file!r} is missing from the bundle; re-export it")
        for file in (tree_files(path, label) if is_folder else [path]):
            _check_single_link(file, label)
        (folders if is_folder else listed).add(path)
        size = artifact_size(path, label)
        if size != part.size_bytes:
            raise IntegrityError(
                f"{label}: {part.file} is {size} bytes, the manifest says {part.size_bytes}; "
                "the file was truncated or replaced, re-export the bundle"
            )
        if check_hashes:
            digest = sha256_artifact(path, label)
            if digest != part.sha256:
                raise IntegrityError(
                    f"{label}: sha256 of {part.file} is {digest[:16]}..., the manifest says {part.sha256[:16]}...; "
                    "the file was modified or corrupted, re-export the bundle"
                )
    _check_nothing_unlisted(root, listed, folders)
    return Bundle(root=root, manifest=manifest, hashes_checked=check_hashes)


class BundleWriter:
    """Stage a bundle beside its destination; `commit()` renames it into place.

    Used as a context manager: leaving the block by an exception removes the staging folder
    and leaves the destination exactly as it was.
    """

    def __init__(self, destination: str | Path, overwrite: bool = False):
        self.destination = Path(destination)
        self.overwrite = overwrite
        self._check_destination()
        parent = self.destination.parent
        _remove_stale_staging(parent, self.destination.name)
        try:
            self.staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX + self.destination.name + "-", dir=parent))
            (self.staging / OWNER_FILE).write_text(str(os.getpid()))
        except OSError as e:
            raise OutputPathError(f"{parent}: cannot create a folder there ({e.strerror}); choose a writable output path") from None
        self.committed = False

    def _check_destination(self) -> None:
        dest = self.destination
        if dest.is_symlink():
            raise OutputPathError(f"{dest}: is a symlink; give a real path so the bundle cannot land somewhere unexpected")
        if dest.exists():
            if not dest.is_dir():
                raise OutputPathError(f"{dest}: exists and is not a folder; choose another output path")
            if any(dest.iterdir()) and not (dest / MANIFEST_NAME).is_file():
                raise OutputPathError(f"{dest}: exists, is not empty and is not a bundle; refusing to replace it")
            if (dest / MANIFEST_NAME).is_file() and not self.overwrite:
                raise OutputPathError(f"{dest}: a bundle is already there; pass --force to replace it")
        parent = dest.parent
        if not parent.exists():
            try:
                parent.mkdir(parents=True)
            except OSError as e:
                raise OutputPathError(f"{parent}: cannot create the folder ({e.strerror}); choose a writable output path") from None
        if not parent.is_dir():
            raise OutputPathError(f"{parent}: is not a folder; choose another output path")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputPathError(f"{parent}: not writable; choose a writable output path")

    def path(self, name: str) -> Path:
        return contained_path(self.staging, name, "bundle file")

    def commit(self, manifest: Manifest) -> Path:
        (self.staging / OWNER_FILE).unlink(missing_ok=True)
        (self.staging / MANIFEST_NAME).write_text(manifest.to_json())
        _fsync_tree(self.staging)
        # mkdtemp made the staging folder private (0700) while it was partial; the published
        # bundle gets the permissions any new folder of this user gets, as its files do.
        os.chmod(self.staging, _new_folder_mode(self.staging))
        dest = self.destination
        if dest.exists() and _exchange(self.staging, dest):
            # One atomic step: the destination now holds the new bundle and the staging path the
            # old one. A crash at any point leaves a complete bundle, old or new, at the destination.
            self.committed = True
            shutil.rmtree(self.staging, ignore_errors=True)
            return dest
        backup = None
        if dest.exists():
            # No atomic exchange here (not Linux, or the file system lacks it): a crash between the
            # two renames leaves no bundle at the destination and the previous one at `backup`.
            backup = dest.with_name(f"{STAGING_PREFIX}old-{dest.name}-{os.getpid()}")
            os.rename(dest, backup)
        os.rename(self.staging, dest)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
        self.committed = True
        return dest

    def abort(self) -> None:
        if not self.committed:
            shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> "BundleWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.abort()


def _remove_stale_staging(parent: Path, name: str) -> None:
    """Delete staging folders of earlier exports to the same name whose process is gone (SIGKILL,
    power loss). A folder whose owner is alive, or unknown, is left alone."""
    for folder in parent.glob(f"{STAGING_PREFIX}{name}-*"):
        try:
            pid = int((folder / OWNER_FILE).read_text())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):
            continue


def _new_folder_mode(staging: Path) -> int:
    """The mode a folder made now gets (0777 minus the umask), found without touching the umask."""
    probe = staging / ".mode-probe"  # staging is ours alone: a fixed name cannot clash
    probe.mkdir()
    try:
        return probe.stat().st_mode & 0o777
    finally:
        probe.rmdir()


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux renameat2 RENAME_EXCHANGE); False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # no libc symbol (old glibc, musl builds without it)
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    # On failure (old kernel, a file system without the flag) the caller falls back to two renames,
    # which report any real error themselves.
    return fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
