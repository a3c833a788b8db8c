"""From the user's prompt and images to a token plan: text token runs and image slots.

The user's prompt is one user message. With no image marker in it, the images go where the
family's chat template puts them (the HF processor's template, rendered with Jinja as
transformers does). With markers, their count must equal the number of images and each
image goes where its marker is. `raw=True` skips the template: the prompt is used as is.
"""
from __future__ import annotations

from dataclasses import dataclass

from mmedge.errors import PromptError
from mmedge.audio_spec import AudioSlotSpec
from mmedge.manifest import ImageSlotSpec, PromptSpec


@dataclass(frozen=True)
class ImageRows:
    """A run of image-token positions, filled by rows `start .. start+count` of all images'
    embedding rows (images in prompt order, each image's rows as its layout assembles them)."""

    start: int
    count: int


@dataclass(frozen=True)
class TokenPlan:
    """Alternating runs: lists of token ids and `ImageRows`, in sequence order."""

    items: tuple
    n_positions: int

    @property
    def text_tokens(self) -> list[int]:
        return [t for item in self.items if isinstance(item, list) for t in item]


def _generation_tag_extension():
    """transformers' templates may mark assistant text with {% generation %}; it renders its body."""
    from jinja2 import nodes
    from jinja2.ext import Extension

    class GenerationTag(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    return GenerationTag


def _render_template(template: str, messages: list[dict], extra: dict) -> str:
    from jinja2.exceptions import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, _generation_tag_extension()])
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template).render(messages=messages, add_generation_prompt=True, **extra)
    except TemplateError as e:
        raise PromptError(f"the bundle's chat template failed to render: {e}") from None


def format_prompt(prompt: str, n_images: int, spec: PromptSpec, slot: ImageSlotSpec | AudioSlotSpec, raw: bool = False,
                  content_type: str = "image") -> str:
    """The full prompt text, markers included, ready for tokenization. `content_type` is the chat
    template's content type of the inputs ("image", or "audio" for an audio bundle's clips)."""
    if not isinstance(prompt, str):
        raise PromptError(f"the prompt must be text, got {type(prompt).__name__}")
    n_markers = prompt.count(slot.marker)
    if raw:
        # No template places images in a raw prompt, so "no markers" is not an option here.
        if n_markers != n_images:
            raise PromptError(
                f"a raw prompt needs one {slot.marker!r} per image: found {n_markers}, images {n_images}; "
                f"put one marker where each image goes, or drop the raw option to let the chat template place them"
            )
        return prompt
    if n_markers and n_markers != n_images:
        raise PromptError(
            f"the prompt has {n_markers} image marker(s) {slot.marker!r} but {n_images} image(s) were given; "
            f"use one marker per image, or none to let the chat template place the images"
        )
    if n_markers:
        content = [{"type": "text", "text": prompt}]
    else:
        content = [{"type": content_type} for _ in range(n_images)] + [{"type": "text", "text": prompt}]
    if spec.chat_template:
        return _render_template(spec.chat_template, [{"role": "user", "content": content}], {})
    if n_markers:
        return prompt
    return spec.fallback_format.format(images=slot.marker * n_images, text=prompt)


def expand_markers(text: str, marker: str, expansions: list[str]) -> str:
    """Replace the i-th marker in `text` with `expansions[i]` (what the HF processor does on the text)."""
    pieces = text.split(marker)
    if len(pieces) - 1 != len(expansions):
        raise PromptError(
            f"the formatted prompt holds {len(pieces) - 1} image marker(s) {marker!r} but {len(expansions)} image(s) were given; "
            "the chat template or the prompt placed markers differently from the images"
        )
    out = [pieces[0]]
    for expansion, piece in zip(expansions, pieces[1:]):
        out += [expansion, piece]
    return "".join(out)


def plan_tokens(token_ids: list[int], image_token_id: int, n_rows: int) -> TokenPlan:
    """Split tokenized text at runs of the image token; the runs take the image rows in order."""
    items: list = []
    run: list[int] = []
    filled = 0
    for tok in token_ids:
        if tok == image_token_id:
            if run:
                items.append(run)
                run = []
            if items and isinstance(items[-1], ImageRows):
                items[-1] = ImageRows(items[-1].start, items[-1].count + 1)
            else:
                items.append(ImageRows(filled, 1))
            filled += 1
        else:
            run.append(tok)
    if run:
        items.append(run)
    if filled != n_rows:
        raise PromptError(
            f"the tokenized prompt holds {filled} image-token positions but the images give {n_rows} embedding rows; "
            "the prompt text contains image tokens of its own, or the tokenizer splits the image token"
        )
    return TokenPlan(items=tuple(items), n_positions=len(token_ids))
