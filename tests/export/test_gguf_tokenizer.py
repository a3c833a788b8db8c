"""Our GGUF loads in llama.cpp, and its tokenizer gives the HF tokenizer's ids."""
from __future__ import annotations

import pytest

from ..conftest import KQUANT_PRESET, PARITY_PRESETS

STRINGS = [
    "Hello world",
    "USER: <image>\nWhat is shown in this picture? ASSISTANT:",
    " leading space",
    "a  b   c",
    "numbers 12345 and 3.14159",
    "Über café naïve 東京",
    "\n\nnew lines\n\t tab",
    "<image><image>x",
    "it's we'll they'd THE CAT'S",
    "",
    "<image> x",
    "emoji 🙂 and symbols @#$%^&*()",
    "<|im_start|>user\nhi<|im_end|>",
]


@pytest.fixture(scope="module", params=PARITY_PRESETS + (KQUANT_PRESET,))
def tokenizers_pair(request, bundles, checkpoints):
    from transformers import AutoTokenizer

    from mmedge.runtime.pipeline import Pipeline

    bundle, _ = bundles(request.param)
    pipe = Pipeline(bundle)
    yield request.param, AutoTokenizer.from_pretrained(checkpoints(request.param)), pipe
    pipe.close()


@pytest.mark.parametrize("text", STRINGS)
def test_token_ids_equal_hf(tokenizers_pair, text):
    preset, hf, pipe = tokenizers_pair
    assert pipe.tokenize(text) == hf(text).input_ids, preset


def test_vocab_metadata(tokenizers_pair):
    import gguf

    preset, hf, pipe = tokenizers_pair
    reader = gguf.GGUFReader(str(pipe.bundle.path_of("llm")))
    fields = reader.fields

    def scalar(key):
        f = fields[key]
        return f.parts[f.data[0]].tolist()[0] if f.types[0] != gguf.GGUFValueType.STRING else bytes(f.parts[f.data[0]]).decode()

    expected_model = "llama" if preset == KQUANT_PRESET else "gpt2"
    assert scalar("tokenizer.ggml.model") == expected_model
    expected_pre = {"clip-llama-bpe": "llama-bpe", "siglip-qwen2-tied": "qwen2", KQUANT_PRESET: "default"}[preset]
    assert scalar("tokenizer.ggml.pre") == expected_pre
    assert scalar("tokenizer.ggml.eos_token_id") == hf.eos_token_id
    assert pipe.llm.n_vocab == len(hf)
    assert scalar("tokenizer.chat_template") == pipe.manifest.prompt.chat_template
    # The image marker is one special token in both.
    marker_id = hf.convert_tokens_to_ids("<image>")
    assert pipe.llm.tokenize("<image>", add_special=False) == [marker_id]
    assert pipe.llm.is_special(marker_id)


def test_tied_embeddings_write_no_output_tensor(bundles):
    from mmedge.export.gguf.inspect import tensor_types

    tied_path, tied = bundles("siglip-qwen2-tied")
    untied_path, untied = bundles("clip-llama-bpe")
    assert "output.weight" not in tensor_types(tied_path / tied.parts["llm"].file)
    assert "output.weight" in tensor_types(untied_path / untied.parts["llm"].file)
    # Qwen2 keeps its attention biases.
    assert "blk.0.attn_q.bias" in tensor_types(tied_path / tied.parts["llm"].file)
