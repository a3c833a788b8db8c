"""The bundle's modality -> what turns one input (an image, an audio clip) into encoder inputs,
prompt text and embedding rows: an image layout or `AudioClips`, both with prepare /
projected_shape / assemble, so the pipeline and verification run either the same way."""
from __future__ import annotations

from mmedge.manifest import Manifest

from .audio_clips import AudioClips
from .layouts import image_layout


def media_layout(manifest: Manifest):
    if manifest.audio is not None:
        return AudioClips(manifest.audio)
    return image_layout(manifest.image_preprocess, manifest.image)
