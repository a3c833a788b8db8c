"""Named errors. Every message says what was expected, what was found, and what to do.

The CLI turns any `MmedgeError` into one line on stderr and a non-zero exit code; anything
else escaping is a bug in mmedge.
"""
from __future__ import annotations


class MmedgeError(Exception):
    """Base of every error mmedge raises on purpose."""

    exit_code = 2


# --- the bundle contract -------------------------------------------------------------------
class BundleError(MmedgeError):
    """A bundle folder is missing, incomplete, or not one mmedge can use."""


class ManifestError(BundleError):
    """manifest.json is missing, unreadable, or does not follow the schema."""


class ManifestVersionError(ManifestError):
    """The manifest was written by a format version this mmedge cannot read."""


class IntegrityError(BundleError):
    """A file's sha256 differs from the manifest: the bundle was modified or corrupted."""


class UnsafePathError(BundleError):
    """A path in the manifest leaves the bundle folder (absolute, `..`, or a symlink out)."""


class GgufFormatError(BundleError):
    """A GGUF file's header is malformed (runtime/gguf_check.py refuses it before llama.cpp reads it)."""


class OnnxFormatError(BundleError):
    """An ONNX file references external data or is broken (runtime/onnx_check.py, before onnxruntime)."""


# --- export --------------------------------------------------------------------------------
class ExportError(MmedgeError):
    """Export could not produce a bundle."""


class CheckpointError(ExportError):
    """The checkpoint folder is missing files or cannot be read."""


class UnsupportedArchitectureError(CheckpointError):
    """No registered model family handles this checkpoint's architecture."""


class UnsupportedConfigError(CheckpointError):
    """The family is known, but this checkpoint uses an option mmedge does not convert."""


class OutputPathError(ExportError):
    """The output path cannot be written (unwritable folder, a file in the way, a symlink)."""


class RecipeError(ExportError):
    """A precision was asked for that the target or part cannot do."""


class CalibrationError(RecipeError):
    """Calibration images for static quantization are missing or unreadable."""


class BelowFloorError(ExportError):
    """A compiled part is further from the PyTorch reference than its recipe allows."""


# --- runtime -------------------------------------------------------------------------------
class RuntimeInputError(MmedgeError):
    """Bad input to the runtime (image, prompt, sampling parameter)."""


class ImageError(RuntimeInputError):
    """An image file is unreadable, not an image, or too small/large to use."""


class AudioError(RuntimeInputError):
    """An audio file is unreadable, not a WAV mmedge decodes, at another sampling rate, or too short/long."""


class VideoError(RuntimeInputError):
    """A video file or frame folder is unreadable, not a video, truncated or too large, or frames were asked
    for that it does not have."""


class RemoteError(MmedgeError):
    """A remote device could not be reached, or a command or copy there failed."""


class PromptError(RuntimeInputError):
    """The prompt does not fit: image markers vs images, or longer than the context."""


class SamplingError(RuntimeInputError):
    """A sampling or generation parameter is out of range."""


class DeviceError(MmedgeError):
    """A requested device is unknown, or absent with --strict."""


class BackendError(MmedgeError):
    """A runtime backend (onnxruntime, llama.cpp) failed to load or run a part."""


class VerificationError(MmedgeError):
    """Verification could not be run (missing reference, mismatched checkpoint)."""


# --- serve ---------------------------------------------------------------------------------
class ServeError(MmedgeError):
    """`mmedge serve` cannot start as asked (a limit out of range, an image root that is not a folder)."""


# --- bench ---------------------------------------------------------------------------------
class BenchError(MmedgeError):
    """`mmedge bench` was asked for something it cannot measure (a setting out of range, an output
    path that cannot be written, a bundle of a modality it does not time)."""


class BenchWorkerError(BenchError):
    """A bench worker (the subprocess measuring one bundle) failed; the message carries its error."""


class MissingDependencyError(MmedgeError):
    """An optional package a command needs is not installed (the message names the extra)."""
