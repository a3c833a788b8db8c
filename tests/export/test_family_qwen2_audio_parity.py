"""Qwen2-Audio parity: the fp32 bundle reproduces transformers' greedy `generate` token for token on
synthetic clips of two lengths (the clip placed by the chat template, two clips placed by markers);
our numpy log-mel equals WhisperFeatureExtractor's; WAV files are read or refused by name; the CLI's
`run --audio` says what the pipeline says; the runtime needs no torch."""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import wave

import numpy as np
import pytest

from mmedge.errors import AudioError, RecipeError
from mmedge.export.verify_inputs import synthetic_audio

from .parity_helpers import N_TOKENS, hf_greedy, load_reference
from ..verification_checks import assert_end_to_end_matches, assert_greedy_matches, assert_llm_exact

PRESET = "qwen2audio-tiny"
RATE = 16000
MARKER = "<|AUDIO|>"


@pytest.fixture(scope="module")
def qwen_audio(bundles, checkpoints):
    from mmedge.runtime.pipeline import Pipeline, RuntimeOptions

    pipe = Pipeline(bundles(PRESET)[0], RuntimeOptions(exact=True, n_ctx=1024))
    family, ckpt = load_reference(checkpoints(PRESET))
    yield pipe, family, ckpt
    pipe.close()


def _clips(seconds, seed=100):
    return [(synthetic_audio(s, seed + i), RATE) for i, s in enumerate(seconds)]


