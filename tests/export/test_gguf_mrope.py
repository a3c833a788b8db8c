"""M-RoPE (Qwen2-VL's multimodal rotary): the GGUF writer's `qwen2vl` backbone and the runtime's
per-row (temporal, height, width) positions reproduce transformers' logits when image-like rows
sit on a 2-D grid and the text after them resumes past the grid, as Qwen2-VL's get_rope_index
places them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

GRID_H, GRID_W = 3, 5
PREFIX, SUFFIX = 6, 9


@pytest.fixture(scope="module")
def tiny_qwen2vl(tmp_path_factory):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from mmedge.export.gguf.backbone import TextBackbone
    from mmedge.export.gguf.writer import write_gguf
    from mmedge.export.tiny.tokenizers import TOKENIZER_BUILDERS
    from mmedge.export.tiny.weights import scaled_random_init

    tok = TOKENIZER_BUILDERS["qwen2-bpe"]()
    folder = tmp_path_factory.mktemp("qwen2vl")
    tok.save_pretrained(folder)
    text = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=1024, rms_norm_eps=1e-6, tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]})
    vision = dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=8, spatial_merge_size=2)
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(text_config=text, vision_config=vision)).eval()
    scaled_random_init(model, 0, 2.0)
    lm = model.model.language_model
    backbone = TextBackbone(model_type=model.config.text_config.model_type, config=model.config.text_config,
                            tensors={**{f"model.{k}": v for k, v in lm.state_dict().items()},
                                     "lm_head.weight": model.lm_head.weight},
                            tie_word_embeddings=False, tokenizer=tok, tokenizer_dir=str(folder), chat_template=None,
                            name="tiny-qwen2vl")
    info = write_gguf(backbone, folder / "llm.F32.gguf", "F32")
    return model, folder / "llm.F32.gguf", info


def _grid_offsets():
    rows, cols = np.meshgrid(np.arange(GRID_H), np.arange(GRID_W), indexing="ij")
    return np.stack([np.zeros(GRID_H * GRID_W, np.int64), rows.ravel(), cols.ravel()])


def _hf_logits(model, text_ids, image_rows):
    """transformers with the positions get_rope_index gives: text 0..P-1, the grid at P (+row, +col),
    text after it from P + max(grid) + 1."""
    embed = model.model.language_model.embed_tokens
    with torch.no_grad():
        e = torch.cat([embed(torch.tensor(text_ids[:PREFIX])), torch.from_numpy(image_rows),
                       embed(torch.tensor(text_ids[PREFIX:]))])[None]
        grid = torch.from_numpy(_grid_offsets()) + PREFIX
        after = grid.max() + 1 + torch.arange(SUFFIX)
        pos = torch.cat([torch.arange(PREFIX).expand(3, -1), grid, after.expand(3, -1)], dim=1)[:, None, :]
        hidden = model.model.language_model(inputs_embeds=e, position_ids=pos).last_hidden_state
        return model.lm_head(hidden)[0].numpy()


def _ours(path, text_ids, image_rows, grid):
    from mmedge.runtime.llamacpp import LlamaModel, LlamaOptions

    llm = LlamaModel(path, LlamaOptions(n_ctx=256, n_batch=8, exact=True))  # n_batch 8 < 15 rows: chunked
    try:
        prefix = llm.decode_tokens(text_ids[:PREFIX], logits_for="all")
        llm.decode_embeddings(image_rows, grid=grid)
        suffix = llm.decode_tokens(text_ids[PREFIX:], logits_for="all")
        return np.concatenate([prefix, suffix]), llm.next_pos, llm.mrope
    finally:
        llm.close()


def test_writer_marks_the_sections(tiny_qwen2vl):
    import gguf

    _, path, info = tiny_qwen2vl
    assert info["gguf_arch"] == "qwen2vl"
    reader = gguf.GGUFReader(str(path))
    field = reader.fields["qwen2vl.rope.dimension_sections"]
    assert [int(field.parts[i][0]) for i in field.data] == [2, 3, 3, 0]


def test_grid_positions_match_transformers(tiny_qwen2vl):
    model, path, _ = tiny_qwen2vl
    rng = np.random.default_rng(0)
    text_ids = rng.integers(5, 500, PREFIX + SUFFIX).tolist()
    image_rows = rng.standard_normal((GRID_H * GRID_W, 64)).astype(np.float32)
    ref = _hf_logits(model, text_ids, image_rows)
    ref_text = np.concatenate([ref[:PREFIX], ref[PREFIX + GRID_H * GRID_W:]])
    ours, next_pos, mrope = _ours(path, text_ids, image_rows, _grid_offsets())
    assert mrope
    # Text after the grid resumes at PREFIX + max(grid offsets) + 1, then runs on.
    assert next_pos == PREFIX + max(GRID_H, GRID_W) + SUFFIX
    assert np.abs(ours - ref_text).max() < 1e-3
    assert (ours.argmax(-1) == ref_text.argmax(-1)).all()
    # Control: the same rows on consecutive 1-D positions give other logits after the image.
    flat, _, _ = _ours(path, text_ids, image_rows, None)
    assert np.abs(flat[PREFIX:] - ref_text[PREFIX:]).max() > 1e-2


def test_bad_grid_is_refused(tiny_qwen2vl):
    from mmedge.errors import BackendError
    from mmedge.runtime.llamacpp import LlamaModel, LlamaOptions

    _, path, _ = tiny_qwen2vl
    llm = LlamaModel(path, LlamaOptions(n_ctx=64, exact=True))
    try:
        with pytest.raises(BackendError, match=r"expected non-negative offsets of shape \(3, 4\)"):
            llm.decode_embeddings(np.zeros((4, 64), np.float32), grid=np.zeros((2, 4), np.int64))
    finally:
        llm.close()
