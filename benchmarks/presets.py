"""Shape-faithful checkpoints for the benchmark suite: the real models' shapes, random weights.

Timing does not depend on weight values, so a checkpoint with a real model's layer count, widths,
head counts, vocabulary rows, tile size and image-token counts costs what the real one costs to
export and to run. These are built offline from `transformers` config classes and written with
`save_pretrained` (safetensors) as the real checkpoints are laid out, so `mmedge export` and the
families take them like any user's checkpoint.

    from benchmarks.presets import build_shape_preset
    build_shape_preset("smolvlm-256m-shape", "ckpt/smolvlm-256m-shape", seed=0)

    python -m benchmarks.presets smolvlm-256m-shape OUT_DIR [--seed 0] [--dtype bfloat16]

What is real and what is not (shared by both presets):

- Weights: transformers' own init (normal, std 0.02 and the vision towers' own schemes) after
  `torch.manual_seed(seed)`, so the same seed gives the same tensors. Not `scaled_random_init`:
  one more pass over ~1e9 values buys nothing for timing. The model says nothing meaningful.
- Saved in bfloat16 by default, the dtype the real checkpoints are published in, so file sizes and
  load times compare; `dtype="float32"` doubles the size. mmedge loads either as float32.
- Tokenizer: the repo's small trained byte-level BPE (`export/tiny/tokenizers.py`, ~600 tokens)
  with the family's special tokens; a real tokenizer file cannot be downloaded. The embedding
  matrix and LM head have the REAL row count (`vocab_size` below), which is what decides their
  cost; the tokenizer is not padded, because mmedge's GGUF writer (`export/gguf/vocab.py:_pad_to`)
  and llama.cpp's `convert_hf_to_gguf.py` both pad the GGUF vocabulary with UNUSED `[PADn]` entries
  up to the embedding rows, as they do for real checkpoints whose matrix is larger than the
  tokenizer (Qwen2: 151936 rows, 151646 tokens). What differs from the real model is tokenization
  only (a few hundred merges instead of ~50k / ~150k): microseconds on benchmark prompts.
- SmolVLM's tokenizer gets one BPE merge more, "\n\n" as a single token (real byte-level BPE
  vocabularies have it; the small one, trained on single lines, does not). llama.cpp's libmtmd
  looks that token up for every Idefics3 image and aborts without it (`patch_double_newline`).
- Chat templates are the repo's (same structure as the real ones, not copies).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class ShapePreset:
    name: str
    real_model: str
    description: str
    build: Callable[[Path, int, str], Path]


def _dtype(name: str):
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def _instantiate(model_cls, config, seed: int, dtype: str):
    """The model with transformers' init under `seed`, in eval mode, cast to `dtype`."""
    import torch

    torch.manual_seed(seed)
    model = model_cls(config).eval()
    return model.to(_dtype(dtype))


def patch_double_newline(folder: str | Path) -> bool:
    """Give the byte-level BPE in `folder`/tokenizer.json the token "\n\n" (merge "Ċ Ċ"), appended
    after the last id. Returns False if it is there already.

    llama.cpp's libmtmd writes "\n\n" before an Idefics3 / SmolVLM image's global view and looks it
    up as ONE vocabulary token (`lookup_token("\n\n")` in tools/mtmd/mtmd.cpp); when the vocabulary
    has none it inserts token -1 and `mtmd_helper_eval_chunk_single` aborts the process
    (GGML_ASSERT(idx >= 0)). Real tokenizers (SmolLM2's included) have the token.
    """
    path = Path(folder) / "tokenizer.json"
    tj = json.loads(path.read_text())
    model = tj["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"{path}: not a BPE tokenizer")
    if "ĊĊ" in model["vocab"]:
        return False
    ids = list(model["vocab"].values()) + [t["id"] for t in tj.get("added_tokens", [])]
    model["vocab"]["ĊĊ"] = max(ids) + 1
    merges = model["merges"]
    merges.append(["Ċ", "Ċ"] if merges and isinstance(merges[0], list) else "Ċ Ċ")
    path.write_text(json.dumps(tj, ensure_ascii=False, indent=2))
    return True


# -- SmolVLM-256M-Instruct -------------------------------------------------------------------------

SMOLVLM_256M = dict(
    # Vision: SigLIP-B/16 at 512 px (Idefics3 vision transformer, no pooling head).
    vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                image_size=512, patch_size=16, layer_norm_eps=1e-6),
    # Text: SmolLM2-135M's shapes.
    text=dict(vocab_size=49280, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
              num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192, rms_norm_eps=1e-5,
              rope_parameters={"rope_type": "default", "rope_theta": 100000.0}),
    scale_factor=4,
    longest_edge=2048,  # images are resized to this longest edge, then cut into tiles of...
    tile=512,  # ... max_image_size.longest_edge (= the vision tower's image_size)
)


