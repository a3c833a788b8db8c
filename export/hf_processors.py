"""transformers processors that cannot be built in mmedge's environment, made buildable.

`LlavaOnevisionProcessor` and `Qwen2VLProcessor` require a video processor, and transformers' video processors require
torchvision, which mmedge does not install (the PIL image processors are its reference). Images
never touch the video processor, so this subclass drops it: everything else (how `<image>`
expands, the token count, the image processor) is transformers' own code, inherited unchanged.
It loads a real checkpoint's processor files (the video processor's config is ignored).
"""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=None)
def image_only_onevision_processor() -> type:
    from transformers import LlavaOnevisionProcessor
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlyLlavaOnevisionProcessor(LlavaOnevisionProcessor):
        # ProcessorMixin takes the sub-processors from this signature: no video_processor here.
        def __init__(self, image_processor=None, tokenizer=None, num_image_tokens=None,
                     vision_feature_select_strategy=None, chat_template=None, image_token="<image>",
                     video_token="<video>", vision_aspect_ratio="anyres_max_9", **kwargs):
            self.num_image_tokens = num_image_tokens
            self.vision_feature_select_strategy = vision_feature_select_strategy
            self.image_token = getattr(tokenizer, "image_token", None) or image_token
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token = getattr(tokenizer, "video_token", None) or video_token
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            self.vision_aspect_ratio = vision_aspect_ratio
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return ImageOnlyLlavaOnevisionProcessor


@lru_cache(maxsize=None)
def image_only_qwen2vl_processor(base: str = "Qwen2VLProcessor") -> type:
    """`Qwen2VLProcessor` (or `Qwen2_5_VLProcessor`) without its (torchvision) video processor;
    `<|image_pad|>` expands by transformers' own `replace_image_token` (grid_t * grid_h * grid_w /
    merge_size^2 tokens)."""
    import transformers
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlyQwenVLProcessor(getattr(transformers, base)):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return ImageOnlyQwenVLProcessor