def write_pcm16(path, samples: np.ndarray, rate: int = RATE, channels: int = 1) -> None:
    """samples [n] or [n, channels] in [-1, 1] -> a 16-bit PCM WAV written by the standard library."""
    pcm = np.clip(np.round(np.asarray(samples) * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def write_riff(path, fmt_tag: int, bits: int, data: bytes, rate: int = RATE, channels: int = 1) -> None:
    """A WAV of any format tag (the standard library writes PCM only)."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


# -- end to end ------------------------------------------------------------------------------------
@pytest.mark.parametrize("seconds, prompt", [
    ((1.3,), "What do you hear?"),
    ((3.7, 1.3), f"First {MARKER} then {MARKER}: which is louder?"),
], ids=["1.3s-template", "3.7s+1.3s-markers"])
def test_greedy_tokens_equal_transformers_generate(qwen_audio, seconds, prompt):
    from mmedge.runtime.pipeline import GenerationParams

    pipe, family, ckpt = qwen_audio
    clips = _clips(seconds)
    text = pipe.format(prompt, len(clips))
    ref, hf_prompt, scores = hf_greedy(family, ckpt, clips, text, [int(t) for t in pipe.llm.eog_tokens])
    ours = pipe.generate([], prompt, GenerationParams(max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS), audio=clips)
    assert len(ref) == N_TOKENS
    assert_greedy_matches(pipe, ref, scores, ours.tokens)
    assert len(set(ref)) > 8  # the random model's text varies, or parity would prove little
    marker_id = pipe.manifest.audio.marker_token_id
    assert ours.prompt_tokens == [t for t in hf_prompt if t != marker_id]
    # The audio-token runs are as long as HF's processor makes them: 32 rows for 1.3 s, 92 for 3.7 s.
    rows = [p.n_rows for p in pipe.prepare_images(clips)]
    assert sum(rows) == hf_prompt.count(marker_id)
    assert rows == [{1.3: 32, 3.7: 92}[s] for s in seconds]


def test_generation_depends_on_the_audio(qwen_audio):
    """Control for the equality above: another clip of the same length gives other tokens."""
    from mmedge.runtime.pipeline import GenerationParams

    pipe = qwen_audio[0]
    params = GenerationParams(max_new_tokens=8, min_new_tokens=8)
    a = pipe.generate([], "What is it?", params, audio=[(synthetic_audio(2.0, seed=1), RATE)]).tokens
    b = pipe.generate([], "What is it?", params, audio=[(synthetic_audio(2.0, seed=2), RATE)]).tokens
    assert a != b


def test_export_report_is_exact(bundles):
    _, m = bundles(PRESET)
    v = m.verification
    assert_end_to_end_matches(v)
    assert all(c["prompt_tokens_equal"] for c in v["end_to_end"])
    assert v["preprocess"]["max_abs_diff"] < 1e-4  # our float32 log-mel vs transformers' (torch STFT)
    assert v["split_vs_model_max_abs_diff"] == 0.0
    for part in ("audio_encoder", "audio_projector"):
        assert v[part]["cosine"] > 0.99999 and v[part]["max_abs_diff"] < 1e-4
    assert_llm_exact(v)


def test_manifest_audio_section_and_roles(bundles):
    """An audio bundle has the audio roles and section, no image section; the encoder's two inputs
    share one symbolic batch dim; the manifest round-trips."""
    from mmedge.manifest import Manifest

    folder, m = bundles(PRESET)
    assert set(m.parts) == {"audio_encoder", "audio_projector", "llm"} and m.image is None
    f = m.audio.features
    assert (f.sampling_rate, f.n_fft, f.hop_length, f.n_mels, f.chunk_frames) == (16000, 400, 160, 128, 3000)
    assert (m.audio.marker, m.audio.embedding_dim) == (MARKER, 64)
    enc = m.parts["audio_encoder"]
    assert [(t.name, t.dtype) for t in enc.inputs] == [("input_features", "float32"), ("feature_lengths", "int64")]
    assert enc.inputs[0].shape[1:] == [128, 3000] and enc.inputs[0].shape[0] == enc.inputs[1].shape[0]
    raw = json.loads((folder / "manifest.json").read_text())
    assert "image" not in raw and "preprocess" not in raw
    assert Manifest.from_dict(raw).to_dict() == raw


# -- features and files ------------------------------------------------------------------------------
@pytest.mark.parametrize("signal", ["sweep", "noise", "quiet", "short", "full-chunk", "clipped"])
def test_log_mel_equals_whisper_feature_extractor(qwen_audio, signal):
    from mmedge.runtime.mel import log_mel

    pipe, family, ckpt = qwen_audio
    rng = np.random.default_rng(7)
    x = {"sweep": lambda: synthetic_audio(2.5, 3), "noise": lambda: rng.normal(0, 0.3, 40000),
         "quiet": lambda: 1e-4 * np.sin(np.arange(12345) / 5.0), "short": lambda: rng.uniform(-1, 1, 161),
         "full-chunk": lambda: synthetic_audio(30.0, 4), "clipped": lambda: np.sign(np.sin(np.arange(33333) / 20.0)),
         }[signal]().astype(np.float32)
    ref = ckpt.processor.feature_extractor(x, sampling_rate=RATE, return_attention_mask=True, padding="max_length",
                                           return_tensors="np")
    ours, frames = log_mel(x, pipe.manifest.audio.features)
    diff = float(np.abs(ref["input_features"][0] - ours).max())
    assert diff <= 1e-4, diff  # measured: 1.5e-5 at most (numpy's float64 FFT vs torch's float32 one)
    assert frames == int(ref["attention_mask"].sum())


def test_wav_files_are_read_as_the_samples_they_hold(tmp_path):
    from mmedge.runtime.audio import read_wav

    x = synthetic_audio(0.5, 9)
    write_pcm16(tmp_path / "mono.wav", x)
    mono, rate = read_wav(tmp_path / "mono.wav")
    assert rate == RATE and np.array_equal(mono, np.round(x * 32767).astype(np.float32) / 32768)
    stereo = np.stack([x, -0.5 * x], axis=1)
    write_pcm16(tmp_path / "stereo.wav", stereo, channels=2)
    pcm = np.round(stereo * 32767).astype(np.float32) / 32768
    assert np.array_equal(read_wav(tmp_path / "stereo.wav")[0], pcm.mean(axis=1, dtype=np.float32))
    write_riff(tmp_path / "float.wav", 3, 32, x.astype("<f4").tobytes())
    assert np.array_equal(read_wav(tmp_path / "float.wav")[0], x)


@pytest.mark.parametrize("case, message", [
    ("truncated-header", "not a WAV file"),
    ("truncated-data", "the file is truncated"),
    ("8-bit", "8-bit PCM WAV is not decoded; expected 16-bit PCM or 32-bit float"),
    ("wrong-rate", "sampled at 44100 Hz, the bundle's audio encoder expects 16000 Hz"),
    ("empty", "is too short"),
    ("too-long", "longer than the 30 s the encoder takes"),
    ("missing", "cannot read the audio file"),
])
def test_bad_wavs_are_refused_by_name(qwen_audio, tmp_path, case, message):
    pipe = qwen_audio[0]
    path = tmp_path / f"{case}.wav"
    x = synthetic_audio(1.0, 5)
    if case == "truncated-header":
        write_pcm16(path, x)
        path.write_bytes(path.read_bytes()[:10])
    elif case == "truncated-data":
        write_pcm16(path, x)
        path.write_bytes(path.read_bytes()[:2000])
    elif case == "8-bit":
        write_riff(path, 1, 8, (np.clip(x * 127 + 128, 0, 255)).astype(np.uint8).tobytes())
    elif case == "wrong-rate":
        write_pcm16(path, x, rate=44100)
    elif case == "empty":
        write_pcm16(path, np.zeros(0))
    elif case == "too-long":
        write_pcm16(path, np.zeros(31 * RATE))
    with pytest.raises(AudioError) as e:
        pipe.prepare_images([path])
    assert message in str(e.value)


def test_images_given_to_an_audio_bundle_are_refused(qwen_audio):
    from mmedge.errors import PromptError
    from mmedge.export.verify_inputs import synthetic_photo

    with pytest.raises(PromptError, match="takes audio only, 1 images were given"):
        qwen_audio[0].generate([synthetic_photo(40, 40, 0)], "What?")


def test_cli_run_audio_equals_the_pipeline(qwen_audio, bundles, tmp_path):
    from mmedge.runtime.pipeline import GenerationParams

    pipe = qwen_audio[0]
    write_pcm16(tmp_path / "a.wav", synthetic_audio(1.3, 11))
    write_pcm16(tmp_path / "b.wav", synthetic_audio(2.2, 12))
    expected = pipe.generate([], "Describe the sounds.", GenerationParams(max_new_tokens=16),
                             audio=[tmp_path / "a.wav", tmp_path / "b.wav"]).text
    proc = subprocess.run([sys.executable, "-m", "mmedge.cli", "run", str(bundles(PRESET)[0]), "--audio",
                           str(tmp_path / "a.wav"), "--audio", str(tmp_path / "b.wav"), "--prompt", "Describe the sounds.",
                           "--max-tokens", "16", "--exact", "--ctx", "1024"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == expected + "\n" and expected.strip()
    bad = subprocess.run([sys.executable, "-m", "mmedge.cli", "run", str(bundles(PRESET)[0]), "--audio",
                          str(tmp_path / "nope.wav"), "--prompt", "x"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "cannot read the audio file" in bad.stderr


def test_runtime_runs_without_torch(qwen_audio, bundles):
    from mmedge.runtime.pipeline import GenerationParams

    from ..runtime.test_torch_free import BLOCKER

    script = BLOCKER.replace(
        "r = pipe.generate([synthetic_photo(90, 70, seed=3)], ",
        "from mmedge.export.verify_inputs import synthetic_audio\n"
        "r = pipe.generate([], audio=[(synthetic_audio(1.3, 3), 16000)], prompt=").replace(
        '"What is this?", GenerationParams', '"What is this?", params=GenerationParams')
    assert "synthetic_audio" in script
    proc = subprocess.run([sys.executable, "-c", script, str(bundles(PRESET)[0])], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["torch_loaded"] is False
    expected = qwen_audio[0].generate([], "What is this?", GenerationParams(max_new_tokens=12, min_new_tokens=12),
                                      audio=[(synthetic_audio(1.3, 3), RATE)]).tokens
    assert out["tokens"] == expected and len(expected) == 12


@pytest.mark.parametrize("options, message", [
    ({"encoder_target": "executorch"}, "--target executorch: the qwen2_audio family's parts cannot be compiled"),
    ({"encoder": "int8-static"}, "static calibration"),
])
def test_targets_the_family_cannot_do_are_refused_up_front(checkpoints, tmp_path, options, message):
    from mmedge.export.exporter import ExportConfig, export_bundle

    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoints(PRESET), folder)
    for weights in folder.glob("*.safetensors"):  # the refusal comes before the weights are read
        weights.write_bytes(b"not safetensors")
    with pytest.raises(RecipeError) as e:
        export_bundle(ExportConfig(checkpoint=folder, output=tmp_path / "b", **options))
    assert message in str(e.value)
