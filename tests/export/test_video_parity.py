"""Video parity (LLaVA-OneVision, Qwen2-VL, Qwen2.5-VL): the fp32 bundle's greedy tokens equal
transformers' `generate` for 32 tokens, with the HF processor's own prompt (its video-token
expansion, mm_token_type_ids, Qwen2.5-VL's second_per_grid_ts) and HF's frames (its PyAV loader and
frame sampler). Only the video processor's pixel path is a mirror (`video_reference.py`: its class
needs torchvision), and the runtime's frames are checked against it to the bit. For Qwen, the text
after a video resumes after the video's largest position (Qwen's own rule, transformers <= 5.2);
transformers 5.24 resumes earlier when the temporal positions run past the spatial extent, which
`test_transformers_5_24_differs_only_when_time_runs_past_space` pins down.

Cases: a video file sampled to 6 frames; 5 frames given in memory (odd: Qwen pads the last group;
no frame rate: Qwen2.5-VL's temporal positions collide, the llama.cpp mask must still be causal
in sequence order); a video and an image in one prompt, the video's marker first.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from mmedge.export.verify_inputs import synthetic_photo
from mmedge.runtime.layouts import FrameRequest
from mmedge.runtime.pipeline import GenerationParams
from mmedge.runtime.video import video_from_frames

from ..verification_checks import assert_greedy_matches, hf_greedy_scored
from ..video_helpers import hf_load, qwen2vl_reference, source_frames, write_video
from .parity_helpers import N_TOKENS, exact_pipeline_and_reference
from .video_reference import original_rope_rule, with_reference_videos

# preset -> (video processor kind, mixed prompt: the video's marker before the image's)
PRESETS = {
    "onevision-siglip-qwen2": ("onevision", "<video>\nthen <image>\nWhat changed?"),
    "qwen2vl-tiny": ("qwen2vl", "Watch <|video_pad|> then look at <|image_pad|>: what changed?"),
    "qwen25vl-tiny": ("qwen2vl", "Watch <|video_pad|> then look at <|image_pad|>: what changed?"),
}
FRAME_RATE = 4  # the file's frames per second: Qwen2.5-VL's temporal positions depend on it


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """14 lossless frames of 90x70 (odd sizes: Qwen's smart_resize rounds them) at 4 fps."""
    frames = [np.ascontiguousarray(f[:70, :90]) for f in source_frames(14)]
    return write_video(tmp_path_factory.mktemp("video") / "clip.mov", "png", "rgb24", frames, rate=FRAME_RATE)


@pytest.fixture(scope="module", params=list(PRESETS))
def video_case(request, bundles, checkpoints):
    preset = request.param
    kind, mixed_prompt = PRESETS[preset]
    for pipe, family, ckpt in exact_pipeline_and_reference(bundles, checkpoints, preset, n_ctx=2048):
        processor = with_reference_videos(ckpt.processor, checkpoints(preset), kind)
        if kind == "qwen2vl":
            own_rope_index = ckpt.model.model.get_rope_index
            original_rope_rule(ckpt.model)
            ckpt.own_rope_index = own_rope_index
        yield pipe, ckpt, processor, kind, mixed_prompt


def reference_frames(path, kind: str, num_frames: int):
    """transformers' PyAV loader with the family's sampler (Qwen2-VL's mirrored: its module needs torchvision)."""
    from transformers.video_utils import default_sample_indices_fn

    if kind == "onevision":
        return hf_load(path, sample_indices_fn=lambda metadata, **kw: default_sample_indices_fn(metadata, num_frames=num_frames))
    return hf_load(path, sample_indices_fn=lambda metadata, **kw: qwen2vl_reference(metadata, num_frames=num_frames).numpy())


@dataclass
class HfGreedy:
    tokens: list[int]
    scores: list  # the logits transformers picked each token from


def hf_generate(pipe, ckpt, processor, text, images=(), videos=(), metadata=None):
    """(HfGreedy, prompt ids, inputs) of transformers' greedy generate on the HF processor's inputs, EOS banned."""
    kwargs = {"video_metadata": metadata} if metadata is not None else {}
    inputs = processor(text=text, images=list(images) or None, videos=list(videos) or None, return_tensors="pt", **kwargs)
    eog = [int(t) for t in pipe.llm.eog_tokens]
    tokens, scores = hf_greedy_scored(ckpt.model, inputs, eog, processor.tokenizer.pad_token_id, N_TOKENS)
    return HfGreedy(tokens, scores), inputs["input_ids"][0].tolist(), inputs


def check_tokens(pipe, ours, ref: HfGreedy, hf_prompt) -> None:
    assert len(ref.tokens) == N_TOKENS
    assert_greedy_matches(pipe, ref.tokens, ref.scores, ours.tokens)
    ref = ref.tokens
    assert len(set(ref)) > 6  # the random model's text varies, or parity would prove little
    media = {pipe.manifest.image.marker_token_id, pipe.manifest.video.marker_token_id}
    assert ours.prompt_tokens == [t for t in hf_prompt if t not in media]


def test_video_file_equals_transformers(video_case, clip):
    pipe, ckpt, processor, kind, _ = video_case
    frames, metadata = reference_frames(clip, kind, num_frames=6)
    ours_video = pipe.video_layout.load(clip, FrameRequest(num_frames=6))
    assert np.array_equal(ours_video.frames, frames)
    text = pipe.format("Describe the video.", 0, n_videos=1)
    ref, hf_prompt, inputs = hf_generate(pipe, ckpt, processor, text, videos=[frames], metadata=[metadata])
    ours = pipe.generate([], "Describe the video.", GenerationParams(max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS),
                         videos=[clip], frames=FrameRequest(num_frames=6))
    check_tokens(pipe, ours, ref, hf_prompt)
    # The encoder got HF's pixels exactly (window order undone for Qwen2.5-VL).
    prepared = pipe.prepare_videos([ours_video])[0]
    assert hf_prompt.count(pipe.manifest.video.marker_token_id) == prepared.n_rows
    check_pixels(prepared, inputs, kind)


def check_pixels(prepared, inputs, kind: str) -> None:
    if kind == "onevision":
        assert np.array_equal(prepared.tiles, inputs["pixel_values_videos"][0].numpy())
        return
    ours = np.concatenate([c["pixel_values"] for c in prepared.chunks])
    order = prepared.info["window_order"]
    if order is not None:  # back to the processor's merge-group order, group by group
        groups = ours.reshape(prepared.info["grid_thw"][0], len(order), -1, ours.shape[-1])
        restored = np.empty_like(groups)
        restored[:, order] = groups
        ours = restored.reshape(ours.shape)
    assert np.array_equal(ours, inputs["pixel_values_videos"].numpy())
    assert tuple(inputs["video_grid_thw"][0].tolist()) == prepared.info["grid_thw"]


def test_frames_in_memory_equal_transformers(video_case):
    """5 frames, no frame rate: Qwen pads the last temporal group with the last frame, and
    Qwen2.5-VL's groups share one temporal position (24 fps assumed, as transformers does)."""
    pipe, ckpt, processor, kind, _ = video_case
    frames = np.stack([np.ascontiguousarray(f[5:62, 3:80]) for f in source_frames(5)])
    text = pipe.format("What happens?", 0, n_videos=1)
    ref, hf_prompt, _ = hf_generate(pipe, ckpt, processor, text, videos=[frames])
    ours = pipe.generate([], "What happens?", GenerationParams(max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS),
                         videos=[video_from_frames(frames)])
    check_tokens(pipe, ours, ref, hf_prompt)


def test_video_and_image_in_one_prompt(video_case, clip):
    """The video's marker stands before the image's: rows are taken in text order."""
    pipe, ckpt, processor, kind, prompt = video_case
    frames, metadata = reference_frames(clip, kind, num_frames=4)
    image = synthetic_photo(61, 45, seed=7)
    text = pipe.format(prompt, 1, n_videos=1)
    ref, hf_prompt, _ = hf_generate(pipe, ckpt, processor, text, images=[image], videos=[frames], metadata=[metadata])
    ours = pipe.generate([image], prompt, GenerationParams(max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS),
                         videos=[clip], frames=FrameRequest(num_frames=4))
    check_tokens(pipe, ours, ref, hf_prompt)


def test_generation_depends_on_the_video(video_case):
    """Control for the equalities above: the frames in reverse order give other tokens."""
    pipe = video_case[0]
    frames = np.stack(source_frames(6))
    params = GenerationParams(max_new_tokens=8, min_new_tokens=8)
    forward = pipe.generate([], "What happens?", params, videos=[video_from_frames(frames)]).tokens
    backward = pipe.generate([], "What happens?", params, videos=[video_from_frames(frames[::-1])]).tokens
    assert forward != backward


def test_transformers_5_24_differs_only_when_time_runs_past_space(video_case, clip):
    """The two rules for the text after a Qwen video agree while the video's temporal offsets stay
    below max(grid_h, grid_w) / merge (Qwen2-VL's 3 groups here, and every image); the 6 sampled
    frames of the 4-fps clip put Qwen2.5-VL's past it, and there transformers 5.24 differs."""
    pipe, ckpt, processor, kind, _ = video_case
    if kind != "qwen2vl":
        pytest.skip("only Qwen's M-RoPE places text after a video by position")
    frames, metadata = reference_frames(clip, kind, num_frames=6)
    text = pipe.format("Describe the video.", 0, n_videos=1)
    inputs = processor(text=text, videos=[frames], return_tensors="pt", video_metadata=[metadata])
    args = {k: inputs[k] for k in ("mm_token_type_ids", "video_grid_thw", "second_per_grid_ts") if k in inputs}
    original, _ = ckpt.model.model.get_rope_index(inputs["input_ids"], **args)
    transformers_5_24, _ = ckpt.own_rope_index(inputs["input_ids"], **args)
    time_runs_past = pipe.manifest.video.layout.tokens_per_second is not None
    assert torch.equal(original, transformers_5_24) != time_runs_past
    # Ours: every row and token at the original rule's positions (n_past cells, next position after).
    prepared = pipe.prepare_videos([pipe.video_layout.load(clip, FrameRequest(num_frames=6))])
    plan = pipe.plan(text, prepared)
    pipe.llm.reset()
    pipe._prefill(plan, pipe.image_rows(prepared), prepared)
    assert pipe.llm.next_pos == int(original.max()) + 1