# The same layout at test size (scale 4: 8x8 patches -> 4 tokens per tile, up to 4x4 tiles + global), with
# spare embedding rows: for smoke tests of the baselines (libmtmd needs the "\n\n" token it adds).
SMOLVLM_TINY = dict(
    vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                image_size=64, patch_size=8, layer_norm_eps=1e-6),
    text=dict(vocab_size=704, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-5,
              rope_parameters={"rope_type": "default", "rope_theta": 100000.0}),
    scale_factor=4,
    longest_edge=256,
    tile=64,
)


def build_smolvlm_256m(out: Path, seed: int = 0, dtype: str = "bfloat16") -> Path:
    """SmolVLM-256M-Instruct's shapes (HuggingFaceTB/SmolVLM-256M-Instruct, as best known offline).

    Known from the published config / model card: `Idefics3ForConditionalGeneration` (the 256M and
    500M releases predate the SmolVLM class), SigLIP-B/16 vision tower at 512 px (hidden 768,
    12 layers, 12 heads, MLP 3072), pixel-shuffle connector with scale_factor 4 (1024 patches ->
    64 image tokens per tile, connector input 768*16 = 12288 -> 576), SmolLM2-135M text model
    (hidden 576, 30 layers, 9 heads, 3 KV heads, MLP 1536, rope theta 100000, RMSNorm eps 1e-5,
    8192 positions), vocab 49280 rows (SmolLM2's 49152 + SmolVLM's 128 added tokens), processor
    image_seq_len 64, image processor size.longest_edge 2048 and max_image_size.longest_edge 512
    (so up to 4x4 tiles + the global view = 17 x 64 = 1088 image tokens), do_image_splitting true,
    LANCZOS resize, mean = std = 0.5.

    Less sure: (1) the LM head. SmolLM2-135M ties it to the embeddings, but SmolVLM-256M's
    advertised 256M parameters (and its ~0.51 GB bf16 safetensors) only add up with an untied head
    (86.6M vision + 7.1M connector + 134.5M text + 28.4M head = 256.6M; tied it would be 228M),
    and Idefics3's config defaults to untied, so the head is untied here. The decode cost is the
    same either way (the head matrix is read once per token whether or not it aliases the
    embeddings); only the file and memory sizes differ by 57 MB (bf16). (2) Whether size.longest_edge
    is 2048 (4 x 512) or 1536 in the shipped preprocessor_config.json: 2048 is used, as the brief
    says; a smaller value only lowers the tile count for large images. (3) The image token id
    (49190 in the real tokenizer) is whatever the small tokenizer gives; the rows are the same.
    """
    return _build_idefics3(out, seed, dtype, SMOLVLM_256M)


def build_smolvlm_tiny(out: Path, seed: int = 0, dtype: str = "float32") -> Path:
    """SmolVLM's layout at test size (`SMOLVLM_TINY`), for the baselines' smoke tests."""
    return _build_idefics3(out, seed, dtype, SMOLVLM_TINY)


