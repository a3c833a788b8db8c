"""Generation stops at the end-of-sequence token, as transformers' generate does.

A random model never picks EOS on purpose, so the test makes a checkpoint whose EOS is the
token the model greedily produces at step k: both runtimes must stop right before it."""
from __future__ import annotations

import json
import shutil

import torch

from mmedge.export.verify_inputs import synthetic_photo


def _set_eos(ckpt, token_text: str, token_id: int) -> None:
    tok_cfg = json.loads((ckpt / "tokenizer_config.json").read_text())
    tok_cfg["eos_token"] = token_text
    (ckpt / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    for name, path in (("config.json", ("text_config",)), ("generation_config.json", ())):
        data = json.loads((ckpt / name).read_text())
        target = data
        for key in path:
            target = target[key]
        target["eos_token_id"] = token_id
        (ckpt / name).write_text(json.dumps(data))


def test_stops_at_eos_like_transformers(pipeline, checkpoints, tmp_path):
    from transformers import AutoProcessor, AutoTokenizer, LlavaForConditionalGeneration

    from mmedge.export.exporter import ExportConfig, export_bundle
    from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions

    image, prompt = synthetic_photo(100, 70, seed=21), "What is this?"
    free = pipeline.generate([image], prompt, GenerationParams(max_new_tokens=10, min_new_tokens=10)).tokens
    stop_at = next(i for i in range(2, 10) if free[i] not in free[:i])
    eos_id = free[stop_at]
    src = checkpoints("clip-llama-bpe")
    eos_text = AutoTokenizer.from_pretrained(src).convert_ids_to_tokens(eos_id)
    ckpt = tmp_path / "ckpt"
    shutil.copytree(src, ckpt)
    _set_eos(ckpt, eos_text, eos_id)

    export_bundle(ExportConfig(checkpoint=ckpt, output=tmp_path / "bundle", verify=False))
    pipe = Pipeline(tmp_path / "bundle", RuntimeOptions(exact=True, n_ctx=1024))
    try:
        assert pipe.llm.is_eog(eos_id)
        ours = pipe.generate([image], prompt, GenerationParams(max_new_tokens=10)).tokens
    finally:
        pipe.close()
    assert ours == free[:stop_at]

    processor = AutoProcessor.from_pretrained(ckpt)
    model = LlavaForConditionalGeneration.from_pretrained(ckpt, dtype=torch.float32).eval()
    inputs = processor(images=[image], text=pipeline.format(prompt, 1), return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=10)
    ref = out[0, inputs["input_ids"].shape[1]:].tolist()
    assert ref == free[:stop_at] + [eos_id]  # transformers keeps the EOS token in its output
