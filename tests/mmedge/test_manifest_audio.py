"""The manifest's audio section: an audio bundle's roles and section round-trip, image bundles are
unchanged, and every bad value is a ManifestError naming the field."""
from __future__ import annotations

import copy

import pytest

from mmedge.manifest import Manifest

from .manifest_helpers import manifest_error

AUDIO = {"marker": "<|AUDIO|>", "marker_token_id": 5, "embedding_dim": 4096, "reductions": [[3, 1, 1], [3, 2, 1], [2, 2, 0]],
         "features": {"kind": "whisper-log-mel", "sampling_rate": 16000, "n_fft": 400, "hop_length": 160, "n_mels": 128,
                      "chunk_frames": 3000}}


@pytest.fixture
def audio_bundle(valid):
    """The valid image manifest turned into an audio one (roles renamed, image sections dropped)."""
    d = copy.deepcopy(valid)
    d["parts"]["audio_encoder"] = d["parts"].pop("vision_encoder")
    d["parts"]["audio_projector"] = d["parts"].pop("projector")
    d.pop("image"), d.pop("preprocess")
    d.pop("alternatives", None)
    d["audio"] = copy.deepcopy(AUDIO)
    return d


def test_audio_manifest_round_trips(audio_bundle):
    m = Manifest.from_dict(audio_bundle)
    assert (m.modality, m.tensor_roles, m.image, m.image_preprocess) == ("audio", ("audio_encoder", "audio_projector"),
                                                                         None, None)
    # Qwen2-Audio's token count: 1.3 s (130 frames) -> 32 rows, 30 s -> 750.
    assert (m.audio.rows_for(130), m.audio.rows_for(3000), m.audio.features.max_seconds) == (32, 750, 30.0)
    assert Manifest.from_json(m.to_json()).to_dict() == m.to_dict()
    assert m.to_dict()["audio"] == AUDIO


def test_image_manifest_is_unchanged(valid):
    m = Manifest.from_dict(valid)
    assert (m.modality, m.audio) == ("image", None) and "audio" not in m.to_dict()


@pytest.mark.parametrize("change, message", [
    (lambda d: d["audio"]["features"].update(kind="kaldi-fbank"), "audio.features.kind: expected one of ['whisper-log-mel']"),
    (lambda d: d["audio"]["features"].update(n_mels=0), "audio.features.n_mels: expected 1 .. 16777216, found 0"),
    (lambda d: d["audio"]["features"].pop("hop_length"), "audio.features.hop_length: required field is missing"),
    (lambda d: d["audio"].update(reductions=[[3, 0, 1]]), "audio.reductions: kernel and stride must be >= 1"),
    (lambda d: d["audio"].update(reductions=[]), "audio.reductions: expected a non-empty list"),
    (lambda d: d["audio"].update(marker=""), "audio.marker: must not be empty"),
    (lambda d: d["audio"].update(embedding_dim="64"), "audio.embedding_dim: expected int, found str"),
    (lambda d: d["parts"].update(vision_encoder=d["parts"]["audio_encoder"]), "unknown part roles ['vision_encoder']"),
    (lambda d: d["parts"].pop("audio_projector"), "missing ['audio_projector']; a bundle needs ['audio_encoder', "
                                                  "'audio_projector', 'llm'] (its input: audio)"),
    (lambda d: d.update(image={}), "has both an image and an audio section"),
])
def test_bad_audio_values_are_named(audio_bundle, change, message):
    change(audio_bundle)
    assert message in manifest_error(audio_bundle)
