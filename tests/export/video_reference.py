"""transformers' video processors for the parity tests, where torchvision is missing.

LlavaOnevisionVideoProcessor and Qwen2VLVideoProcessor cannot be built without torchvision. Their
pixel path is mirrored here in torch, line for line as transformers 5.24 writes it, with one
substitution: torchvision's `resize` of a uint8 frame tensor on the CPU hands bicubic / bilinear
antialiased resizes to torch's native uint8 kernel, so `F.interpolate(..., antialias=True)` on the
uint8 tensor stands in for it. Everything around the pixels is transformers' own: the processor
(its text expansion, mm_token_type_ids, Qwen2.5-VL's second_per_grid_ts) calls this object as its
video processor, and the model generates from what it returns.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _resize_uint8(video: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    """[F, C, H, W] uint8 -> resized uint8 (torchvision's CPU path for uint8 frames)."""
    return F.interpolate(video, size=(height, width), mode=mode, antialias=True, align_corners=False)


def _fused_normalize(video: torch.Tensor, mean, std, rescale_factor: float) -> torch.Tensor:
    """TorchvisionBackend.rescale_and_normalize with both on: mean/std scaled by 1/rescale, one normalize."""
    mean = torch.tensor(mean) * (1.0 / rescale_factor)
    std = torch.tensor(std) * (1.0 / rescale_factor)
    return (video.to(torch.float32) - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)


class ReferenceVideoProcessor:
    """Called by transformers' processor as `video_processor(videos, **kwargs)`; `videos` are
    uint8 [F, H, W, 3] arrays, `video_metadata` transformers' VideoMetadata per video."""

    def __init__(self, settings, kind: str):
        self.settings, self.kind = settings, kind
        self.merge_size = settings.get("merge_size")
        self.temporal_patch_size = settings.get("temporal_patch_size")
        self.patch_size = settings.get("patch_size")

    def __call__(self, videos, video_metadata=None, **kwargs):
        from transformers.feature_extraction_utils import BatchFeature
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize  # the same function
        from transformers.video_utils import VideoMetadata

        s = self.settings
        tensors = [torch.from_numpy(np.ascontiguousarray(v)).permute(0, 3, 1, 2).contiguous() for v in videos]
        metadata = video_metadata or [VideoMetadata(total_num_frames=len(v), fps=None) for v in videos]
        mode = {2: "bilinear", 3: "bicubic"}[int(s["resample"])]
        if self.kind == "onevision":
            size = s["size"]
            pixels = [_fused_normalize(_resize_uint8(v, size["height"], size["width"], mode), s["image_mean"],
                                       s["image_std"], s["rescale_factor"]) for v in tensors]
            return BatchFeature({"pixel_values_videos": torch.stack(pixels), "video_metadata": metadata})
        patches, grids = [], []
        for v in tensors:
            factor = self.patch_size * self.merge_size
            h, w = smart_resize(v.shape[-2], v.shape[-1], factor, s["size"]["shortest_edge"], s["size"]["longest_edge"])
            video = _fused_normalize(_resize_uint8(v, h, w, mode), s["image_mean"], s["image_std"], s["rescale_factor"])
            flat, grid = self._patchify(video[None])
            patches.append(flat[0])
            grids.append(grid)
        return BatchFeature({"pixel_values_videos": torch.cat(patches), "video_grid_thw": torch.tensor(grids),
                             "video_metadata": metadata})

    def _patchify(self, videos):
        """Qwen2VLVideoProcessor.patchify."""
        batch_size, num_frames, channel, resized_height, resized_width = videos.shape
        t, p, m = self.temporal_patch_size, self.patch_size, self.merge_size
        if pad := -num_frames % t:
            videos = torch.cat((videos, videos[:, -1:].expand(-1, pad, -1, -1, -1)), dim=1)
            num_frames += pad
        grid_t, grid_h, grid_w = num_frames // t, resized_height // p, resized_width // p
        patches = videos.view(batch_size, grid_t, t, channel, grid_h // m, m, p, grid_w // m, m, p)
        patches = patches.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)
        return patches.reshape(batch_size, grid_t * grid_h * grid_w, channel * t * p * p), [grid_t, grid_h, grid_w]


def with_reference_videos(processor, checkpoint, kind: str):
    """The family's (image-only) HF processor with the reference video processor attached."""
    from mmedge.export.video_processors import read_video_processor

    class_name = {"onevision": "LlavaOnevisionVideoProcessor", "qwen2vl": "Qwen2VLVideoProcessor"}[kind]
    processor.video_processor = ReferenceVideoProcessor(read_video_processor(checkpoint, class_name).values, kind)
    return processor


def original_rope_rule(model) -> None:
    """Patch `model.model.get_rope_index` to Qwen's own rule for where text resumes after an image
    or video: at the largest position so far + 1 (Qwen2-VL / Qwen2.5-VL's reference code, and
    transformers up to 5.2). transformers 5.3 .. 5.24 resume at the vision block's start +
    max(grid_h, grid_w) / merge, which differs for videos whose temporal positions run past it
    (transformers issue #45381). Each block's own positions are transformers' (kept, shifted)."""
    own = model.model.get_rope_index

    def get_rope_index(input_ids, mm_token_type_ids=None, *args, **kwargs):
        positions, _ = own(input_ids, mm_token_type_ids, *args, **kwargs)
        types = mm_token_type_ids[0].tolist()
        fixed, top, start = positions.clone(), -1, 0
        for end in range(1, len(types) + 1):
            if end == len(types) or types[end] != types[start]:
                block = positions[:, 0, start:end]
                fixed[:, 0, start:end] = block - block.min() + top + 1
                top = int(fixed[:, 0, start:end].max())
                start = end
        return fixed, torch.tensor([[top + 1 - input_ids.shape[1]]])

    model.model.get_rope_index = get_rope_index