def _build_idefics3(out: Path, seed: int, dtype: str, s: dict) -> Path:
    import transformers as tf

    from mmedge.export.tiny.idefics3 import IDEFICS3_TEMPLATE
    from mmedge.export.tiny.tokenizers import TOKENIZER_BUILDERS

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = TOKENIZER_BUILDERS["idefics3-bpe"]()
    text_config = tf.LlamaConfig(**s["text"], tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision_config = tf.Idefics3VisionConfig(**s["vision"])
    config = tf.Idefics3Config(vision_config=vision_config.to_dict(), text_config=text_config.to_dict(),
                               image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                               scale_factor=s["scale_factor"], tie_word_embeddings=False,
                               pad_token_id=tokenizer.pad_token_id)
    model = _instantiate(tf.Idefics3ForConditionalGeneration, config, seed, dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    del model
    side = s["tile"] // s["vision"]["patch_size"]
    image_processor = tf.Idefics3ImageProcessorPil(size={"longest_edge": s["longest_edge"]},
                                                   max_image_size={"longest_edge": s["tile"]},
                                                   do_image_splitting=True)
    tf.Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer,
                         image_seq_len=side * side // s["scale_factor"] ** 2,
                         chat_template=IDEFICS3_TEMPLATE).save_pretrained(out)
    patch_double_newline(out)
    return out


# -- LLaVA-OneVision-0.5B -------------------------------------------------------------------------

ONEVISION_05B = dict(
    # Vision: SigLIP-so400m-patch14-384 without its pooling head (27x27 = 729 patches per tile).
    vision=dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=26, num_attention_heads=16,
                image_size=384, patch_size=14, layer_norm_eps=1e-6, vision_use_head=False),
    # Text: Qwen2-0.5B's shapes; 152000 rows = Qwen2's 151936 + <image>, <video>, padded to 64.
    text=dict(vocab_size=152000, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
              num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-6,
              rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
    tile=384,
    # anyres_max_9: every grid of 1..6 x 1..6 tiles of 384 px (36 pinpoints, [height, width]).
    grid_pinpoints=tuple((384 * h, 384 * w) for h in range(1, 7) for w in range(1, 7)),
)


def build_onevision_05b(out: Path, seed: int = 0, dtype: str = "bfloat16") -> Path:
    """LLaVA-OneVision-0.5B's shapes (llava-hf/llava-onevision-qwen2-0.5b-ov-hf, as best known offline).

    Known: `LlavaOnevisionForConditionalGeneration`; SigLIP-so400m at 384 px (hidden 1152, 26 layers,
    16 heads, MLP 4304, patch 14: 27x27 = 729 patches, `vision_use_head` false), the mlp2x_gelu
    projector (1152 -> 896 -> 896, GELU), Qwen2-0.5B text (hidden 896, 24 layers, 14 heads, 2 KV
    heads, MLP 4864, rope theta 1e6, RMSNorm eps 1e-6, tied embeddings), vision_feature_layer -1,
    strategy full, vision_aspect_ratio anyres_max_9, image_grid_pinpoints = all 36 grids of
    384 x (1..6) by 384 x (1..6), processor num_image_tokens 729, image processor 384x384 tiles,
    bicubic, mean = std = 0.5, padding to the best grid.

    Less sure: the row count 152000. Qwen2-0.5B has 151936 embedding rows; the llava-hf conversion
    adds `<image>` (151646) and `<video>` (151647) and resizes the embeddings padded to a multiple
    of 64, giving 152000; that is what is remembered of the published config, and it is used here.
    The difference to 151936 is 64 rows (0.04% of the head's cost).
    """
    import transformers as tf

    from mmedge.export.hf_processors import image_only_onevision_processor
    from mmedge.export.tiny.llava_next import ONEVISION_TEMPLATE
    from mmedge.export.tiny.tokenizers import TOKENIZER_BUILDERS
    from mmedge.export.tiny.weights import write_json
    from mmedge.export.video_processors import VIDEO_PROCESSOR_FILE

    o = ONEVISION_05B
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = TOKENIZER_BUILDERS["qwen2-bpe"]()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<video>"]})
    pinpoints = [list(p) for p in o["grid_pinpoints"]]
    text_config = tf.Qwen2Config(**o["text"], tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    config = tf.LlavaOnevisionConfig(
        vision_config=tf.SiglipVisionConfig(**o["vision"]), text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        projector_hidden_act="gelu", vision_feature_select_strategy="full", vision_feature_layer=-1,
        image_grid_pinpoints=pinpoints, vision_aspect_ratio="anyres_max_9", tie_word_embeddings=True,
    )
    model = _instantiate(tf.LlavaOnevisionForConditionalGeneration, config, seed, dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    del model
    tile, side = o["tile"], o["vision"]["image_size"] // o["vision"]["patch_size"]
    ip = tf.LlavaOnevisionImageProcessorPil(size={"height": tile, "width": tile}, image_mean=[0.5] * 3,
                                            image_std=[0.5] * 3, image_grid_pinpoints=pinpoints)
    image_only_onevision_processor()(image_processor=ip, tokenizer=tokenizer, num_image_tokens=side * side,
                                     vision_feature_select_strategy="full", chat_template=ONEVISION_TEMPLATE,
                                     vision_aspect_ratio="anyres_max_9").save_pretrained(out)
    # Its video processor (torchvision-only here) as the class writes its settings.
    write_json(out / VIDEO_PROCESSOR_FILE, {
        "video_processor_type": "LlavaOnevisionVideoProcessor", "size": {"height": tile, "width": tile},
        "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "resample": 3, "do_sample_frames": False})
    return out


def build_llava_interleave_05b(out: Path, seed: int = 0, dtype: str = "bfloat16") -> Path:
    """A single-view LLaVA at LLaVA-Interleave-Qwen-0.5B's scale (llava-hf/llava-interleave-qwen-0.5b-hf,
    `LlavaForConditionalGeneration`): the layout the native runtime runs (one 384-px view per image,
    causal). Shapes from the OneVision-0.5B preset above, which shares its parts: SigLIP-so400m at
    384 px (729 patches, strategy full, last layer), the mlp2x_gelu projector, Qwen2-0.5B text with
    152000 rows; SigLIP's image processor (384x384, bicubic, mean = std = 0.5). Less sure: whether
    the real checkpoint selects the last or the second-to-last vision layer (the cost differs by
    one of 26 layers)."""
    import transformers as tf

    from mmedge.export.tiny.llava_next import ONEVISION_TEMPLATE
    from mmedge.export.tiny.tokenizers import TOKENIZER_BUILDERS

    o = ONEVISION_05B
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = TOKENIZER_BUILDERS["qwen2-bpe"]()
    text_config = tf.Qwen2Config(**o["text"], tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    side = o["vision"]["image_size"] // o["vision"]["patch_size"]
    config = tf.LlavaConfig(
        vision_config=tf.SiglipVisionConfig(**o["vision"]), text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), projector_hidden_act="gelu",
        vision_feature_select_strategy="full", vision_feature_layer=-1, image_seq_length=side * side,
        tie_word_embeddings=True,
    )
    model = _instantiate(tf.LlavaForConditionalGeneration, config, seed, dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    del model
    tile = o["tile"]
    image_processor = tf.SiglipImageProcessor(size={"height": tile, "width": tile}, image_mean=[0.5] * 3,
                                              image_std=[0.5] * 3)
    tf.LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=o["vision"]["patch_size"],
                      vision_feature_select_strategy="full", chat_template=ONEVISION_TEMPLATE,
                      num_additional_image_tokens=0, image_token="<image>").save_pretrained(out)
    return out


SHAPE_PRESETS: dict[str, ShapePreset] = {
    p.name: p
    for p in (
        ShapePreset("smolvlm-256m-shape", "HuggingFaceTB/SmolVLM-256M-Instruct",
                    "SigLIP-B/16 @512 + pixel shuffle x4 + SmolLM2-135M (Llama), tiles up to 4x4 + global",
                    build_smolvlm_256m),
        ShapePreset("onevision-0.5b-shape", "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
                    "SigLIP-so400m @384 + mlp2x_gelu + Qwen2-0.5B (tied), anyres_max_9 over 6x6 grids",
                    build_onevision_05b),
        ShapePreset("llava-interleave-0.5b-shape", "llava-hf/llava-interleave-qwen-0.5b-hf",
                    "SigLIP-so400m @384 + mlp2x_gelu + Qwen2-0.5B (tied), one view per image: what native runs",
                    build_llava_interleave_05b),
        ShapePreset("smolvlm-tiny", "(none: test size)",
                    "SmolVLM's layout at test size (scale 4, 64-px tiles up to 4x4 + global), for baseline smoke tests",
                    build_smolvlm_tiny),
    )
}


def build_shape_preset(name: str, out_dir: str | Path, seed: int = 0, dtype: str = "bfloat16") -> Path:
    """Write the shape-faithful checkpoint `name` into `out_dir` (deterministic in `seed`) and return it."""
    if name not in SHAPE_PRESETS:
        raise KeyError(f"unknown shape preset {name!r}; known: {sorted(SHAPE_PRESETS)}")
    from mmedge.export.checkpoint import quiet_transformers

    quiet_transformers()
    return SHAPE_PRESETS[name].build(Path(out_dir), seed, dtype)


def checkpoint_stats(path: str | Path) -> dict:
    """Bytes on disk (all files) and parameter count (from the safetensors headers)."""
    path = Path(path)
    n_params = 0
    for f in path.glob("*.safetensors"):
        with f.open("rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        for key, t in header.items():
            if key != "__metadata__":
                count = 1
                for d in t["shape"]:
                    count *= d
                n_params += count
    return {"bytes": sum(f.stat().st_size for f in path.rglob("*") if f.is_file()), "parameters": n_params}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Build a shape-faithful random-weight checkpoint.")
    ap.add_argument("preset", choices=sorted(SHAPE_PRESETS))
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    path = build_shape_preset(args.preset, args.out, args.seed, args.dtype)
    stats = checkpoint_stats(path)
    print(json.dumps({"preset": args.preset, "path": str(path), "build_s": round(time.perf_counter() - t0, 1),
                      **stats}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
